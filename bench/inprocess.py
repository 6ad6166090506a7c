"""`python -m bench.inprocess`: CPU per request with no HTTP server and no load generator.

The ASGI apps are called directly, one request after another, on a real seeded PostgreSQL, and
the process's CPU time is divided by the number of requests. It measures the same thing as the
"CPU ms/req" columns of `python -m bench` without uvicorn and wrk, in a couple of minutes, and
moves much less than req/s when other jobs share the machine. It still moves with hypervisor
steal (a VM's stolen time is charged to whatever process was running), so compare numbers from
one sitting only: that is why every run measures the reference too. Use it to check an
optimisation before running the full benchmark.

Targets, each in its own subprocess:
  service    the real app (create_app as shipped: middleware, auth, ORM, access log to a file)
  reference  bench/reference.py
  ladder     W2 only: the same request built up step by step, from FastAPI on raw asyncpg to
             the ORM session, to show what each layer costs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, Response

from bench.load import WORKLOADS, log
from bench.processes import REPO_ROOT

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
WARMUP = 200
LADDER = (
    "FastAPI route on raw asyncpg, orjson Response",
    "+ JWT dependency + user-exists query",
    "+ response_model=TaskRead",
    "SQLAlchemy Core (AsyncConnection, autocommit) + response_model",
    "SQLAlchemy ORM session (transaction) + response_model",
)


class Requests:
    """Builds the same requests as bench/wrk.lua, deterministically."""

    def __init__(self, readers: Path, writers: Path) -> None:
        self.readers = [line.split(" ") for line in readers.read_text().splitlines()]
        self.writers = [line.split(" ") for line in writers.read_text().splitlines()]

    def scope(self, workload: str, number: int) -> tuple[dict[str, Any], bytes]:
        users = self.writers if workload in ("w3", "w4", "w3k", "w4k") else self.readers
        user_id, token, tasks = users[number % len(users)]
        task_ids = tasks.split(",")
        task_id = task_ids[(number // len(users)) % len(task_ids)]
        method, path, body = {
            "w1": ("GET", f"/api/{user_id}/tasks", b""),
            "w2": ("GET", f"/api/{user_id}/tasks/{task_id}", b""),
            "w3": (
                "POST",
                f"/api/{user_id}/tasks",
                b'{"title":"bench task %d","description":"created in process"}' % number,
            ),
            "w4": ("PATCH", f"/api/{user_id}/tasks/{task_id}/complete", b""),
        }[workload.removesuffix("k")]
        headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode())]
        if workload.endswith("k"):
            # As wrk.lua's keyed variants, with If-Match: * (a version this loop does not track).
            headers.append((b"idempotency-key", f"inprocess-{uuid.uuid4()}".encode()))
            if workload == "w4k":
                headers.append((b"if-match", b"*"))
        if body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        return scope, body


async def _call(app: Asgi, scope: dict[str, Any], body: bytes) -> int:
    status: list[int] = []
    pending = [body]

    async def receive() -> dict[str, Any]:
        return {
            "type": "http.request",
            "body": pending.pop() if pending else b"",
            "more_body": False,
        }

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0] if status else 0


async def cpu_per_request(app: Asgi, requests: Requests, workload: str, count: int) -> float:
    expected = 201 if workload in ("w3", "w3k") else 200
    for number in range(WARMUP):
        status = await _call(app, *requests.scope(workload, number))
        if status != expected:
            raise RuntimeError(f"{workload}: HTTP {status} (expected {expected})")
    start = time.process_time()
    for number in range(WARMUP, WARMUP + count):
        await _call(app, *requests.scope(workload, number))
    return (time.process_time() - start) * 1000 / count


async def _caller(request: Request) -> uuid.UUID:
    """The ladder's auth: verify the bearer token, as the service's TokenCodec does."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    claims = jwt.decode(
        token,
        os.environ["JWT_SECRET"],
        algorithms=["HS256"],
        options={"require": ["sub", "exp", "iat"]},
    )
    return uuid.UUID(claims["sub"])


