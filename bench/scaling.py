"""`python -m bench --workers 1,2`: how the service scales on this machine.

- One server process with each worker count (WEB_CONCURRENCY), the service only.
- Two server processes of one worker each behind HAProxy (round robin, keep-alive to the
  servers), as replicas behind a load balancer are; skipped, saying so, without `haproxy`.
- PostgreSQL's own ceiling for the read statements (W1, W2): pgbench running the service's
  exact SQL (compiled from the app's statements) on the same seeded database, so the table
  shows how far the API is from the point where the database, not Python, is the limit.

Every row is the median of ``--runs`` runs of ``--duration`` s at the first ``--connections``,
with each process's CPU per request (the service's workers, HAProxy, PostgreSQL), written to
scaling.md and scaling.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from app.tasks.listing import NEWEST_FIRST
from app.tasks.listing import statement as listing_statement
from app.tasks.pagination import DEFAULT_PAGE_SIZE
from app.tasks.statements import GET_TASK
from bench import processes
from bench.database import SeededDatabase
from bench.load import WORKLOADS, RunResult, log, settle
from bench.processes import Server, free_port, tree_cpu_seconds

HAPROXY_CONFIG = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    http-reuse always
    server a 127.0.0.1:{first}
    server b 127.0.0.1:{second}
"""
# The statements pgbench runs: what W1 and W2 execute, one per request (the routes check the
# token's session against the process's revoked set, in memory, and run nothing else).
PGBENCH_WORKLOADS = ("w1", "w2")
PGBENCH_SCRIPTS_PER_WORKLOAD = 50


