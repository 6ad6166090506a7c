from app.http.errors import NotFoundError, ValidationFailedError


class TaskNotFoundError(NotFoundError):
    """Missing and not-yours are the same answer: another owner's task does not exist for you."""

    code = "task_not_found"
    message = "Task not found"


class InvalidCursorError(ValidationFailedError):
    code = "invalid_cursor"
    location = ("query", "cursor")
    message = "The pagination cursor is invalid; restart from the first page"
