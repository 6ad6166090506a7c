"""Every statement the session routes run, built from the `sessions` table and compiled once.

Statements that start from a refresh token look the session up by its id (the token names it
and its MAC proves it); everything a user asks about their sessions filters on
``user_id = :owner_id``, bound by SessionRepository itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import (
    Interval,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from app.auth.statements import USER_COLUMNS, users
from app.db.statements import compile_statement
from app.sessions.models import LoginSession
from app.sessions.schemas import SessionRead

sessions = cast(Table, LoginSession.__table__)
_now = func.now()


def _interval(name: str) -> BindParameter[timedelta]:
    return bindparam(name, type_=Interval)


# Usable: not ended, within its absolute lifetime, and used within the idle time.
_ACTIVE = and_(
    sessions.c.ended_at.is_(None),
    sessions.c.expires_at > _now,
    sessions.c.last_used_at > _now - _interval("idle"),
)
_OWNED = sessions.c.user_id == bindparam("owner_id")
# What the session list shows, in SessionRead's order (`current` is the caller's, not a column).
SESSION_COLUMNS = tuple(sessions.c[name] for name in SessionRead.model_fields if name != "current")

# Only while the account still has the password hash the login verified: a password change or
# an account deletion that commits during the login's argon2 leaves no session behind it.
START_SESSION = compile_statement(
    insert(sessions)
    .from_select(
        ["user_id", "expires_at", "refresh_salt", "user_agent", "address"],
        select(
            users.c.id,
            _now + _interval("lifetime"),
            bindparam("refresh_salt", type_=LargeBinary),
            bindparam("user_agent", type_=String),
            bindparam("address", type_=String),
        ).where(
            users.c.id == bindparam("user_id"),
            users.c.password_hash == bindparam("verified_hash"),
        ),
    )
    .returning(sessions.c.id, sessions.c.expires_at)
)
# At each login, the user's sessions that can no longer hold a live access token go: ended, or
# expired, for longer than an access token lives (a deleted live session would be revoked).
PURGE_USER_SESSIONS = compile_statement(
    delete(sessions).where(
        sessions.c.user_id == bindparam("user_id"),
        or_(
            sessions.c.ended_at < _now - _interval("token_lifetime"),
            sessions.c.expires_at < _now - _interval("token_lifetime"),
            sessions.c.last_used_at < _now - _interval("idle") - _interval("token_lifetime"),
        ),
    )
)
# A refresh locks its session, so concurrent refreshes of one session run one after another and
# each sees the generation the previous one left.
LOCK_FOR_REFRESH = compile_statement(
    select(
        *USER_COLUMNS,
        sessions.c.refresh_salt,
        sessions.c.refresh_generation,
        sessions.c.expires_at,
        sessions.c.ended_at,
        (sessions.c.expires_at <= _now).label("expired"),
        (sessions.c.last_used_at <= _now - _interval("idle")).label("idle_expired"),
        (sessions.c.rotated_at > _now - _interval("grace")).label("in_grace"),
    )
    .join(users, users.c.id == sessions.c.user_id)
    .where(sessions.c.id == bindparam("session_id"))
    .with_for_update(of=sessions)
)
ROTATE = compile_statement(
    update(sessions)
    .where(sessions.c.id == bindparam("session_id"))
    .values(
        refresh_generation=sessions.c.refresh_generation + literal_column("1"),
        rotated_at=_now,
        last_used_at=_now,
    )
    .returning(sessions.c.refresh_generation)
)
TOUCH = compile_statement(
    update(sessions).where(sessions.c.id == bindparam("session_id")).values(last_used_at=_now)
)
# For logout by refresh token: the salt to check its MAC against.
GET_SALT = compile_statement(
    select(sessions.c.refresh_salt, sessions.c.refresh_generation).where(
        sessions.c.id == bindparam("session_id")
    )
)
END_SESSION = compile_statement(
    update(sessions)
    .where(sessions.c.id == bindparam("session_id"), sessions.c.ended_at.is_(None))
    .values(ended_at=_now, end_reason=bindparam("reason"))
)
# Scoped to the owner: the session list, ending one, ending all but the caller's.
LIST_SESSIONS = compile_statement(
    select(*SESSION_COLUMNS)
    .where(_OWNED, _ACTIVE)
    .order_by(sessions.c.last_used_at.desc(), sessions.c.id)
)
# Any session not yet ended, an expired one too: an access token issued just before the end
# may still be alive, and ending the session is what revokes it.
END_OWN_SESSION = compile_statement(
    update(sessions)
    .where(_OWNED, sessions.c.id == bindparam("session_id"), sessions.c.ended_at.is_(None))
    .values(ended_at=_now, end_reason=bindparam("reason"))
    .returning(sessions.c.id)
)
# Also run by the password change, in the transaction that changes the hash
# (auth/repository.py), so both commit together.
END_OTHER_SESSIONS = compile_statement(
    update(sessions)
    .where(_OWNED, sessions.c.id != bindparam("session_id"), sessions.c.ended_at.is_(None))
    .values(ended_at=_now, end_reason=bindparam("reason"))
    .returning(sessions.c.id)
)
# What every process loads at start (and after reconnecting its listener): sessions ended
# recently enough that one of their access tokens may still be unexpired.
RECENTLY_ENDED = compile_statement(
    select(sessions.c.id, sessions.c.ended_at).where(
        sessions.c.ended_at > _now - _interval("token_lifetime")
    )
)
