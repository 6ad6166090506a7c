from __future__ import annotations

from app.http.errors import AppError, ErrorCode


class TooManyStreamsError(AppError):
    status_code, code = 429, ErrorCode.TOO_MANY_STREAMS
    message = "Too many event streams are open for this user; close one, or retry later"

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(retry_after_seconds)})


class StreamsClosingError(AppError):
    status_code, code = 503, ErrorCode.SHUTTING_DOWN
    message = "This server is shutting down; reconnect (another replica will answer)"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


class NotListeningError(AppError):
    status_code, code = 503, ErrorCode.LIVE_UPDATES_UNAVAILABLE
    message = (
        "This server has lost its database notifications for now; reconnect shortly (another "
        "replica may answer)"
    )

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "5"})
