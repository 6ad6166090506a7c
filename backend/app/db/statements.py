"""Statements built with SQLAlchemy Core from the models' tables, compiled once for asyncpg.

The hot path runs each statement as a constant SQL string on the pool's driver connection: the
schema is still checked by SQLAlchemy (a renamed column fails when the module is imported), but
no statement is compiled, and no execution layer crossed, per request (bench/RESULTS.md).
Values are bound by name; every name is a `bindparam` without a value, supplied at run time.
Values go to asyncpg as they are, so a column type needing SQLAlchemy's own bind or result
processing (an Enum, say) must register an asyncpg codec instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


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
    return Statement(sql=str(compiled), parameters=names)
