"""Statements compiled once from the tables: constant SQL, parameters bound by name."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Enum, Numeric, bindparam, column, func, select, table
from sqlalchemy.dialects.postgresql import JSONB

from app.auth import statements as auth_statements
from app.changes import statements as change_statements
from app.changes.retention import TOMBSTONE_RETENTION
from app.db.database import Database
from app.db.engine import local_timeouts_sql
from app.db.statements import Statement, compile_statement
from app.idempotency.purge import KEY_RETENTION
from app.idempotency.statements import WriteStatements
from app.lists import statements as list_statements
from app.positions.placement import PlacementStatements
from app.tasks import statements as task_statements
from app.tasks.listing import FILTERS, SORT_NAMES, Listing, Shape, SortCursor
from app.tasks.listing import statement as listing_statement
from app.tasks.trash_purge import TRASH_RETENTION

things = table("things", column("a"), column("b"), column("c"))


def test_a_statement_compiles_to_numbered_placeholders_in_the_order_of_its_names() -> None:
    statement = compile_statement(
        select(things.c.a).where(
            things.c.b == bindparam("second"),
            things.c.a == bindparam("first"),
            things.c.c == bindparam("second"),  # used twice: one placeholder
        )
    )

    assert statement.parameters == ("second", "first")
    assert "$1" in statement.sql
    assert "$2" in statement.sql
    assert "$3" not in statement.sql
    assert statement.arguments({"first": 1, "second": 2}) == (2, 1)


def test_a_statement_without_parameters_takes_no_arguments() -> None:
    statement = compile_statement(select(func.now()))

    assert statement.parameters == ()
    assert statement.arguments({}) == ()
    with pytest.raises(TypeError):
        statement.arguments({"unused": 1})


def test_a_single_parameter_is_still_one_positional_argument() -> None:
    statement = compile_statement(select(things.c.a).where(things.c.a == bindparam("a")))

    assert statement.arguments({"a": (1, 2)}) == ((1, 2),)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"first": 1}, id="missing"),
        pytest.param({"first": 1, "second": 2, "owner_id": 3}, id="one-too-many"),
        pytest.param({"first": 1, "other": 2}, id="misnamed"),
    ],
)
def test_arguments_refuse_anything_but_exactly_the_statements_names(
    values: dict[str, int],
) -> None:
    statement = compile_statement(
        select(things.c.a).where(
            things.c.a == bindparam("first"), things.c.b == bindparam("second")
        )
    )

    with pytest.raises(TypeError, match="statement takes"):
        statement.arguments(values)


def test_a_value_fixed_when_the_statement_is_built_is_refused() -> None:
    with pytest.raises(ValueError, match="bound at build time"):
        compile_statement(select(things.c.a).where(things.c.a == 5))


def test_an_expanding_parameter_is_refused() -> None:
    expanding = bindparam("ids", expanding=True)
    with pytest.raises(ValueError, match="per-call compilation"):
        compile_statement(select(things.c.a).where(things.c.a.in_(expanding)))


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(), max_size=4))
def test_arguments_are_the_values_in_placeholder_order_or_refused(values: dict[str, int]) -> None:
    statement = Statement(sql="SELECT $1, $2, $3", parameters=("c", "a", "b"))

    if set(values) == {"a", "b", "c"}:
        assert statement.arguments(values) == (values["c"], values["a"], values["b"])
    else:
        with pytest.raises(TypeError):
            statement.arguments(values)


@pytest.mark.parametrize(
    "type_",
    [Enum("low", "high", name="priority"), JSONB(), Numeric()],
    ids=["enum", "jsonb", "numeric"],
)
def test_a_type_that_needs_sqlalchemys_conversion_is_refused(type_: object) -> None:
    """asyncpg gets values and returns rows as they are: a type SQLAlchemy would convert on the
    way (in either direction) must not reach it silently unconverted."""
    converted = table("converted", column("value", type_), column("id"))

    with pytest.raises(ValueError, match="would convert"):
        compile_statement(select(converted.c.id).where(converted.c.value == bindparam("value")))
    with pytest.raises(ValueError, match="would convert"):
        compile_statement(select(converted.c.value).where(converted.c.id == bindparam("id")))


def test_the_pgbouncer_timeouts_are_one_constant_statement() -> None:
    """Sent without parameters, so the driver runs it in one round trip even with no statement
    cache; the values come from settings, never from a request."""
    sql = local_timeouts_sql(2500)

    assert "$" not in sql
    assert "set_config('statement_timeout', '2500', true)" in sql
    assert "set_config('idle_in_transaction_session_timeout', '60000', true)" in sql


def _variants(writes: WriteStatements) -> list[Statement]:
    """Every compiled variant of one write (with and without If-Match and a key)."""
    variants = [writes.plain, writes.keyed, writes.conditional, writes.keyed_conditional]
    return [statement for statement in variants if statement is not None]


def _compiled(value: object) -> list[Statement]:
    if isinstance(value, Statement):
        return [value]
    if isinstance(value, WriteStatements):
        return _variants(value)
    if isinstance(value, PlacementStatements):
        return [getattr(value, field.name) for field in dataclasses.fields(value)]
    if isinstance(value, dict):
        return [statement for item in value.values() for statement in _compiled(item)]
    return []


def _listing_shapes() -> list[Shape]:
    """Every order in both directions, fresh and after a cursor, with every filter and with each
    kind of search."""
    shapes = []
    for sort in SORT_NAMES:
        for descending in (False, True):
            for after in (None, "value", *(("null",) if sort == "due" else ())):
                for search in ("both", "words", "prefix", None):
                    if search is None and sort == "relevance":
                        continue
                    for filters in (frozenset(), frozenset(FILTERS)):
                        shapes.append(Shape(filters, search, sort, descending, after))  # type: ignore[arg-type]
    return shapes


def _task_statements() -> list[Statement]:
    """Every statement the task and list modules compile, found by walking them, so a new one
    cannot be left out; every update variant, and the list route's shapes."""
    return [
        *(
            statement
            for module in (task_statements, list_statements)
            for value in vars(module).values()
            for statement in _compiled(value)
            if statement.sql.startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"))
        ),
        *(
            statement
            for changes in task_statements.UPDATE_VARIANTS
            for statement in _variants(task_statements.update_task(changes))
        ),
        *(listing_statement(shape) for shape in _listing_shapes()),
    ]


