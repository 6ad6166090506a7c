"""The session routes' dependencies: the per-process session settings and a store on the
request's database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.db.deps import DatabaseDep
from app.sessions.refresh_tokens import RefreshTokenKey
from app.sessions.repository import SessionPolicy, SessionStore
from app.sessions.revocations import RevokedSessions
from app.sessions.transport import RefreshCookie
from app.settings import Settings


@dataclass(frozen=True)
class SessionConfig:
    """What every session route needs, built once from settings (create_app)."""

    policy: SessionPolicy
    key: RefreshTokenKey
    cookie: RefreshCookie
    revoked: RevokedSessions

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        if settings.jwt_secret is None:
            raise RuntimeError("JWT_SECRET is not configured")
        policy = SessionPolicy.from_settings(settings)
        return cls(
            policy=policy,
            key=RefreshTokenKey.from_secret(settings.jwt_secret.get_secret_value()),
            cookie=RefreshCookie.from_settings(settings),
            revoked=RevokedSessions(policy.token_lifetime),
        )


async def get_session_config(request: Request) -> SessionConfig:
    config: SessionConfig = request.app.state.sessions
    return config


SessionConfigDep = Annotated[SessionConfig, Depends(get_session_config)]


async def get_session_store(database: DatabaseDep, config: SessionConfigDep) -> SessionStore:
    return SessionStore(database, config.policy, config.key)


SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