Caller = Annotated[uuid.UUID, Depends(_caller)]


# --- targets (each runs in a subprocess) ------------------------------------------------------


async def _service(requests: Requests, workloads: list[str], count: int) -> dict[str, float]:
    from asgi_lifespan import LifespanManager  # noqa: PLC0415

    from app.main import create_app  # noqa: PLC0415

    app = create_app()
    async with LifespanManager(app) as manager:
        return {w: await cpu_per_request(manager.app, requests, w, count) for w in workloads}


async def _reference(requests: Requests, workloads: list[str], count: int) -> dict[str, float]:
    from asgi_lifespan import LifespanManager  # noqa: PLC0415

    from bench import reference  # noqa: PLC0415

    async with LifespanManager(reference.app) as manager:
        return {w: await cpu_per_request(manager.app, requests, w, count) for w in workloads}


async def _ladder(requests: Requests, count: int) -> dict[str, float]:
    results = {}
    for rung in LADDER:
        app, close = await _ladder_app(rung)
        try:
            results[rung] = await cpu_per_request(app, requests, "w2", count)
        finally:
            await close()
    return results


async def _ladder_app(rung: str) -> tuple[Asgi, Callable[[], Awaitable[None]]]:
    import asyncpg  # noqa: PLC0415
    import orjson  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

    from app.auth.models import User  # noqa: PLC0415
    from app.db.url import parse_database_url  # noqa: PLC0415
    from app.tasks.models import Task  # noqa: PLC0415
    from app.tasks.schemas import TaskRead  # noqa: PLC0415
    from app.tasks.statements import GET_TASK  # noqa: PLC0415
    from bench.database import asyncpg_dsn  # noqa: PLC0415

    url = os.environ["DATABASE_URL"]
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=5, max_size=20)
    engine = create_async_engine(
        parse_database_url(url).url,
        pool_size=20,
        max_overflow=0,
        **({"isolation_level": "AUTOCOMMIT"} if rung.startswith("SQLAlchemy Core") else {}),
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    app = FastAPI()
    route = "/api/{user_id}/tasks/{task_id}"

    def json_response(row: Any) -> Response:
        return Response(orjson.dumps(dict(row), default=str), media_type="application/json")

    if rung == LADDER[0]:

        @app.get(route)
        async def get_task(user_id: uuid.UUID, task_id: uuid.UUID) -> Response:
            return json_response(
                await pool.fetchrow(
                    GET_TASK.sql, *GET_TASK.arguments({"owner_id": user_id, "task_id": task_id})
                )
            )

    elif rung in (LADDER[1], LADDER[2]):
        validated = rung == LADDER[2]

        @app.get(route, response_model=TaskRead if validated else None)
        async def get_task(user_id: uuid.UUID, task_id: uuid.UUID, me: Caller) -> Any:
            async with pool.acquire() as connection:
                if not await connection.fetchval("SELECT 1 FROM users WHERE id = $1", me):
                    raise HTTPException(401)
                if me != user_id:
                    raise HTTPException(403)
                row = await connection.fetchrow(
                    GET_TASK.sql, *GET_TASK.arguments({"owner_id": user_id, "task_id": task_id})
                )
            return dict(row) if validated else json_response(row)

    elif rung == LADDER[3]:

        @app.get(route, response_model=TaskRead)
        async def get_task(user_id: uuid.UUID, task_id: uuid.UUID, me: Caller) -> Any:
            async with engine.connect() as connection:
                found = await connection.execute(select(User.id).where(User.id == me))
                if found.first() is None:
                    raise HTTPException(401)
                if me != user_id:
                    raise HTTPException(403)
                rows = await connection.execute(
                    select(Task.__table__).where(Task.id == task_id, Task.user_id == user_id)
                )
                return rows.mappings().first()

    else:

        @app.get(route, response_model=TaskRead)
        async def get_task(user_id: uuid.UUID, task_id: uuid.UUID, me: Caller) -> Any:
            async with sessions() as session:
                if await session.get(User, me) is None:
                    raise HTTPException(401)
                if me != user_id:
                    raise HTTPException(403)
                task = await session.scalar(
                    select(Task).where(Task.id == task_id, Task.user_id == user_id)
                )
                await session.commit()
            return task

    async def close() -> None:
        await pool.close()
        await engine.dispose()

    return app, close


def _child(target: str, workloads: list[str], count: int) -> None:
    import uvloop  # noqa: PLC0415

    requests = Requests(Path(os.environ["BENCH_READERS"]), Path(os.environ["BENCH_WRITERS"]))
    # The app's log lines go to a real file, as in the benchmark.
    log_file = open(os.environ["BENCH_LOG"], "a")  # noqa: SIM115
    real_stdout, sys.stdout = sys.stdout, log_file
    try:
        if target == "service":
            result = uvloop.run(_service(requests, workloads, count))
        elif target == "reference":
            result = uvloop.run(_reference(requests, workloads, count))
        else:
            result = uvloop.run(_ladder(requests, count))
    finally:
        sys.stdout = real_stdout
        log_file.close()
    print("BENCH_JSON " + json.dumps(result))


def _spawn(target: str, workloads: list[str], count: int, env: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.inprocess", "--child", target]
    command += ["--workloads", ",".join(workloads), "--requests", str(count)]
    done = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{target} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per workload (2000)")
    parser.add_argument("--workloads", default="w1,w2,w3,w4")
    parser.add_argument("--no-ladder", action="store_true")
    parser.add_argument("--app-path", type=Path, default=None, help="as for python -m bench")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if args.child:
        _child(args.child, workloads, args.requests)
        return 0

    # Imported here, not at the top: the service's child process may run another commit's app
    # (--app-path), which bench.database's imports of the current app would not find.
    from bench.database import fresh_database, prepare, server_url_from_environment  # noqa: PLC0415

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    server_url, _ = server_url_from_environment(out)
    with fresh_database(server_url) as url:
        db = asyncio.run(prepare(url, out))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "JWT_SECRET": db.jwt_secret,
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "BENCH_READERS": str(db.readers_file),
            "BENCH_WRITERS": str(db.writers_file),
            "BENCH_LOG": str(out / "inprocess.log"),
            # The reference runs the statements of the app under test (a copy given with
            # --app-path shadows the installed one), against the schema that app migrated.
            "PYTHONPATH": os.pathsep.join(
                [*([str(args.app_path)] if args.app_path is not None else []), str(REPO_ROOT)]
            ),
        }
        service_env = {**env, **dict(pair.split("=", 1) for pair in args.env)}
        log("measuring the service, the reference" + ("" if args.no_ladder else " and the ladder"))
        service = _spawn("service", workloads, args.requests, service_env)
        ref = _spawn("reference", workloads, args.requests, env)
        ladder = {} if args.no_ladder else _spawn("ladder", ["w2"], args.requests, env)
    (out / "inprocess.log").unlink(missing_ok=True)

    lines = [
        f"CPU ms per request, in process, sequential, {args.requests} requests per cell "
        "(after a warm-up)",
        "",
        "| workload | service | reference | service / reference |",
        "| --- | ---: | ---: | ---: |",
    ]
    for workload in workloads:
        lines.append(
            f"| {WORKLOADS[workload]} | {service[workload]:.3f} | {ref[workload]:.3f} "
            f"| {service[workload] / ref[workload]:.1f}x |"
        )
    if ladder:
        lines += [
            "",
            "W2 built up layer by layer (same SQL, same database):",
            "",
            "| implementation | CPU ms/req |",
            "| --- | ---: |",
            f"| bench/reference.py (bare ASGI + asyncpg) | {ref.get('w2', float('nan')):.3f} |",
        ]
        lines += [f"| {rung} | {ladder[rung]:.3f} |" for rung in LADDER]
        lines.append(f"| the service as shipped | {service.get('w2', float('nan')):.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
