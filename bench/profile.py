"""`python -m bench --profile`: where the service's CPU goes under load, from py-spy samples.

py-spy samples the running server (no restart, no code change) while wrk drives one workload;
the samples are written as folded stacks (bench/out/profile-<workload>.folded, loadable in
speedscope.app) and summarised here: CPU by package (leaf frame), by suspect (any frame on the
stack), and the top functions. Idle time (the event loop waiting in epoll) is not sampled, so
percentages are of the server's busy CPU time.

The PostgreSQL side is counted from pg_stat_database (transactions, rollbacks and sessions per
request), read after the statistics are flushed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.database import asyncpg_dsn

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
STATS_FLUSH_WAIT_S = 11.0  # PostgreSQL flushes an idle backend's statistics within 10 s

Frame = tuple[str, str]  # (function, file path)


@dataclass(frozen=True)
class Stack:
    frames: tuple[Frame, ...]
    count: int


def parse_folded(path: Path) -> list[Stack]:
    stacks = []
    for line in path.read_text().splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = []
        for raw in body.split(";"):
            match = _FRAME.match(raw)
            if match:
                frames.append((match["func"], match["path"]))
            else:
                frames.append((raw, ""))
        stacks.append(Stack(tuple(frames), int(count)))
    return stacks


def package_of(path: str) -> str:
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/backend/app/" in path:
        return "app (backend/app)"
    if path.startswith("<frozen"):
        return "python stdlib"
    match = re.search(r"/python3\.\d+/(?P<module>[^/]+)", path)
    if match:
        return "stdlib " + match["module"].removesuffix(".py")
    return path or "unknown"


def short(frame: Frame) -> str:
    func, path = frame
    for marker in ("/site-packages/", "/backend/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


def _has(pattern: str) -> Callable[[Frame], bool]:
    return lambda frame: pattern in frame[1]


def _func(name: str, path_part: str = "") -> Callable[[Frame], bool]:
    """By function name; py-spy gives qualified names (``Class.method``) on Python 3.11."""
    dotted = "." + name
    return lambda frame: (frame[0] == name or frame[0].endswith(dotted)) and path_part in frame[1]


# Each suspect: the share of samples with at least one matching frame on the stack.
SUSPECTS: list[tuple[str, Callable[[Frame], bool]]] = [
    (
        "logging: structlog + stdlib logging + JSON render + write",
        lambda f: (
            "/structlog/" in f[1]
            or "/logging/__init__.py" in f[1]
            or f[0].startswith("StdoutLogger.")
        ),
    ),
    ("  of which the access line (RequestObserverMiddleware)", lambda f: False),  # filled below
    (
        "auth: bearer token + path owner (BearerTokenSubject, require_path_owner)",
        lambda f: f[0].endswith(("BearerTokenSubject.__call__", "require_path_owner")),
    ),
    ("  JWT decode and verify (PyJWT; a cache miss)", _has("/jwt/")),
    (
        "  account check after a statement found nothing (UserRepository.ensure_exists)",
        lambda f: f[0].endswith("ensure_exists"),
    ),
    (
        "task repository calls (pool checkout + statement + rows)",
        _has("app/tasks/repository.py"),
    ),
    ("  SQLAlchemy, all of it (the pool and its greenlet bridge)", _has("/sqlalchemy/")),
    ("  connection pool checkout/checkin (incl. pre-ping)", _has("/sqlalchemy/pool/")),
    (
        "  pre-ping (the local closed check, or SELECT 1 after an idle spell)",
        lambda f: f[0].endswith("_check_on_checkout.<locals>._check"),
    ),
    (
        "response serialisation (rows -> JSON bytes)",
        lambda f: f[0] in ("task_json", "tasks_json"),
    ),
    ("asyncpg (Python-level frames)", _has("/asyncpg/")),
    ("  opening new PostgreSQL connections (asyncpg connect)", _func("connect", "/asyncpg/")),
    (
        "sync dependencies sent to the threadpool (run_in_threadpool, event-loop side)",
        _func("run_in_threadpool"),
    ),
    (
        "work inside anyio worker threads (the sync dependencies themselves)",
        _func("WorkerThread.run"),
    ),
    ("FastAPI solve_dependencies (incl. the dependencies it runs)", _func("solve_dependencies")),
    ("FastAPI serialize_response (response_model validation + dump)", _func("serialize_response")),
    ("FastAPI jsonable_encoder", _func("jsonable_encoder")),
    (
        "request body parsing + validation",
        lambda f: (
            f[0] in ("request_body_to_args", "_validate_value_with_model_field")
            or (f[0] == "json" and "starlette/requests.py" in f[1])
        ),
    ),
    ("CORSMiddleware", _has("/starlette/middleware/cors.py")),
    ("Starlette exception middleware wrappers", _has("/starlette/_exception_handler.py")),
    ("uvicorn HTTP protocol (httptools callbacks, transport writes)", _has("/uvicorn/protocols/")),
]


# Leaf frames of threads that are blocked, not working. py-spy reports anyio's idle worker
# threads (waiting for the next job in queue.get) as active; they are left out of the shares.
IDLE_LEAVES = frozenset({"Condition.wait", "Event.wait", "Queue.get", "wait"})


def _idle(stack: Stack) -> bool:
    return bool(stack.frames) and (
        stack.frames[-1][0] in IDLE_LEAVES and "threading.py" in stack.frames[-1][1]
    )


def summarise(stacks: list[Stack], top: int = 25) -> str:
    idle = sum(stack.count for stack in stacks if _idle(stack))
    stacks = [stack for stack in stacks if not _idle(stack)]
    total = sum(stack.count for stack in stacks)
    if total == 0:
        return "no samples"
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    suspects: Counter[str] = Counter()
    for stack in stacks:
        leaf = stack.frames[-1] if stack.frames else ("?", "")
        by_package[package_of(leaf[1])] += stack.count
        self_time[short(leaf)] += stack.count
        for name in {short(frame) for frame in stack.frames}:
            inclusive[name] += stack.count
        for label, matches in SUSPECTS:
            if any(matches(frame) for frame in stack.frames):
                suspects[label] += stack.count
        # The access line: logging under RequestObserverMiddleware.__call__ itself, not under
        # the app it wraps.
        tail = _after_middleware(stack.frames)
        if tail and ("/structlog/" in tail[0][1] or "/logging/" in tail[0][1]):
            suspects["  of which the access line (RequestObserverMiddleware)"] += stack.count

    def pct(count: int) -> str:
        return f"{100 * count / total:.1f}%"

    lines = [
        f"{total} samples of busy CPU ({idle} more samples of idle threadpool workers "
        "blocked in threading waits were left out)",
        "",
        "By package (leaf frame, i.e. self time):",
        "",
    ]
    lines += ["| package | share |", "| --- | ---: |"]
    lines += [f"| {name} | {pct(count)} |" for name, count in by_package.most_common(15)]
    lines += ["", "By suspect (share of samples with such a frame anywhere on the stack):", ""]
    lines += ["| suspect | share |", "| --- | ---: |"]
    lines += [f"| {label} | {pct(suspects[label])} |" for label, _ in SUSPECTS]
    lines += ["", f"Top {top} functions by self time:", ""]
    lines += ["| function | self |", "| --- | ---: |"]
    lines += [f"| `{name}` | {pct(count)} |" for name, count in self_time.most_common(top)]
    lines += ["", f"Top {top} functions by inclusive time:", ""]
    lines += ["| function | inclusive |", "| --- | ---: |"]
    lines += [f"| `{name}` | {pct(count)} |" for name, count in inclusive.most_common(top)]
    return "\n".join(lines)


def _after_middleware(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    for index, (func, path) in enumerate(frames):
        if func.endswith("__call__") and path.endswith("app/observability/observer.py"):
            return frames[index + 1 :]
    return ()


async def pg_counters(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await connection.fetchrow(
            "SELECT xact_commit, xact_rollback, sessions, tup_returned, tup_fetched "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return dict(row) if row else {}


def record(
    pid: int, seconds: float, output: Path, *, subprocesses: bool, rate: int = 200
) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise RuntimeError("py-spy is not installed (it is in the dev dependency group)")
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--full-filenames",
        "--nolineno",
        "--output",
        str(output),
    ]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def counters_per_request(before: dict[str, int], after: dict[str, int], requests: int) -> str:
    if not before or not after or not requests:
        return "pg_stat_database: n/a"
    parts = []
    for key in ("xact_commit", "xact_rollback", "sessions", "tup_returned"):
        delta = after.get(key, 0) - before.get(key, 0)
        parts.append(f"{key} {delta:,} ({delta / requests:.2f}/request)")
    return "pg_stat_database during the run: " + ", ".join(parts)


def wait_for_stats() -> None:
    time.sleep(STATS_FLUSH_WAIT_S)


def read_counters(url: str) -> dict[str, int]:
    return asyncio.run(pg_counters(url))
