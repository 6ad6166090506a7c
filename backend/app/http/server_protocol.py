"""uvicorn's httptools protocol with the limits on a request head that an ASGI app cannot set.

The app only sees a request once the server has buffered its whole head, so the limits live
here, where the bytes arrive: ``python -m app serve`` names this class as uvicorn's HTTP
protocol, and each worker process builds it from the same settings as the app.

- The request line and headers of one request may take ``MAX_REQUEST_HEAD_BYTES``; past that
  the answer is 431 and the connection closes, before the parser is given the excess.
- The request target (path and query) may take ``MAX_REQUEST_TARGET_BYTES``; past that, 414.
- A head must be complete ``REQUEST_HEAD_TIMEOUT_SECONDS`` after its first byte, or it gets a
  408 and the connection closes; a new connection that sends nothing for that long is closed.

The count is exact for a head that starts a read, as every head does unless the client
pipelines. One pipelined behind another request in the same read is measured, for that read,
from what the parser reports of it (the target, header names and values), which can leave out
up to that one read (uvloop reads at most 256,000 bytes); its later reads count exactly.
A request costs a few attribute updates, a connection one timer (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.http.errors import (
    AppError,
    NotFoundError,
    RequestHeadTimeoutError,
    RequestHeadTooLargeError,
    RequestTargetTooLongError,
)
from app.http.handlers import error_response
from app.http.security_headers import SECURITY_HEADERS
from app.settings import Settings, load_settings

logger = structlog.get_logger("app.server")
# Ends every request head (the parser accepts no bare LF).
HEAD_END = b"\r\n\r\n"
# The least a request line adds to its target: "GET " and " HTTP/1.1\r\n".
REQUEST_LINE_OVERHEAD = 15
# How long a refused connection keeps reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0
# How long what the server sent may go unacknowledged (a peer gone, or one that stops reading
# and holds its window shut) before the kernel drops the connection. Without it, a closed
# connection whose unsent answer a peer never reads (a stalled event stream) stays for good.
UNACKNOWLEDGED_TIMEOUT_MS = 60_000


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_head_bytes: int
    max_target_bytes: int
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(
            max_head_bytes=settings.max_request_head_bytes,
            max_target_bytes=settings.max_request_target_bytes,
            timeout_seconds=settings.request_head_timeout_seconds,
        )


@functools.cache
def process_limits() -> HeadLimits:
    """Read once per process: uvicorn imports the protocol by name in each worker, which
    inherits the environment (and `.env`) the app's settings come from."""
    return HeadLimits.from_settings(load_settings())


