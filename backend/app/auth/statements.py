"""Every statement the account routes run, built from the `users` table and compiled once."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, exists, select
from sqlalchemy.dialects.postgresql import insert

from app.auth.models import User
from app.auth.schemas import UserRead
from app.db.statements import compile_statement

users = cast(Table, User.__table__)
# What the API shows of an account, in UserRead's order; the password hash is never among them.
USER_COLUMNS = tuple(users.c[name] for name in UserRead.model_fields)

# ON CONFLICT DO NOTHING: a taken email returns no row instead of raising a unique violation.
CREATE_USER = compile_statement(
    insert(users)
    .values({column: bindparam(column) for column in ("email", "password_hash", "name")})
    .on_conflict_do_nothing(index_elements=[users.c.email])
    .returning(*USER_COLUMNS)
)
GET_USER = compile_statement(select(*USER_COLUMNS).where(users.c.id == bindparam("user_id")))
# For login: the account and the hash to verify the password against.
GET_CREDENTIALS = compile_statement(
    select(*USER_COLUMNS, users.c.password_hash).where(users.c.email == bindparam("email"))
)
USER_EXISTS = compile_statement(select(exists().where(users.c.id == bindparam("user_id"))))
