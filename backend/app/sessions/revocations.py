"""The sessions ended recently, held by every process, so their access tokens are refused
without a query on the task routes.

Each entry stays until every access token of its session has expired (one token lifetime
after the end); later, the token's own ``exp`` refuses it. The set is filled from the
database when the process's notification listener connects (after its LISTEN, so nothing
ended in between is missed) and kept current by the `session_ended` notifications the
database's trigger sends when a session ends or is deleted.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import structlog

from app.db.engine import DriverConnection
from app.sessions.statements import RECENTLY_ENDED

logger = structlog.get_logger("app.sessions")

# Kept this much longer than a token lifetime: for clock skew between hosts, and for a token a
# refresh issued while the statement ending its session waited for the row's lock (the end's
# `now()` is its transaction's start).
KEEP_MARGIN_SECONDS = 60.0


class RevokedSessions:
    def __init__(self, token_lifetime: timedelta) -> None:
        self._token_lifetime = token_lifetime
        # Session id -> when its last token expires. The token codec looks ids up in this very
        # dict (a C-level lookup on every request), so it is only ever changed in place. An
        # entry past its time is harmless: the token it would refuse has expired too.
        self.ids: dict[uuid.UUID, float] = {}
        self._next_prune = 0.0

    def __contains__(self, session_id: object) -> bool:
        return session_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, session_id: uuid.UUID, ended_at: float | None = None) -> None:
        now = time.time()
        ended = now if ended_at is None else ended_at
        self.ids[session_id] = ended + self._token_lifetime.total_seconds() + KEEP_MARGIN_SECONDS
        if now >= self._next_prune:
            self._prune(now)

    def on_notification(self, payload: str) -> None:
        """The listener's callback for the `session_ended` channel."""
        try:
            session_id = uuid.UUID(payload)
        except ValueError:
            logger.warning("session_notification_malformed", payload=payload[:64])
            return
        self.add(session_id)

    async def reload(self, connection: DriverConnection) -> None:
        """Load what ended while this process was not listening (at start, after a reconnect)."""
        rows = await connection.fetch(
            RECENTLY_ENDED.sql, *RECENTLY_ENDED.arguments({"token_lifetime": self._token_lifetime})
        )
        for row in rows:
            self.add(row["id"], row["ended_at"].timestamp())
        logger.info("revoked_sessions_loaded", count=len(rows))

    def _prune(self, now: float) -> None:
        for session_id in [sid for sid, until in self.ids.items() if until <= now]:
            del self.ids[session_id]
        self._next_prune = now + 60.0
