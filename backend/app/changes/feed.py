"""ChangeFeed: one owner's changes after a cursor, scoped like TaskRepository.

Why a reader never skips a change: each change takes its number while holding the owner's
change lock until it commits (changes/models.py), so the owner's numbers visible at any moment
are all of the owner's numbers up to the newest visible one, gaps only where a change rolled
back. The bounds and the page come from one snapshot, so a cursor never moves past a number
that could still commit.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.auth.repository import UserRepository
from app.changes.errors import CursorExpiredError
from app.changes.statements import (
    BOUNDS,
    CHANGES_AFTER,
    LISTS_CHANGED_AFTER,
    LISTS_SNAPSHOT,
    SNAPSHOT,
)
from app.db.database import Database, Row, Transaction


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """Where a client stands: every change numbered up to ``after`` applied. While a full sync
    is paged, ``floor`` is the highest number when it began: a deletion below it concerns a task
    the client never had, so its tombstone's pruning does not expire the cursor."""

    after: int
    floor: int = 0

    def encode(self) -> str:
        return f"{self.after}.{self.floor}" if self.floor > self.after else str(self.after)

    @classmethod
    def decode(cls, text: str) -> FeedCursor:
        """From a string CURSOR_PATTERN already matched."""
        after, _, floor = text.partition(".")
        return cls(after=int(after), floor=int(floor or 0))


@dataclass(frozen=True, slots=True)
class ListChange:
    """A list's row in the feed (LIST_FEED_COLUMNS), told apart from the tasks' rows it is
    merged with; read like a row."""

    row: Row

    def __getitem__(self, name: str) -> Any:
        return self.row[name]


# A task's row (FEED_COLUMNS) or a list's; one with deleted_at is a deletion.
Change = Row | ListChange


@dataclass(frozen=True, slots=True)
class FeedPage:
    rows: list[Change]  # in change order
    cursor: FeedCursor
    has_more: bool


class ChangeFeed:
    def __init__(
        self, database: Database, owner_id: uuid.UUID, *, include_lists: bool = False
    ) -> None:
        """``include_lists``: the owner's lists too (their numbers are skipped otherwise)."""
        self._database = database
        self._owner_id = owner_id
        self.include_lists = include_lists

    async def _bounds(self, source: Database | Transaction) -> tuple[int, int]:
        """The highest number the owner's feed has used, visible or forgotten (0: none yet),
        and the highest forgotten."""
        bounds = await source.fetch_one(BOUNDS, owner_id=self._owner_id)
        assert bounds is not None  # a SELECT of two scalars: one row
        expired_through = int(bounds["expired_through"])
        return max(int(bounds["newest"]), expired_through), expired_through

    async def newest(self) -> FeedCursor:
        """Where a client that holds everything now stands: after the newest change."""
        highest, _ = await self._bounds(self._database)
        if highest == 0:
            await UserRepository(self._database).ensure_exists(self._owner_id)
        return FeedCursor(highest)

    async def read(self, *, since: FeedCursor | None, limit: int) -> FeedPage:
        """The changes after ``since`` (None: a full sync, the live tasks), at most ``limit``.
        410 when the cursor is older than the tombstones kept, or newer than any change."""
        # One snapshot for the bounds and the page: a tombstone pruned between the two would
        # otherwise be missing from the page while the cursor moved past it.
        async with self._database.transaction(isolation="repeatable_read", readonly=True) as tx:
            highest, expired_through = await self._bounds(tx)
            expired = since is not None and not (
                expired_through <= max(since.after, since.floor) and since.after <= highest
            )
            rows: list[Change] = []
            if not expired:
                window = {
                    "owner_id": self._owner_id,
                    "since": 0 if since is None else since.after,
                    "limit": limit + 1,
                }
                rows = list(
                    await tx.fetch_all(SNAPSHOT if since is None else CHANGES_AFTER, **window)
                )
                if self.include_lists:
                    changed = LISTS_SNAPSHOT if since is None else LISTS_CHANGED_AFTER
                    lists = [ListChange(row) for row in await tx.fetch_all(changed, **window)]
                    rows = _in_number_order(rows, lists)
        if highest == 0:
            # Nothing ever changed: an answer only for an account that exists (asked once the
            # transaction has given its connection back).
            await UserRepository(self._database).ensure_exists(self._owner_id)
        if expired:
            raise CursorExpiredError()
        if len(rows) > limit:
            floor = highest if since is None else since.floor
            cursor = FeedCursor(after=rows[limit - 1]["change_seq"], floor=floor)
            return FeedPage(rows=_latest_per_task(rows[:limit]), cursor=cursor, has_more=True)
        # Every number of the owner up to the highest in this snapshot has committed or rolled
        # back (changes/models.py): the page holds every one of them that matters.
        last = rows[-1]["change_seq"] if rows else 0
        after = max(highest, last, 0 if since is None else since.after)
        return FeedPage(rows=_latest_per_task(rows), cursor=FeedCursor(after), has_more=False)


def _in_number_order(tasks: Sequence[Change], lists: Sequence[Change]) -> list[Change]:
    """Two pages, each in number order, as one: the first ``limit + 1`` of them still hold
    every number up to the last one taken, since each page holds all of its kind up to its
    own last."""
    if not lists:
        return list(tasks)
    return list(heapq.merge(tasks, lists, key=lambda change: change["change_seq"]))


def _latest_per_task(rows: list[Change]) -> list[Change]:
    """A task id twice in one page (purged, then created again with the same client-chosen id):
    its latest change only, so each task appears once. A list may share a task's id (each
    kind's ids are its own), so they are told apart by kind."""
    if len({row["id"] for row in rows}) == len(rows):
        return rows
    latest = {(isinstance(row, ListChange), row["id"]): row for row in rows}
    return [row for row in rows if latest[isinstance(row, ListChange), row["id"]] is row]
