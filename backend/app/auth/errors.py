from app.core.errors import ConflictError


class EmailTakenError(ConflictError):
    code = "email_taken"
    message = "An account with this email already exists"
