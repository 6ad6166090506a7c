"""TaskRepository against the real database: every method is scoped to its owner."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.database import Database, Row
from app.tasks.errors import TaskNotFoundError
from app.tasks.listing import Listing
from app.tasks.pagination import Cursor
from app.tasks.repository import TaskRepository
from tests.fixtures.accounts import Account
from tests.fixtures.tasks import is_trashed, task_count, task_row

Write = Callable[[TaskRepository, uuid.UUID], Awaitable[object]]

# Every method that changes a task, as the other owner would call it.
WRITES: list[Any] = [
    pytest.param(lambda repo, task_id: repo.update(task_id, title="hijacked"), id="update-title"),
    pytest.param(
        lambda repo, task_id: repo.update(task_id, description=None), id="update-description"
    ),
    pytest.param(lambda repo, task_id: repo.update(task_id, completed=True), id="update-completed"),
    pytest.param(lambda repo, task_id: repo.set_completed(task_id, True), id="set_completed-true"),
    pytest.param(
        lambda repo, task_id: repo.set_completed(task_id, False), id="set_completed-false"
    ),
    pytest.param(lambda repo, task_id: repo.toggle(task_id), id="toggle"),
    pytest.param(lambda repo, task_id: repo.delete(task_id), id="delete"),
]


def _ids(tasks: Any) -> list[uuid.UUID]:
    return [task["id"] for task in tasks]


@pytest.fixture
def owner_id(account: Account) -> uuid.UUID:
    return uuid.UUID(account.id)


@pytest.fixture
def stranger_id(other_account: Account) -> uuid.UUID:
    return uuid.UUID(other_account.id)


@pytest.fixture
def mine(database: Database, owner_id: uuid.UUID, clean_tasks: None) -> TaskRepository:
    return TaskRepository(database, owner_id)


@pytest.fixture
def theirs(database: Database, stranger_id: uuid.UUID, clean_tasks: None) -> TaskRepository:
    return TaskRepository(database, stranger_id)


@pytest.fixture
async def my_task(mine: TaskRepository) -> Row:
    return await mine.create(title="mine", description="private")


# --- scoped to the owner --------------------------------------------------------------------


async def test_create_stamps_the_repositorys_owner(
    mine: TaskRepository, owner_id: uuid.UUID, engine: AsyncEngine
) -> None:
    task = await mine.create(title="Buy milk", description="Two litres")

    assert task["user_id"] == owner_id
    assert (task["title"], task["description"], task["completed"], task["completed_at"]) == (
        "Buy milk",
        "Two litres",
        False,
        None,
    )
    row = await task_row(engine, task["id"])
    assert row is not None
    assert row["user_id"] == owner_id
    assert row["created_at"] == task["created_at"] == task["updated_at"]


async def test_get_of_another_owners_task_is_not_found(
    theirs: TaskRepository, my_task: Row
) -> None:
    with pytest.raises(TaskNotFoundError):
        await theirs.get(my_task["id"])


async def test_get_of_a_missing_task_is_not_found(mine: TaskRepository) -> None:
    with pytest.raises(TaskNotFoundError):
        await mine.get(uuid.uuid4())


async def test_list_never_contains_another_owners_tasks(
    mine: TaskRepository, theirs: TaskRepository, my_task: Row
) -> None:
    their_task = await theirs.create(title="theirs")

    assert _ids(await theirs.list(limit=10)) == [their_task["id"]]
    assert _ids(await theirs.list(Listing.of(completed=False), limit=10)) == [their_task["id"]]
    assert _ids(await mine.list(limit=10)) == [my_task["id"]]


async def test_list_with_a_cursor_from_another_owners_task_stays_scoped(
    theirs: TaskRepository, my_task: Row
) -> None:
    cursor = Cursor(at=my_task["created_at"], id=my_task["id"])
    later = datetime(2100, 1, 1, tzinfo=UTC)

    assert await theirs.list(Listing.of(cursor=cursor.encode()), limit=10) == []
    far = Cursor(at=later, id=uuid.uuid4()).encode()
    assert await theirs.list(Listing.of(cursor=far), limit=10) == []


@pytest.mark.parametrize("write", WRITES)
async def test_another_owner_cannot_change_the_task(
    theirs: TaskRepository,
    my_task: Row,
    engine: AsyncEngine,
    write: Write,
) -> None:
    before = await task_row(engine, my_task["id"])

    with pytest.raises(TaskNotFoundError):
        await write(theirs, my_task["id"])

    assert await task_row(engine, my_task["id"]) == before


@pytest.mark.parametrize("write", WRITES)
async def test_changing_a_missing_task_is_not_found(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine, write: Write
) -> None:
    before = await task_row(engine, my_task["id"])

    with pytest.raises(TaskNotFoundError):
        await write(mine, uuid.uuid4())

    assert await task_row(engine, my_task["id"]) == before
    assert await task_count(engine) == 1


async def test_update_with_no_changes_of_another_owners_task_is_not_found(
    theirs: TaskRepository, my_task: Row
) -> None:
    with pytest.raises(TaskNotFoundError):
        await theirs.update(my_task["id"])


@pytest.mark.parametrize("field", ["user_id", "id", "created_at", "updated_at", "completed_at"])
async def test_update_refuses_fields_other_than_title_description_completed(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine, field: str
) -> None:
    before = await task_row(engine, my_task["id"])

    with pytest.raises(TypeError, match=field):
        await mine.update(my_task["id"], **{field: None})

    assert await task_row(engine, my_task["id"]) == before


# --- the owner's own tasks ------------------------------------------------------------------


async def test_get_returns_the_owners_task(mine: TaskRepository, my_task: Row) -> None:
    task = await mine.get(my_task["id"])

    assert (task["id"], task["title"], task["description"]) == (my_task["id"], "mine", "private")


async def test_list_is_newest_first_and_filters_on_completed(mine: TaskRepository) -> None:
    first = await mine.create(title="first")
    second = await mine.create(title="second")
    await mine.toggle(first["id"])

    assert _ids(await mine.list(limit=10)) == [second["id"], first["id"]]
    assert _ids(await mine.list(Listing.of(completed=True), limit=10)) == [first["id"]]
    assert _ids(await mine.list(Listing.of(completed=False), limit=10)) == [second["id"]]
    assert _ids(await mine.list(limit=1)) == [second["id"]]
    after_second = Cursor(at=second["created_at"], id=second["id"])
    assert _ids(await mine.list(Listing.of(cursor=after_second.encode()), limit=10)) == [
        first["id"]
    ]


async def test_list_breaks_created_at_ties_by_id_descending(
    mine: TaskRepository, owner_id: uuid.UUID, engine: AsyncEngine
) -> None:
    # One statement: now() is the same for all three rows, so only the id orders them.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title) "
                "SELECT :owner, 't' || n FROM generate_series(1, 3) AS n"
            ),
            {"owner": owner_id},
        )
    listed = await mine.list(limit=10)
    assert len({task["created_at"] for task in listed}) == 1
    by_id_desc = sorted(_ids(listed), reverse=True)

    assert _ids(listed) == by_id_desc
    after_first = Cursor(at=listed[0]["created_at"], id=by_id_desc[0])
    assert (
        _ids(await mine.list(Listing.of(cursor=after_first.encode()), limit=10)) == by_id_desc[1:]
    )


async def test_update_returns_the_fresh_row(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine
) -> None:
    loaded = await mine.get(my_task["id"])
    updated_before = loaded["updated_at"]

    updated = await mine.update(my_task["id"], title="renamed", description=None)

    assert (updated["title"], updated["description"]) == ("renamed", None)
    assert updated["updated_at"] > updated_before
    row = await task_row(engine, my_task["id"])
    assert row is not None
    assert (row["title"], row["description"], row["updated_at"]) == (
        "renamed",
        None,
        updated["updated_at"],
    )


async def test_set_completed_twice_keeps_the_first_completion_time(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine
) -> None:
    first = await mine.set_completed(my_task["id"], True)
    completed_at, updated_at = first["completed_at"], first["updated_at"]

    second = await mine.set_completed(my_task["id"], True)

    assert second["completed"] is True
    assert completed_at is not None
    assert (second["completed_at"], second["updated_at"]) == (completed_at, updated_at)
    row = await task_row(engine, my_task["id"])
    assert row is not None
    assert (row["completed_at"], row["updated_at"]) == (completed_at, updated_at)


async def test_set_completed_false_clears_completed_at(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine
) -> None:
    await mine.set_completed(my_task["id"], True)

    reopened = await mine.set_completed(my_task["id"], False)

    assert (reopened["completed"], reopened["completed_at"]) == (False, None)
    row = await task_row(engine, my_task["id"])
    assert row is not None
    assert (row["completed"], row["completed_at"]) == (False, None)


async def test_toggle_flips_completed_and_completed_at(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine
) -> None:
    done = await mine.toggle(my_task["id"])
    assert (done["completed"], done["completed_at"] is not None) == (True, True)

    reopened = await mine.toggle(my_task["id"])

    assert (reopened["completed"], reopened["completed_at"]) == (False, None)
    row = await task_row(engine, my_task["id"])
    assert row is not None
    assert (row["completed"], row["completed_at"]) == (False, None)


async def test_delete_removes_the_owners_task(
    mine: TaskRepository, my_task: Row, engine: AsyncEngine
) -> None:
    await mine.delete(my_task["id"])

    assert await is_trashed(engine, my_task["id"])
    with pytest.raises(TaskNotFoundError):
        await mine.delete(my_task["id"])
