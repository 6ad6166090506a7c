"""`python -m bench.explain`: EXPLAIN (ANALYZE, BUFFERS) of the list route's common shapes on
the benchmark's seeded data (W1's readers, W5's organisers, W6's searchers).

The statements are the service's own (app.tasks.listing), bound as the route binds them, run
twice so the second plan is read from a warm cache; bench/RESULTS.md quotes the output.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from app.tasks.listing import Listing
from app.tasks.listing import statement as listing_statement
from bench.database import asyncpg_dsn, fresh_database, prepare, server_url_from_environment

OUT = Path(__file__).with_name("out")


def _first_user(path: Path | None) -> list[str]:
    assert path is not None
    return path.read_text().splitlines()[0].split(" ")


async def _explain(url: str, shapes: list[tuple[str, uuid.UUID, Listing, int]]) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    report = []
    try:
        for title, user_id, listing, limit in shapes:
            statement = listing_statement(listing.shape)
            values: dict[str, Any] = {"owner_id": user_id, "limit": limit + 1, **listing.values}
            sql = "EXPLAIN (ANALYZE, BUFFERS) " + statement.sql
            await connection.fetch(sql, *statement.arguments(values))  # warms the cache
            plan = await connection.fetch(sql, *statement.arguments(values))
            report.append(f"### {title}\n\n```\n" + "\n".join(row[0] for row in plan) + "\n```\n")
    finally:
        await connection.close()
    return "\n".join(report)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    server_url, _ = server_url_from_environment(OUT)
    with fresh_database(server_url) as url:
        db = asyncio.run(prepare(url, OUT, organised=True))
        reader = uuid.UUID(_first_user(db.readers_file)[0])
        organiser_id, _, organised = _first_user(db.organisers_file)
        searcher = uuid.UUID(_first_user(db.searchers_file)[0])
        list_id = uuid.UUID(organised.split("&")[0].removeprefix("list_id="))

        def listing(**query: Any) -> Listing:
            made = Listing.of(**query)
            assert made is not None
            return made

        shapes = [
            ("W1: newest first, 50 of a user's 50 tasks", reader, listing(), 50),
            (
                "W5: one list by position, 50 of 1,000 tasks",
                uuid.UUID(organiser_id),
                listing(list_id=list_id, sort="position"),
                50,
            ),
            ("W6: q=report, 50 of 10,000 tasks", searcher, listing(q="report"), 50),
            ("W6: q=gro (a prefix), 50 of 10,000 tasks", searcher, listing(q="gro"), 50),
            ("sort=due, 50 of 10,000 tasks (a third due)", searcher, listing(sort="due"), 50),
            (
                "overdue=true, 50 of 10,000 tasks",
                searcher,
                listing(overdue=True, tz="Europe/Berlin"),
                50,
            ),
        ]
        report = asyncio.run(_explain(url, shapes))
    (OUT / "explain.md").write_text(report)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
