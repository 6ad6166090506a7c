"""The account export (GET /api/auth/me/export): the user and every task of theirs as one JSON
document, written while it is read.

Streamed, because an account may hold 100,000 tasks: the tasks come from a server-side cursor
in batches of `BATCH_SIZE`, and each batch is serialised and sent before the next is fetched,
so a process holds one batch at a time however large the document is (the server's send waits
while the client is behind, and the cursor waits with it).

Read in one READ ONLY REPEATABLE READ transaction: every statement sees the snapshot its first
one took, so the document is the account as it was at one instant (`exported_at`) even while
the user keeps editing, and a read-only transaction has nothing to commit: the response starts
before the transaction ends, and nothing may commit after a response has started.

The transaction holds one pooled connection for the whole download; a reader that stops
reading is cut off by the server's idle_in_transaction_session_timeout (db/engine.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.auth.errors import ExportsBusyError
from app.auth.repository import user_gone
from app.auth.schemas import UserRead
from app.auth.statements import EXPORT_LISTS, EXPORT_TASKS, EXPORT_USER
from app.db.database import Database
from app.lists.schemas import lists_json
from app.tasks.schemas import tasks_json

# Rows per fetch from the cursor, and so per chunk sent (about 300 bytes each).
BATCH_SIZE = 500
CONTENT_DISPOSITION = 'attachment; filename="tasks-export.json"'


# How soon a refused export may try again.
EXPORTS_BUSY_RETRY_SECONDS = 5


class ExportSlots:
    """The exports one process runs at once (EXPORT_MAX_CONCURRENT): each holds a pooled
    connection for as long as its reader takes, so their number is capped, not queued."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._running = 0

    def take(self) -> None:
        if self._running >= self._limit:
            raise ExportsBusyError(EXPORTS_BUSY_RETRY_SECONDS)
        self._running += 1

    def give_back(self) -> None:
        self._running -= 1


class ExportResponse(StreamingResponse):
    """A StreamingResponse that closes its document when the stream ends for any reason, a
    client gone mid-download included, so the transaction and its pooled connection are given
    back at once, not whenever the abandoned generator is collected; and its export slot with
    them."""

    media_type = "application/json"

    def __init__(self, document: AsyncGenerator[bytes, None], slots: ExportSlots) -> None:
        super().__init__(document, headers={"Content-Disposition": CONTENT_DISPOSITION})
        self._document = document
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Here rather than in stream_response, which Starlette may cancel before it starts.
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._document.aclose()
            finally:
                self._slots.give_back()


async def export_document(database: Database, user_id: uuid.UUID) -> AsyncGenerator[bytes, None]:
    """``{"user": ..., "lists": [...], "tasks": [...], "exported_at": ...}``, in chunks; every
    list and task is the bytes its routes send for it and its ``deleted_at`` (deleted lists and
    the trash's tasks are the account's data too), oldest first."""
    async with database.transaction(isolation="repeatable_read", readonly=True) as tx:
        user = await tx.fetch_one(EXPORT_USER, user_id=user_id)
        if user is None:
            # Deleted since the route found it: the response has started, so it is cut short.
            raise user_gone(user_id)
        yield b'{"user":' + UserRead.from_row(user).model_dump_json().encode()
        lists = await tx.fetch_all(EXPORT_LISTS, user_id=user_id)
        yield b',"lists":' + lists_json(lists) + b',"tasks":['
        cursor = await tx.connection.cursor(
            EXPORT_TASKS.sql, *EXPORT_TASKS.arguments({"user_id": user_id})
        )
        separator = b""
        while rows := await cursor.fetch(BATCH_SIZE):
            # The batch as a JSON array, without its brackets: the document has one array.
            yield separator + tasks_json(rows)[1:-1]
            separator = b","
        exported_at = orjson.dumps(user["exported_at"], option=orjson.OPT_UTC_Z)
        yield b'],"exported_at":' + exported_at + b"}"
