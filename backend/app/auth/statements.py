"""Every statement the account routes run, built from the `users` table (and, for the export,
`tasks`) and compiled once."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.auth.models import User
from app.auth.schemas import UserRead
from app.db.statements import compile_statement
from app.idempotency.statements import idempotency_keys
from app.lists.statements import LIST_COLUMNS, lists
from app.tasks.statements import TASK_COLUMNS, tasks

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
# For the routes that ask for the password again: the caller's account and its hash.
GET_CREDENTIALS_BY_ID = compile_statement(
    select(*USER_COLUMNS, users.c.password_hash).where(users.c.id == bindparam("user_id"))
)
# The password change and the deletion act only if the hash is still the one the password was
# verified against: a concurrent change in between leaves the account alone (no row returned).
_VERIFIED = (
    users.c.id == bindparam("user_id"),
    users.c.password_hash == bindparam("verified_hash"),
)
CHANGE_PASSWORD = compile_statement(
    update(users)
    .where(*_VERIFIED)
    .values(password_hash=bindparam("password_hash"))
    .returning(users.c.id)
)
# Tasks and sessions go with the account (ON DELETE CASCADE); the sessions' trigger tells every
# process to refuse their access tokens.
# Tasks and sessions go by cascade; the idempotency keys (stored answers holding tasks) have no
# foreign key, which would lock the user's row on every keyed write, so they go here, in the
# same statement. A key a write commits during the deletion is left to the purge.
_deleted_user = delete(users).where(*_VERIFIED).returning(users.c.id).cte("deleted_user")
DELETE_USER = compile_statement(
    select(_deleted_user.c.id).add_cte(
        delete(idempotency_keys)
        .where(idempotency_keys.c.user_id.in_(select(_deleted_user.c.id)))
        .cte("forgotten_keys")
    )
)

# The export (auth/export.py): the account, and the snapshot's time, then every task of it in
# the order it was created, those in the trash too (with their deleted_at; null for the rest).
EXPORT_USER = compile_statement(
    select(*USER_COLUMNS, func.now().label("exported_at")).where(users.c.id == bindparam("user_id"))
)
EXPORT_LISTS = compile_statement(
    select(*LIST_COLUMNS, lists.c.deleted_at)
    .where(lists.c.user_id == bindparam("user_id"))
    .order_by(lists.c.created_at, lists.c.id)
)
EXPORT_TASKS = compile_statement(
    select(*TASK_COLUMNS, tasks.c.deleted_at)
    .where(tasks.c.user_id == bindparam("user_id"))
    .order_by(tasks.c.created_at, tasks.c.id)
)
