from app.core.errors import ConflictError, InvalidTokenError


class EmailTakenError(ConflictError):
    code = "email_taken"
    message = "An account with this email already exists"


class AccountGoneError(InvalidTokenError):
    """A token with a valid signature whose account no longer exists (deleted since it was
    issued): to the client the same 401 as any other token that cannot be trusted."""
