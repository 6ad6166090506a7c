from app.http.errors import ErrorCode, NotFoundError, ValidationFailedError


class TaskNotFoundError(NotFoundError):
    """Missing and not-yours are the same answer: another owner's task does not exist for you."""

    code = ErrorCode.TASK_NOT_FOUND
    message = "Task not found"


class InvalidCursorError(ValidationFailedError):
    code = ErrorCode.INVALID_CURSOR
    location = ("query", "cursor")
    message = "The pagination cursor is invalid; restart from the first page"
