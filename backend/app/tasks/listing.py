"""GET /tasks: its filters, its orders, and the keyset cursor that pages through each order.

Every combination is one statement, compiled the first time it is asked for (`statement`),
so the route only binds values. Every order ends with the task id, in the same direction, so
the order is total and a cursor (the last row's key and id) says exactly where the next page
starts, whatever was created, changed or deleted in between.
"""

from __future__ import annotations

import base64
import re
import struct
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    REAL,
    ColumnElement,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    tuple_,
)

from app.db.statements import Statement, compile_statement
from app.http.errors import ValidationFailedError
from app.tasks.due import time_zone
from app.tasks.errors import InvalidCursorError
from app.tasks.models import COMBINING_MARKS, SEARCH_CONFIG
from app.tasks.pagination import Cursor
from app.tasks.statements import TASK_COLUMNS, lists, tasks

SortName = Literal["position", "due", "priority", "created", "updated", "relevance"]
SORT_NAMES: tuple[SortName, ...] = (
    "position",
    "due",
    "priority",
    "created",
    "updated",
    "relevance",
)
# sort=<name> ascending, sort=-<name> descending: an enum in the schema, for generated clients.
SortParameter = Literal[
    "position",
    "-position",
    "due",
    "-due",
    "priority",
    "-priority",
    "created",
    "-created",
    "updated",
    "-updated",
    "relevance",
    "-relevance",
]
# What a filter compares, by the name of its query parameter.
FILTERS = ("completed", "list_id", "priority", "due_before", "due_after", "overdue", "not_overdue")
# Search: the words of the query (websearch syntax), its last word as a prefix, both, or
# either (the words end with "or" before the last word).
SearchShape = Literal["words", "prefix", "both", "either"]
# The key a row carries for its cursor when the order is not one of the task's own fields.
SORT_KEY = "sort_key"
# Newest first's 32 characters, or another order's "1." and its own (a prefix the first format
# cannot have, so a cursor is never read as the other's).
CURSOR_PATTERN = r"^([A-Za-z0-9_-]{32}|1\.[A-Za-z0-9_-]{22,96})$"
_NEW_CURSOR = "1."
_POSITION_KEY = re.compile(r"[0-9A-Za-z]{1,32}")
MAX_QUERY_LENGTH = 200
# A search's text: anything but NUL, which PostgreSQL's text cannot hold.
QUERY_PATTERN = r"^[^\x00]+$"

_LAST_WORD = re.compile(r"(\w+)$")
_ANY_WORD = re.compile(r"\w")
# A minus that starts a word (not one inside "e-mail") excludes it.
_EXCLUDED = re.compile(r"(?:^|\s)-$")
# websearch_to_tsquery's "or" between the words and the last one.
_TRAILING_OR = re.compile(r"\s+or\s+$", re.IGNORECASE)
_CONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


def _fold(value: ColumnElement[str]) -> ColumnElement[str]:
    """The search column's folding of accents (tasks/models.py FOLD_ACCENTS), on the query."""
    return func.regexp_replace(
        func.normalize(value, literal_column("NFKD")),
        literal_column(f"'{COMBINING_MARKS}'"),
        literal_column("''"),
        literal_column("'g'"),
    )


def _search_query(shape: SearchShape) -> ColumnElement[Any]:
    words = func.websearch_to_tsquery(
        _CONFIG, _fold(bindparam("q_words", type_=tasks.c.title.type))
    )
    prefix = func.to_tsquery(
        _CONFIG,
        func.quote_literal(_fold(bindparam("q_prefix", type_=tasks.c.title.type))).concat(
            literal_column("':*'")
        ),
    )
    if shape == "words":
        return words
    if shape == "prefix":
        return prefix
    return words.op("||" if shape == "either" else "&&")(prefix)


