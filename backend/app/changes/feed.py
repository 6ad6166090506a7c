"""ChangeFeed: one owner's changes after a cursor, scoped like TaskRepository.

Why a reader never skips a change: each change takes its number while holding the owner's
change lock until it commits (changes/models.py), so the owner's numbers visible at any moment
are all of the owner's numbers up to the newest visible one, gaps only where a change rolled
back. Reading the bounds first and the page after, a cursor never moves past a number that
could still commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.auth.repository import UserRepository
from app.changes.errors import CursorExpiredError
from app.changes.statements import BOUNDS, CHANGES_AFTER, SNAPSHOT
from app.db.database import Database, Row


@dataclass(frozen=True, slots=True)
class FeedPage:
    rows: list[Row]  # FEED_COLUMNS, in change order; a row with deleted_at is a deletion
    cursor: int
    has_more: bool


class ChangeFeed:
    def __init__(self, database: Database, owner_id: uuid.UUID) -> None:
        self._database = database
        self._owner_id = owner_id

    async def read(self, *, since: int | None, limit: int) -> FeedPage:
        """The changes after ``since`` (None: a snapshot of the live tasks), at most ``limit``.
        410 when the cursor is older than the tombstones kept, or newer than any change."""
        bounds = await self._database.fetch_one(BOUNDS, owner_id=self._owner_id)
        assert bounds is not None  # a SELECT of two scalars: one row
        newest, expired_through = bounds["newest"], bounds["expired_through"]
        if since is not None and not expired_through <= since <= max(newest, expired_through):
            raise CursorExpiredError()
        statement = SNAPSHOT if since is None else CHANGES_AFTER
        rows = await self._database.fetch_all(
            statement, owner_id=self._owner_id, since=since or 0, limit=limit + 1
        )
        if len(rows) > limit:
            page = _latest_per_task(rows[:limit])
            return FeedPage(rows=page, cursor=rows[limit - 1]["change_seq"], has_more=True)
        if newest == 0:
            # No change ever: an empty feed is an answer only for an account that exists.
            await UserRepository(self._database).ensure_exists(self._owner_id)
        # Every number of the owner up to the newest visible before the page was read has
        # committed or rolled back: the page holds all of them that matter, and any beyond.
        last = rows[-1]["change_seq"] if rows else 0
        return FeedPage(
            rows=_latest_per_task(rows), cursor=max(newest, last, since or 0), has_more=False
        )


def _latest_per_task(rows: list[Row]) -> list[Row]:
    """A task id twice in one page (purged, then created again with the same client-chosen id):
    its latest change only, so each task appears once."""
    if len({row["id"] for row in rows}) == len(rows):
        return rows
    latest = {row["id"]: row for row in rows}
    return [row for row in rows if latest[row["id"]] is row]
