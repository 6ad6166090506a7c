"""The yardstick: a bare ASGI callable on an asyncpg pool, no framework, no auth, no logging.

It answers the four benchmark routes with the statements the service runs (imported from
`app.tasks.statements`, the same compiled SQL, with a ``LIMIT 101`` page), serialised with
orjson; W5's and W6's listings with the list route's statement for their query
(`app.tasks.listing`); and C1's ``GET /api/{user_id}/changes?since=&limit=`` with the
feed's two statements in one read-only repeatable-read transaction, as `app.changes.feed`
runs them. The table in
bench/RESULTS.md shows the service as a fraction of this app's req/s, measured in the same
sitting, so the ratio says what the full stack (routing, JWT auth, validation, logging,
metrics) costs over the raw driver.

    python -m uvicorn bench.reference:app --loop uvloop --http httptools --no-access-log

Reads DATABASE_URL (any form the service accepts) and sizes its pool like the service:
``DB_POOL_SIZE`` connections kept, up to ``DB_POOL_SIZE + DB_MAX_OVERFLOW`` (the service's
defaults when unset). Everything else is
asyncpg's defaults (statement cache on; a reset query on each release, as in any asyncpg app).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import orjson

from app.changes.statements import BOUNDS, CHANGES_AFTER
from app.db.statements import Statement
from app.db.url import parse_database_url
from app.settings import Settings
from app.tasks.due import NO_DUE
from app.tasks.listing import SORT_KEY, Listing, Shape
from app.tasks.listing import statement as listing_statement
from app.tasks.statements import CREATE_TASK, GET_TASK, TASK_COLUMNS, TOGGLE_TASK

LIST_SQL = listing_statement(Shape())
PAGE_SIZE = 100
TASK_FIELDS = tuple(column.name for column in TASK_COLUMNS)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_NOT_FOUND = b'{"detail":"Not found"}'
_pool: asyncpg.Pool | None = None


async def _create_pool() -> asyncpg.Pool:
    target = parse_database_url(os.environ["DATABASE_URL"])
    dsn = target.url.set(drivername="postgresql").render_as_string(hide_password=False)
    defaults = Settings.model_fields
    pool_size = int(os.environ.get("DB_POOL_SIZE", str(defaults["db_pool_size"].default)))
    overflow = int(os.environ.get("DB_MAX_OVERFLOW", str(defaults["db_max_overflow"].default)))
    kwargs: dict[str, Any] = {}
    ssl_argument = target.ssl_argument()
    if ssl_argument is not None:
        kwargs["ssl"] = ssl_argument
    return await asyncpg.create_pool(
        dsn, min_size=pool_size, max_size=pool_size + overflow, init=_decode_json, **kwargs
    )


async def _decode_json(connection: asyncpg.Connection) -> None:
    # As the service's connections do (SQLAlchemy's asyncpg dialect sets this codec): a task's
    # due, built as json by the statement, arrives as an object.
    await connection.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _one_task(statement: Statement, user_id: uuid.UUID, task_id: uuid.UUID) -> bytes:
    assert _pool is not None
    row = await _pool.fetchrow(
        statement.sql, *statement.arguments({"owner_id": user_id, "task_id": task_id})
    )
    return orjson.dumps(dict(row), default=str) if row is not None else b""


def _since_and_limit(query_string: bytes) -> tuple[int, int]:
    """Raises KeyError or ValueError for a query C1 never sends."""
    query = parse_qs(query_string.decode("latin-1"))
    return int(query["since"][0]), int(query.get("limit", [str(PAGE_SIZE)])[0])


async def _changes(user_id: uuid.UUID, since: int, limit: int) -> bytes:
    """The feed's page after ``since``: the same statements and transaction as the service, the
    cursor's expiry check and the per-task de-duplication left out (neither applies to C1)."""
    assert _pool is not None
    values = {"owner_id": user_id, "since": since, "limit": limit + 1}
    async with (
        _pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        bounds = await connection.fetchrow(BOUNDS.sql, *BOUNDS.arguments({"owner_id": user_id}))
        rows = await connection.fetch(CHANGES_AFTER.sql, *CHANGES_AFTER.arguments(values))
    assert bounds is not None  # two scalars: always one row
    has_more = len(rows) > limit
    rows = rows[:limit]
    if has_more:
        after = int(rows[-1]["change_seq"])
    else:
        last = int(rows[-1]["change_seq"]) if rows else 0
        after = max(int(bounds["newest"]), int(bounds["expired_through"]), last, since)
    changes = [
        {"op": "delete", "task_id": row["id"]}
        if row["deleted_at"] is not None
        else {"op": "upsert", "task": {name: row[name] for name in TASK_FIELDS}}
        for row in rows
    ]
    body = {"changes": changes, "cursor": str(after), "has_more": has_more}
    return orjson.dumps(body, default=str)  # asyncpg's UUID is not the standard one


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool  # noqa: PLW0603  (one pool per process, like the service's engine)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _pool = await _create_pool()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert _pool is not None
    if scope["path"] == "/ready":
        await _respond(send, 200, b'{"status":"ok"}')
        return
    # /api/{user_id}/tasks[/{task_id}[/complete]], /api/{user_id}/changes
    parts = scope["path"].split("/")
    try:
        if len(parts) < 4 or parts[1] != "api" or parts[3] not in ("tasks", "changes"):
            raise LookupError
        user_id = uuid.UUID(parts[2])
        task_id = uuid.UUID(parts[4]) if len(parts) > 4 else None
    except (LookupError, ValueError):
        await _respond(send, 404, _NOT_FOUND)
        return
    if parts[3] == "changes":
        await _serve_changes(scope, send, user_id)
    else:
        await _serve_tasks(scope, receive, send, user_id, task_id)


async def _serve_changes(scope: dict[str, Any], send: Any, user_id: uuid.UUID) -> None:
    if scope["path"].count("/") != 3 or scope["method"] != "GET":
        await _respond(send, 404, _NOT_FOUND)
        return
    try:
        since, limit = _since_and_limit(scope["query_string"])
    except (KeyError, ValueError):
        await _respond(send, 422, b'{"detail":"Invalid query"}')
        return
    await _respond(send, 200, await _changes(user_id, since, limit))


async def _serve_tasks(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    user_id: uuid.UUID,
    task_id: uuid.UUID | None,
) -> None:
    assert _pool is not None
    parts = scope["path"].split("/")
    method = scope["method"]
    status = 200
    if task_id is None and method == "GET" and scope["query_string"]:
        # W5, W6: the list route's statement for the query (tasks/listing.py), its page as is.
        query = parse_qs(scope["query_string"].decode())
        listing = Listing.of(
            list_id=uuid.UUID(query["list_id"][0]) if "list_id" in query else None,
            q=query["q"][0] if "q" in query else None,
            sort=query["sort"][0] if "sort" in query else None,
        )
        assert listing is not None
        limit = int(query["limit"][0])
        values = {"owner_id": user_id, "limit": limit + 1, **listing.values}
        statement = listing_statement(listing.shape)
        rows = await _pool.fetch(statement.sql, *statement.arguments(values))
        page = [dict(row) for row in rows[:limit]]
        for row in page:
            row.pop(SORT_KEY, None)
        body = orjson.dumps(page, default=str)
    elif task_id is None and method == "GET":
        rows = await _pool.fetch(
            LIST_SQL.sql, *LIST_SQL.arguments({"owner_id": user_id, "limit": PAGE_SIZE + 1})
        )
        body = orjson.dumps([dict(row) for row in rows[:PAGE_SIZE]], default=str)
    elif task_id is None and method == "POST":
        try:
            payload = orjson.loads(await _read_body(receive))
            title = payload["title"].strip()
            description = payload.get("description")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            await _respond(send, 422, b'{"detail":"Invalid body"}')
            return
        values = {
            "owner_id": user_id,
            "title": title,
            "description": description,
            "task_id": None,
            "priority": 0,
            **NO_DUE,
        }
        row = await _pool.fetchrow(CREATE_TASK.plain.sql, *CREATE_TASK.plain.arguments(values))
        body, status = orjson.dumps(dict(row), default=str), 201
    elif len(parts) == 5 and method == "GET":
        body = await _one_task(GET_TASK, user_id, task_id)
    elif len(parts) == 6 and parts[5] == "complete" and method == "PATCH":
        body = await _one_task(TOGGLE_TASK.plain, user_id, task_id)
    else:
        await _respond(send, 404, _NOT_FOUND)
        return
    if not body:
        await _respond(send, 404, _NOT_FOUND)
        return
    await _respond(send, status, body)