@dataclass(frozen=True, slots=True)
class Shape:
    """What varies between the list route's statements."""

    filters: frozenset[str] = frozenset()
    search: SearchShape | None = None
    sort: SortName = "created"
    descending: bool = True
    # Continues after a cursor whose key is a value, or (sort=due only) no due.
    after: Literal["value", "null"] | None = None


def _key(shape: Shape) -> ColumnElement[Any]:
    if shape.sort == "relevance":
        assert shape.search is not None
        return func.ts_rank_cd(tasks.c.search, _search_query(shape.search), type_=REAL)
    return {
        "position": tasks.c.position,
        "due": tasks.c.due_at,
        "priority": tasks.c.priority,
        "created": tasks.c.created_at,
        "updated": tasks.c.updated_at,
    }[shape.sort]


def _overdue() -> ColumnElement[bool]:
    # A timed due has passed its instant; an all-day one is overdue once its day is over in the
    # listing's zone (tz), whose today the route binds (computed here, with the zones it
    # validated, not with the database server's).
    today = bindparam("today", type_=tasks.c.due_date.type)
    return and_(
        # Implied by what follows (a day is due at its 00:00 UTC, and no zone's today begins
        # more than a day after UTC's now), and lets the due index find the candidates.
        tasks.c.due_at < func.now() + literal_column("interval '1 day'"),
        ~tasks.c.completed,
        or_(
            and_(tasks.c.due_timezone.is_not(None), tasks.c.due_at < func.now()),
            and_(tasks.c.due_timezone.is_(None), tasks.c.due_date < today),
        ),
    )


def _filter(name: str) -> ColumnElement[bool]:
    if name == "overdue":
        return _overdue()
    if name == "not_overdue":
        return not_(func.coalesce(_overdue(), false()))
    if name == "due_before":
        return tasks.c.due_at < bindparam(name, type_=tasks.c.due_at.type)
    if name == "due_after":
        return tasks.c.due_at >= bindparam(name, type_=tasks.c.due_at.type)
    column = tasks.c[name]  # completed, list_id, priority: equal to the value
    return column == bindparam(name, type_=column.type)


@cache
def statement(shape: Shape) -> Statement:
    """The statement of one shape; binds ``owner_id``, ``limit``, each filter's value, the
    search's ``q_words``/``q_prefix``, and after a cursor ``after_key`` and ``after_id``."""
    key = _key(shape)
    if "list_id" in shape.filters:
        # One list of the owner: the owner is checked on the list, once, and the list's index
        # finds its tasks, which are all the list owner's (the composite foreign key). A filter
        # on the tasks' owner would offer the planner the owner's index too, whose overlap with
        # the list's it cannot estimate (it expects a handful of rows and sorts a bitmap scan
        # of the whole list instead of reading the position index in order: bench/RESULTS.md).
        owner: ColumnElement[bool] = exists().where(
            lists.c.id == bindparam("list_id"), lists.c.user_id == bindparam("owner_id")
        )
    else:
        owner = tasks.c.user_id == bindparam("owner_id")
    conditions: list[ColumnElement[bool]] = [
        owner,
        tasks.c.deleted_at.is_(None),
        *(_filter(name) for name in sorted(shape.filters)),
    ]
    if shape.search is not None:
        conditions.append(tasks.c.search.op("@@")(_search_query(shape.search)))
    after_id = bindparam("after_id", type_=tasks.c.id.type)
    # A list's live tasks have distinct positions (a unique constraint): the position alone is
    # a total order, which its index serves with no sort.
    by_id = shape.sort != "position"
    if shape.after == "value" and not by_id:
        after_key = bindparam("after_key", type_=key.type)
        conditions.append(key < after_key if shape.descending else key > after_key)
    elif shape.after == "null":  # sort=due, after a task without a due: the rest of those
        conditions += [
            key.is_(None),
            tasks.c.id < after_id if shape.descending else tasks.c.id > after_id,
        ]
    elif shape.after == "value":
        after_key = bindparam("after_key", type_=key.type)
        beyond = (
            tuple_(key, tasks.c.id) < tuple_(after_key, after_id)
            if shape.descending
            else (tuple_(key, tasks.c.id) > tuple_(after_key, after_id))
        )
        # Tasks without a due come last in either direction.
        conditions.append(or_(beyond, key.is_(None)) if shape.sort == "due" else beyond)
    order = key.desc() if shape.descending else key.asc()
    if shape.sort == "due":
        order = order.nulls_last()
    columns = [*TASK_COLUMNS]
    if shape.sort in ("due", "relevance"):
        columns.append(key.label(SORT_KEY))
    tie_break = [tasks.c.id.desc() if shape.descending else tasks.c.id.asc()] if by_id else []
    return compile_statement(
        select(*columns).where(*conditions).order_by(order, *tie_break).limit(bindparam("limit"))
    )


