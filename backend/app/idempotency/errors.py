from app.http.errors import ConflictError, ErrorCode, ValidationFailedError

# Seconds a client waits before retrying a key whose first request is still running: the
# longest a write runs is the statement timeout, but most finish within milliseconds.
IN_USE_RETRY_AFTER_SECONDS = 1


class InvalidIdempotencyKeyError(ValidationFailedError):
    location = ("header", "Idempotency-Key")
    message = "The Idempotency-Key header must be 1 to 255 printable ASCII characters."


class IdempotencyKeyReusedError(ValidationFailedError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    location = ("header", "Idempotency-Key")
    message = (
        "This Idempotency-Key was already used for a different request; "
        "use a new key for a new request."
    )


class IdempotencyKeyInUseError(ConflictError):
    code = ErrorCode.IDEMPOTENCY_KEY_IN_USE
    message = (
        "A request with this Idempotency-Key is still being processed; "
        "retry after Retry-After seconds."
    )

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": str(IN_USE_RETRY_AFTER_SECONDS)})
