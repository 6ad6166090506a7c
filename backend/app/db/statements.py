"""Statements built with SQLAlchemy Core from the models' tables, compiled once for asyncpg.

The hot path runs each statement as a constant SQL string on the pool's driver connection: the
schema is still checked by SQLAlchemy (a renamed column fails when the module is imported), but
no statement is compiled, and no execution layer crossed, per request (bench/RESULTS.md).
Values are bound by name; every name is a `bindparam` without a value, supplied at run time.
Values and rows cross asyncpg as they are, without SQLAlchemy's type processing, so a type that
would need it (an Enum, JSON, Numeric as float) is refused here until it has an asyncpg codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import ARRAY, Boolean, Float
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine, UserDefinedType

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
# Boolean's bind processing only rejects values that are not booleans, which the strict
# request schemas already refuse; asyncpg itself accepts nothing else for a boolean.
_PROCESSING_NOT_NEEDED = (Boolean,)


@dataclass(frozen=True, slots=True)
class Statement:
    """One compiled statement: its SQL (``$n`` placeholders) and its parameters' names in
    ``$n`` order."""

    sql: str
    parameters: tuple[str, ...]
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _in_order: itemgetter[Any] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(self.parameters))
        object.__setattr__(
            self, "_in_order", itemgetter(*self.parameters) if self.parameters else None
        )

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for asyncpg. Exactly the statement's names are accepted:
        a value the statement does not use (an owner id it forgot to filter on) is a bug."""
        if values.keys() != self._names:
            raise TypeError(f"statement takes {sorted(self._names)}, got {sorted(values.keys())}")
        if self._in_order is None:
            return ()
        if len(self.parameters) == 1:
            return (self._in_order(values),)
        ordered: tuple[Any, ...] = self._in_order(values)
        return ordered


class DriverJSON(UserDefinedType[Any]):
    """A ``json`` value the statement builds (json_build_object): decoded by the driver's own
    codec, which the asyncpg dialect sets on every pooled connection, so SQLAlchemy has nothing
    to convert."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"


def compile_statement(statement: ClauseElement) -> Statement:
    """Compile ``statement`` for asyncpg; refuse anything that would need per-call rendering
    or a value fixed at build time (write ``bindparam(name)``, or a SQL literal)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
    names = tuple(compiled.positiontup or ())
    fixed = [name for name in names if not compiled.binds[name].required]
    if fixed:
        raise ValueError(f"bound at build time, not by name at run time: {fixed}")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError("expanding or literal-execute parameters need per-call compilation")
    converted = [name for name in names if _needs_processing(compiled.binds[name].type)]
    converted += [
        column.name
        for column in getattr(statement, "exported_columns", ())
        if _needs_processing(column.type)
    ]
    if converted:
        raise ValueError(f"types SQLAlchemy would convert and asyncpg would not: {converted}")
    return Statement(sql=str(compiled), parameters=names)


def render_constant(statement: ClauseElement) -> str:
    """SQL with its values written in, for a statement fixed at start-up (from settings): the
    driver runs a statement without parameters in one round trip, where a parameterised one
    behind PgBouncer (no statement cache) is prepared on every run."""
    return str(statement.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))


def _needs_processing(type_: TypeEngine[Any]) -> bool:
    if isinstance(type_, _PROCESSING_NOT_NEEDED):
        return False
    if isinstance(type_, Float) and not type_.asdecimal:
        # asyncpg reads and writes floats itself; SQLAlchemy would only convert to Decimal.
        return False
    if isinstance(type_, ARRAY):
        # Its processor only applies its items' processor (and makes a list, which asyncpg
        # does not need): an array of plain items crosses as it is.
        return _needs_processing(type_.item_type)
    implementation = type_.dialect_impl(_DIALECT)
    try:
        result_processor = implementation.result_processor(_DIALECT, None)
    except Exception:  # a type that needs the server's column type to decide (Numeric)
        return True
    return implementation.bind_processor(_DIALECT) is not None or result_processor is not None