@dataclass(frozen=True, slots=True)
class Search:
    """A search box's text, split into the words it completed and the one still being typed
    (the last word, when the text ends in it: "gro" finds "groceries")."""

    words: str | None
    prefix: str | None
    either: bool = False  # "a or b": the words or the prefix

    @classmethod
    def of(cls, text: str) -> Search:
        # Composed first, so that an accent typed as a combining mark stays in its word.
        text = unicodedata.normalize("NFC", text)
        head, prefix = text, None
        last = _LAST_WORD.search(text)
        # Not a word inside an unclosed quote (a phrase) or excluded (a minus starting it).
        if last and text.count('"') % 2 == 0 and not _EXCLUDED.search(text[: last.start()]):
            head, prefix = text[: last.start()], last.group(1)
        either = False
        if prefix is not None:
            joined = _TRAILING_OR.search(head)
            if joined:
                head, either = head[: joined.start()], True
        return cls(words=head if _ANY_WORD.search(head) else None, prefix=prefix, either=either)

    @property
    def shape(self) -> SearchShape | None:
        if self.words is not None and self.prefix is not None:
            return "either" if self.either else "both"
        if self.words is not None:
            return "words"
        return "prefix" if self.prefix is not None else None

    def values(self) -> dict[str, str]:
        found = {"q_words": self.words, "q_prefix": self.prefix}
        return {name: value for name, value in found.items() if value is not None}


# A cursor of any order but the default one: version 1, the order, the last row's id, its key.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HEAD = struct.Struct(">BB16s")
_KEYS: dict[str, struct.Struct | None] = {
    "created": struct.Struct(">q"),
    "updated": struct.Struct(">q"),
    "due": struct.Struct(">q"),
    "priority": struct.Struct(">b"),
    "relevance": struct.Struct(">f"),
    "position": None,  # the key's own bytes
}


@dataclass(frozen=True, slots=True)
class SortCursor:
    sort: SortName
    descending: bool
    id: uuid.UUID
    key: Any = field(default=None)  # None: a task without a due (sort=due only)

    def encode(self) -> str:
        code = SORT_NAMES.index(self.sort) | (0x80 if self.descending else 0)
        head = _HEAD.pack(1, code, self.id.bytes)
        layout = _KEYS[self.sort]
        if self.key is None:
            body = b""
        elif layout is None:
            body = self.key.encode()
        elif isinstance(self.key, datetime):
            body = layout.pack((self.key - _EPOCH) // _MICROSECOND)
        else:
            body = layout.pack(self.key)
        return _NEW_CURSOR + base64.urlsafe_b64encode(head + body).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, *, sort: SortName, descending: bool) -> SortCursor:
        """422 invalid_cursor for anything this order did not write."""
        if not token.startswith(_NEW_CURSOR):
            raise InvalidCursorError()
        token = token.removeprefix(_NEW_CURSOR)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, code, id_bytes = _HEAD.unpack_from(raw)
        except (ValueError, struct.error):
            raise InvalidCursorError() from None
        if version != 1 or code != SORT_NAMES.index(sort) | (0x80 if descending else 0):
            raise InvalidCursorError()
        body = raw[_HEAD.size :]
        layout = _KEYS[sort]
        key: Any
        try:
            if not body and sort == "due":
                key = None
            elif layout is None:
                key = body.decode("ascii")
                if not _POSITION_KEY.fullmatch(key):
                    raise ValueError
            else:
                (number,) = layout.unpack(body)
                key = (
                    _EPOCH + number * _MICROSECOND
                    if sort in ("created", "updated", "due")
                    else number
                )
        except (ValueError, struct.error, OverflowError):
            raise InvalidCursorError() from None
        return cls(sort=sort, descending=descending, id=uuid.UUID(bytes=id_bytes), key=key)


