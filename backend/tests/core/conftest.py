"""Log capture from the real stdout handler, for the tests of core/."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.logging import configure_logging


class LogOutput:
    """What the process wrote to stdout since the fixture started, as text and as records."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    @property
    def text(self) -> str:
        self._text += self._capsys.readouterr().out
        return self._text

    def records(self, **match: object) -> list[dict[str, Any]]:
        """Every line parsed as JSON (a line that is not JSON fails the test), filtered on
        the given key/value pairs."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [r for r in parsed if all(r.get(k) == v for k, v in match.items())]


class _CurrentStdout(io.TextIOBase):
    """Writes to whatever ``sys.stdout`` is when a record is emitted: capsys replaces its
    stream between a test's setup and call phases."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _write_to_current_stdout() -> None:
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(_CurrentStdout())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    # A fixture set up after log_output may have configured logging again (create_app does),
    # onto the setup phase's stream, which capsys closes before the test runs.
    if "log_output" in getattr(item, "fixturenames", ()):
        _write_to_current_stdout()
    return (yield)


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    # Set up before capsys and so torn down after it: the handler goes back onto pytest's own
    # capture instead of keeping capsys's closed stream.
    yield
    configure_logging()


@pytest.fixture
def log_output(_restore_logging: None, capsys: pytest.CaptureFixture[str]) -> LogOutput:
    """JSON logging configured onto the captured stdout (an app created in the test
    reconfigures it, onto the same stream)."""
    configure_logging("INFO", "json")
    _write_to_current_stdout()
    return LogOutput(capsys)