def test_every_task_statement_is_scoped_to_an_owner() -> None:
    """The repository binds owner_id to every statement, and a statement that does not use it
    would be refused: each must filter on (or write) the owner."""
    for statement in _task_statements():
        assert "owner_id" in statement.parameters, statement.sql
        assert any(
            scope in statement.sql
            for scope in (
                "tasks.user_id = $",
                "lists.user_id = $",
                "INSERT INTO tasks (id, user_id",
                "INSERT INTO lists (id, user_id",
            )
        ), statement.sql
        if "idempotency_keys" in statement.sql:
            # The key is looked up and stored for the same owner as the write.
            assert "idempotency_keys.user_id = $1" in statement.sql, statement.sql
            assert "INSERT INTO idempotency_keys (user_id, key" in statement.sql


def _feed_statements() -> list[Statement]:
    return [change_statements.BOUNDS, change_statements.CHANGES_AFTER, change_statements.SNAPSHOT]


def test_every_feed_statement_reads_one_owners_rows_only() -> None:
    for statement in _feed_statements():
        assert statement.parameters[0] == "owner_id", statement.sql
        for name in ("change_heads", "tasks", "task_tombstones"):
            if f"FROM {name}" in statement.sql:
                assert f"{name}.user_id = $1" in statement.sql, (name, statement.sql)


def test_no_account_statement_returns_the_password_hash_except_the_login_lookup() -> None:
    for name in ("CREATE_USER", "GET_USER"):
        statement: Statement = getattr(auth_statements, name)
        assert "password_hash" not in statement.sql.split("RETURNING")[-1].split("FROM")[0]
    assert "users.password_hash" in auth_statements.GET_CREDENTIALS.sql


async def test_every_compiled_statement_is_accepted_by_postgresql(database: Database) -> None:
    """Prepared (not run) on the migrated schema: a column the migrations do not have, or SQL
    the server refuses, fails here rather than on a request."""
    statements = [
        *_task_statements(),
        auth_statements.CREATE_USER,
        auth_statements.GET_USER,
        auth_statements.GET_CREDENTIALS,
        auth_statements.USER_EXISTS,
        *_feed_statements(),
        *(
            statement
            for retention in (KEY_RETENTION, TRASH_RETENTION, TOMBSTONE_RETENTION)
            for statement in (retention.try_lock, retention.batch)
        ),
    ]
    async with database.connection() as connection:
        for statement in statements:
            prepared = await connection.prepare(statement.sql)
            assert len(prepared.get_parameters()) == len(statement.parameters), statement.sql


async def test_the_task_list_statement_runs_with_every_filter(
    database: Database, clean_database: None
) -> None:
    listing = Listing.of(
        completed=False,
        list_id=uuid.uuid4(),
        priority=2,
        due_before=datetime.now(UTC),
        due_after=datetime.now(UTC),
        overdue=True,
        tz="Europe/Berlin",
        q='"weekly report" -draft gro',
        sort="-due",
        cursor=SortCursor(
            sort="due", descending=True, id=uuid.uuid4(), key=datetime.now(UTC)
        ).encode(),
    )
    assert listing is not None
    rows = await database.fetch_all(
        listing_statement(listing.shape), owner_id=uuid.uuid4(), limit=5, **listing.values
    )
    assert rows == []