def is_default(sort: SortName, descending: bool) -> bool:
    """Newest first: the order whose cursor keeps its first format (tasks/pagination.py)."""
    return sort == "created" and descending


class InvalidListingError(ValidationFailedError):
    location = ("query", "sort")


@dataclass(frozen=True, slots=True)
class Listing:
    """One request to the list route: the statement's shape and the values it binds."""

    shape: Shape
    values: dict[str, Any]

    @classmethod
    def of(
        cls,
        *,
        completed: bool | None = None,
        list_id: uuid.UUID | None = None,
        priority: int | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
        overdue: bool | None = None,
        tz: str = "UTC",
        q: str | None = None,
        sort: str | None = None,
        cursor: str | None = None,
    ) -> Listing | None:
        """None when the search has no word to look for (it finds nothing)."""
        given = {
            "completed": completed,
            "list_id": list_id,
            "priority": priority,
            "due_before": due_before,
            "due_after": due_after,
        }
        values: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        filters = set(values)
        if overdue is not None:
            filters.add("overdue" if overdue else "not_overdue")
            values["today"] = datetime.now(time_zone(tz)).date()
        search = Search.of(q) if q is not None else None
        if search is not None:
            if search.shape is None:
                return None
            values.update(search.values())
        order = sort or ("-relevance" if search is not None else "-created")
        descending = order.startswith("-")
        name = _sort_name(order.lstrip("-"))
        if name == "position" and list_id is None:
            raise InvalidListingError(message="sort=position orders one list: give list_id")
        if name == "relevance" and search is None:
            raise InvalidListingError(message="sort=relevance ranks a search: give q")
        after = _after(cursor, name, descending, values) if cursor is not None else None
        shape = Shape(
            filters=frozenset(filters),
            search=search.shape if search is not None else None,
            sort=name,
            descending=descending,
            after=after,
        )
        return cls(shape=shape, values=values)

    def cursor_after(self, row: Any) -> str:
        """The cursor of the page that follows ``row``."""
        shape = self.shape
        if is_default(shape.sort, shape.descending):
            return Cursor(at=row["created_at"], id=row["id"]).encode()
        field_name = {"created": "created_at", "updated": "updated_at"}.get(shape.sort, shape.sort)
        key = row[SORT_KEY] if shape.sort in ("due", "relevance") else row[field_name]
        return SortCursor(
            sort=shape.sort, descending=shape.descending, id=row["id"], key=key
        ).encode()


def _sort_name(text: str) -> SortName:
    for name in SORT_NAMES:
        if name == text:
            return name
    raise InvalidListingError(message="unknown sort")  # the route's enum comes first


def _after(
    cursor: str, sort: SortName, descending: bool, values: dict[str, Any]
) -> Literal["value", "null"]:
    """Decodes the cursor into ``values`` (after_key, after_id)."""
    if is_default(sort, descending):
        old = Cursor.decode(cursor)
        key: Any = old.at
        values["after_id"] = old.id
    else:
        decoded = SortCursor.decode(cursor, sort=sort, descending=descending)
        key = decoded.key
        if sort != "position":  # a position alone says where the page ends
            values["after_id"] = decoded.id
    if key is None:
        return "null"
    values["after_key"] = key
    return "value"


# The route's default: every live task, newest first.
NEWEST_FIRST = Listing(shape=Shape(), values={})