class Replicas:
    """Two server processes behind HAProxy: measured by run_wrk as one server whose CPU is
    both processes' (HAProxy's is kept apart, in ``balancer_cpu_seconds``)."""

    name = "2 processes behind HAProxy"

    def __init__(self, first: Server, second: Server, haproxy: str, folder: Path) -> None:
        self.first, self.second = first, second
        self.port = free_port()
        self._haproxy = haproxy
        self._config = folder / "haproxy.cfg"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> None:
        return None  # run_wrk's wait for quiet looks at one process tree; each is waited below

    def start(self) -> None:
        self.first.start()
        self.second.start()
        self._config.write_text(
            HAPROXY_CONFIG.format(port=self.port, first=self.first.port, second=self.second.port)
        )
        self._process = subprocess.Popen(
            [self._haproxy, "-db", "-f", str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"haproxy did not listen on {self.port}; see {self._config}")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            if self._process is not None and self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(10)
        finally:
            self.first.stop()
            self.second.stop()

    def alive(self) -> bool:
        running = self._process is not None and self._process.poll() is None
        return running and self.first.alive() and self.second.alive()

    def cpu_seconds(self) -> float | None:
        first, second = self.first.cpu_seconds(), self.second.cpu_seconds()
        return None if first is None or second is None else first + second

    def balancer_cpu_seconds(self) -> float | None:
        return tree_cpu_seconds(self._process.pid if self._process else None)

    def take_log(self, keep: Path) -> tuple[int, int]:
        lines_a, warnings_a = self.first.take_log(keep)
        lines_b, warnings_b = self.second.take_log(keep)
        return lines_a + lines_b, warnings_a + warnings_b


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class ScalingRow:
    setup: str
    processes: int  # API worker processes
    workload: str
    rps: float
    p99_ms: float
    errors: int
    api_cpu_ms_per_req: float | None
    balancer_cpu_ms_per_req: float | None
    pg_cpu_ms_per_req: float | None
    wrk_cpu_ms_per_req: float | None


def _median_row(
    setup: str, processes_: int, results: Sequence[RunResult], balancer_ms: float | None = None
) -> ScalingRow:
    middle = sorted(results, key=lambda result: result.rps)[len(results) // 2]
    return ScalingRow(
        setup=setup,
        processes=processes_,
        workload=middle.workload,
        rps=middle.rps,
        p99_ms=middle.p99_ms,
        errors=sum(result.errors for result in results),
        api_cpu_ms_per_req=middle.server_cpu_ms_per_req,
        balancer_cpu_ms_per_req=balancer_ms,
        pg_cpu_ms_per_req=middle.pg_cpu_ms_per_req,
        wrk_cpu_ms_per_req=middle.wrk_cpu_ms_per_req,
    )


RunCell = Callable[[str, int, float], RunResult]


def measure_setup(
    args: argparse.Namespace,
    run: RunCell,
    setup: str,
    processes_: int,
    balancer_cpu_seconds: Callable[[], float | None] | None = None,
) -> list[ScalingRow]:
    """Each workload: a warm-up, then ``--runs`` runs; the median row (with the load balancer's
    CPU per request when it has one)."""
    rows = []
    connections = args.connections[0]
    for workload in args.workloads:
        if args.warmup > 0:
            run(workload, connections, args.warmup)
            settle()
        results, balancer = [], []
        for number in range(args.runs):
            before = balancer_cpu_seconds() if balancer_cpu_seconds else None
            result = run(workload, connections, args.duration)
            after = balancer_cpu_seconds() if balancer_cpu_seconds else None
            if before is not None and after is not None and result.requests:
                balancer.append((after - before) * 1000 / result.requests)
            results.append(result)
            log(f"{setup:<28} {workload} run {number + 1}: {result.rps:8,.0f} req/s")
            settle()
        balancer_ms = statistics.median(balancer) if balancer else None
        rows.append(_median_row(setup, processes_, results, balancer_ms))
    return rows


@dataclass
class PgbenchRow:
    workload: str
    clients: int
    tps: float
    pg_cpu_ms_per_tx: float | None


def pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(debian[-1]) if debian else None


def _literal_sql(sql: str, parameters: Sequence[str], values: dict[str, str]) -> str:
    """The compiled statement with its ``$n`` placeholders replaced by quoted literals (pgbench
    variables hold numbers only); the casts the statement carries stay as they are."""

    def value(match: re.Match[str]) -> str:
        return "'" + values[parameters[int(match.group(1)) - 1]] + "'"

    def without_colons(match: re.Match[str]) -> str:
        # pgbench reads ":name" anywhere as a variable, even in a literal: the same string,
        # spelled with an escape (to_char's 'HH24:MI:SS').
        text = match.group(0)
        return "E" + text.replace(":", "\\x3a") if ":" in text else text

    literal = re.sub(r"\$(\d+)", value, sql).replace("\n", " ")
    return re.sub(r"'[^']*'", without_colons, literal)


def pgbench_scripts(readers_file: Path, workload: str, folder: Path) -> list[Path]:
    """``PGBENCH_SCRIPTS_PER_WORKLOAD`` scripts, each the workload's statement for one reader
    (pgbench picks one at random per transaction, as wrk picks a random user per request)."""
    lines = readers_file.read_text().splitlines()[:PGBENCH_SCRIPTS_PER_WORKLOAD]
    scripts = []
    for number, line in enumerate(lines):
        user_id, _token, tasks = line.split(" ")
        if workload == "w1":
            statement = listing_statement(NEWEST_FIRST.shape)
            values = {"owner_id": user_id, "limit": str(DEFAULT_PAGE_SIZE + 1)}
        else:
            statement = GET_TASK
            values = {"owner_id": user_id, "task_id": tasks.split(",")[0]}
        script = folder / f"{workload}-{number}.sql"
        script.write_text(_literal_sql(statement.sql, statement.parameters, values) + ";\n")
        scripts.append(script)
    return scripts


def run_pgbench(
    pgbench: str, db: SeededDatabase, workload: str, clients: int, duration: float, folder: Path
) -> PgbenchRow:
    scripts = pgbench_scripts(db.readers_file, workload, folder)
    command = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        "--jobs=2",
        f"--time={max(1, round(duration))}",
        *(f"--file={script}" for script in scripts),
        db.url.replace("postgresql+asyncpg://", "postgresql://"),
    ]
    pg_before = tree_cpu_seconds(db.postmaster_pid)
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    pg_after = tree_cpu_seconds(db.postmaster_pid)
    tps = re.search(r"tps = ([\d.]+)", finished.stdout)
    transactions = re.search(r"number of transactions actually processed: (\d+)", finished.stdout)
    if finished.returncode != 0 or tps is None or transactions is None:
        raise RuntimeError(f"pgbench failed: {finished.stdout}\n{finished.stderr}")
    pg_ms = (
        None
        if pg_before is None or pg_after is None
        else (pg_after - pg_before) * 1000 / int(transactions.group(1))
    )
    return PgbenchRow(workload, clients, float(tps.group(1)), pg_ms)


def render(rows: Sequence[ScalingRow], ceilings: Sequence[PgbenchRow], notes: Sequence[str]) -> str:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        "| setup | workload | req/s | vs 1 worker | per worker added | p99 ms | errors | "
        "API CPU ms/req | HAProxy CPU ms/req | PG CPU ms/req | wrk CPU ms/req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    single = {row.workload: row for row in rows if row.processes == 1}
    for row in rows:
        base = single.get(row.workload)
        ratio = f"{row.rps / base.rps:.2f}x" if base else "n/a"
        added = (
            f"{(row.rps - base.rps) / (row.processes - 1):+,.0f}"
            if base and row.processes > 1
            else ""
        )
        lines.append(
            f"| {row.setup} | {WORKLOADS[row.workload]} | {row.rps:,.0f} | {ratio} | {added} | "
            f"{row.p99_ms:.1f} | {row.errors} | {ms(row.api_cpu_ms_per_req)} | "
            f"{ms(row.balancer_cpu_ms_per_req)} | {ms(row.pg_cpu_ms_per_req)} | "
            f"{ms(row.wrk_cpu_ms_per_req)} |"
        )
    if ceilings:
        lines += [
            "",
            "PostgreSQL alone (pgbench, the same statements, prepared, 2 pgbench threads):",
            "",
            "| workload | clients | transactions/s | PG CPU ms/tx |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {WORKLOADS[c.workload]} | {c.clients} | {c.tps:,.0f} | {ms(c.pg_cpu_ms_per_tx)} |"
            for c in ceilings
        ]
    return "\n".join([*lines, "", *notes])


def run_scaling(
    args: argparse.Namespace,
    db: SeededDatabase,
    make_bench_run: Callable[[dict[str, object]], RunCell],
    out: Path,
    header: Callable[[dict[str, object]], str],
) -> str:
    """Every row of the scaling table; returns the text written to scaling.md."""
    rows: list[ScalingRow] = []
    notes: list[str] = []
    extra_env = dict(args.env)
    for workers in args.scaling:
        server = processes.service(db.url, db.jwt_secret, workers, out, extra_env, args.app_path)
        server.start()
        try:
            run = make_bench_run({"service": server})
            setup = f"1 process, {workers} worker{'s' if workers > 1 else ''}"
            rows += measure_setup(args, run, setup, workers)
        finally:
            server.stop()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        notes.append("- 2 processes behind HAProxy: skipped, haproxy is not installed")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-haproxy-") as folder:
            first, second = (
                processes.service(db.url, db.jwt_secret, 1, out, extra_env, args.app_path)
                for _ in range(2)
            )
            second.log_path = out / "service-2.log"
            replicas = Replicas(first, second, haproxy, Path(folder))
            replicas.start()
            try:
                run = make_bench_run({"replicas": replicas})
                rows += measure_setup(args, run, replicas.name, 2, replicas.balancer_cpu_seconds)
            finally:
                replicas.stop()
    ceilings: list[PgbenchRow] = []
    pgbench = pgbench_binary()
    if pgbench is None:
        notes.append("- PostgreSQL's ceiling: skipped, pgbench is not installed")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as folder:
            for workload in (w for w in args.workloads if w in PGBENCH_WORKLOADS):
                ceilings.append(
                    run_pgbench(
                        pgbench, db, workload, args.connections[0], args.duration, Path(folder)
                    )
                )
                log(f"pgbench {workload}: {ceilings[-1].tps:,.0f} tps")
                settle()
    settings: dict[str, object] = {
        "workers": "/".join(map(str, args.scaling)),
        "duration_s": args.duration,
        "runs": args.runs,
        "connections": args.connections[0],
        "wrk_threads": args.threads,
        **({"env": " ".join(f"{k}={v}" for k, v in extra_env.items())} if extra_env else {}),
    }
    text = "\n\n".join(
        [
            "# Scaling: workers, processes behind a load balancer, PostgreSQL's ceiling",
            header(settings),
            render(rows, ceilings, notes),
        ]
    )
    (out / "scaling.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "rows": [asdict(row) for row in rows],
                "pgbench": [asdict(row) for row in ceilings],
            },
            indent=1,
        )
    )
    return text