class _RefusedError(Exception):
    """Raised in a parser callback to stop the parser at once; httptools chains it to the
    ``HttpParserCallbackError`` that `feed_data` raises."""

    def __init__(self, error: type[AppError]) -> None:
        super().__init__(error.code)
        self.error = error


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    # None: the settings' (process_limits); a subclass may fix its own.
    limits: ClassVar[HeadLimits | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.limits or process_limits()
        self._max_head = limits.max_head_bytes
        self._max_target = limits.max_target_bytes
        self._head_timeout = limits.timeout_seconds
        # Bytes of the open head received in earlier reads, and the last three of them (the
        # blank line that ends a head can straddle two reads).
        self._head_bytes = 0
        self._head_tail = b""
        # The parser has begun the target of a request whose headers are not complete.
        self._head_open = False
        # Between the end of a request's headers and the end of its body: the next byte read
        # is not part of a head.
        self._in_body = False
        # The current read began inside a head (or before one) that is still open.
        self._reading_head = False
        # Answered with an error; whatever the client sends now is dropped.
        self._refused = False
        # The connection's one deadline: its head's, or after a refusal the lingering close's.
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            with contextlib.suppress(OSError):  # not TCP (a Unix socket)
                sock.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, UNACKNOWLEDGED_TIMEOUT_MS
                )
        # uvicorn's keep-alive timer starts only after a first response, so without this a
        # connection that never sends a byte would stay open for good.
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        super().shutdown()
        # A graceful shutdown waits for every response to complete, which an event stream never
        # does by itself: the lifespan's hub (main.py) ends them all now, each with its last
        # chunk, instead of their being cut when the grace period runs out.
        events = self.app_state.get("events")
        if events is not None:
            events.close_streams()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        reading_head = not self._in_body
        if reading_head and self._head_bytes + len(data) > self._max_head:
            budget = self._max_head - self._head_bytes
            if not self._head_ends_within(data, budget):
                # The part within the limit is parsed, so an over-long target gets its 414.
                self._reading_head = True
                self._feed(data[:budget])
                if not self._refused and not self.transport.is_closing():
                    self._refuse(RequestHeadTooLargeError)
                return
        self._reading_head = reading_head
        self._feed(data)
        if self._refused or self.transport.is_closing():
            return
        if self._reading_head:
            # No head was completed in this read, so all of it belongs to the open one.
            if self._head_bytes == 0:
                self._arm_head_deadline()  # its first bytes: the deadline counts from now
            self._head_bytes += len(data)
            self._head_tail = data[-3:]
        elif self._head_open:
            # A head pipelined behind an earlier request in this read, not complete yet.
            self._head_bytes = self._pipelined_head_bytes(data)
            self._head_tail = data[-3:]
            if self._head_bytes > self._max_head:
                self._refuse(RequestHeadTooLargeError)
            else:
                self._arm_head_deadline()

    def _head_ends_within(self, data: bytes, budget: int) -> bool:
        """Whether the head this read continues ends within its first ``budget`` bytes."""
        if not self._head_open:
            # Only blank lines so far, which the parser skips; they count towards the limit.
            request = data.lstrip(b"\r\n")
            return request.find(HEAD_END, 0, max(0, budget - (len(data) - len(request)))) >= 0
        return (self._head_tail + data[:budget]).find(HEAD_END) >= 0

    def _pipelined_head_bytes(self, data: bytes) -> int:
        """What the open head takes of ``data``, in which an earlier request ended: all that
        follows that request's head when it has no body, else as the parser reported it."""
        earlier = self.cycle.scope["headers"] if self.cycle is not None else ()
        if any(name in (b"content-length", b"transfer-encoding") for name, _ in earlier):
            return self._parsed_head_bytes()
        return len(data) - (data.rfind(HEAD_END) + len(HEAD_END))

    def _parsed_head_bytes(self) -> int:
        """At least the size of the open head, from what the parser has reported of it: the
        target and the complete header lines (less the blanks it drops before values)."""
        headers = sum(len(name) + len(value) + len(b":\r\n") for name, value in self.headers)
        return len(self.url) + REQUEST_LINE_OVERHEAD + headers

    def _feed(self, data: bytes) -> None:
        # uvicorn's own data_received, except that a refusal raised in a callback gets its own
        # answer instead of a 400.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _RefusedError):
                self._refuse(exc.__context__.error)
            else:
                self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _bad_request(self) -> None:
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self.send_400_response(message)

    # Parser callbacks, each around uvicorn's own (called directly: super() costs more).
    def on_url(self, url: bytes) -> None:
        self._head_open = True
        HttpToolsProtocol.on_url(self, url)
        if len(self.url) > self._max_target:
            raise _RefusedError(RequestTargetTooLongError)

    def on_headers_complete(self) -> None:
        if self._timer is not None:
            self._cancel_timer()
        # A head pipelined behind another request in its read is measured as the parser saw it.
        if not self._reading_head and self._parsed_head_bytes() > self._max_head:
            raise _RefusedError(RequestHeadTooLargeError)
        if b"%2f" in self.url.partition(b"?")[0].lower():
            # uvicorn decodes %2F before routing, so ".../tasks/<id>%2Fcomplete" would reach
            # the toggle route: no path here has a slash inside a segment, so none is found.
            raise _RefusedError(NotFoundError)
        self._head_open = self._reading_head = False
        self._in_body = True
        self._head_bytes = 0
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._in_body = False
        HttpToolsProtocol.on_message_complete(self)

    def _arm_head_deadline(self) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes or self._head_open:
            self._refuse(RequestHeadTimeoutError)
        else:
            self.transport.close()  # never used: there is no request to answer

    def _refuse(self, error: type[AppError]) -> None:
        self._refused = True
        self._cancel_timer()
        logger.info(
            "request_head_refused",
            status=error.status_code,
            error_code=error.code,
            client=self.client[0] if self.client else None,
        )
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered, and an answer
            # now would arrive as its own: the connection closes after that one instead.
            self.cycle.keep_alive = False
            return
        self.transport.write(_answer(error, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A close with unread bytes makes the kernel send a reset, which can destroy the answer
        # before the client reads it: send it and a FIN, drop what still arrives, and close
        # when the client does or after a grace period, as nginx's lingering close does.
        self.transport.write_eof()
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _answer(error: type[AppError], default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The app's error body and headers for ``error``, as the app would send them, with the
    server's own (Date, Server) first as uvicorn writes them."""
    response = error_response(error(headers={"Connection": "close"}))
    headers = [
        *default_headers,
        *response.raw_headers,
        *((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
    ]
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[error.status_code] + lines + b"\r\n" + bytes(response.body)
