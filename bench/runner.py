"""`python -m bench` (`make bench`): the load benchmark of the task API against a bare-asyncpg
reference, both on a freshly seeded PostgreSQL, driven by wrk. See bench/RESULTS.md."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.db.embedded import EmbeddedDatabaseError
from app.settings import Settings
from bench import processes, profile, report, scaling, streams
from bench.database import (
    CHANGES_AFTER_CURSOR,
    READERS,
    WRITERS,
    SeededDatabase,
    fresh_database,
    prepare,
    server_url_from_environment,
)
from bench.load import (
    DEFAULT_WORKLOADS,
    FEED_WORKLOADS,
    OPT_IN_WORKLOADS,
    ORGANISED_WORKLOADS,
    WORKLOADS,
    WRITE_WORKLOADS,
    RunResult,
    WrkMissingError,
    ensure_wrk,
    log,
    run_wrk,
    settle,
)
from bench.processes import REPO_ROOT, Server

DEFAULT_OUT = REPO_ROOT / "bench" / "out"
MAX_RESTARTS_PER_RUN = 2
POOL_TIMEOUT_S = 10.0  # the service's DB_POOL_TIMEOUT_SECONDS default
STREAMS_CAP_SETTING = "EVENTS_MAX_STREAMS_PER_USER"
MAX_STREAMS_DURATION_S = 300.0


def _csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _csv_workloads(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; use {list(WORKLOADS)}")
    return names


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run (8)")
    parser.add_argument("--runs", type=int, default=2, help="runs per cell; the median is shown")
    parser.add_argument(
        "--connections", type=_csv_ints, default=[50, 200], help="comma list (50,200)"
    )
    parser.add_argument(
        "--burst-connections",
        type=int,
        default=1000,
        help="one bounded run per workload at this many connections, checked for errors (0 = skip)",
    )
    parser.add_argument(
        "--burst-duration",
        type=float,
        default=12.0,
        help="seconds (12: longer than the pool timeout, so a pool that cannot keep up shows)",
    )
    parser.add_argument(
        "--workers",
        type=_csv_ints,
        default=[1],
        help="uvicorn workers for both apps (WEB_CONCURRENCY); several (1,2) measure scaling "
        "instead of the table (bench/scaling.py: the service with each count, two processes "
        "behind HAProxy, pgbench's ceiling)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="wrk's per-request timeout in seconds (10)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per app and workload")
    parser.add_argument(
        "--workloads",
        type=_csv_workloads,
        default=None,
        help=f"comma list of {','.join(WORKLOADS)} (default {','.join(DEFAULT_WORKLOADS)}; "
        f"--profile: w1,w2; opt-in, only when named: {','.join(sorted(OPT_IN_WORKLOADS))})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s, 1 run, 50 connections, short burst"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table: py-spy profile of the service under each workload "
        "(default W1 and W2) at the first connection count",
    )
    parser.add_argument("--no-reference", action="store_true", help="measure the service only")
    parser.add_argument(
        "--streams",
        action="store_true",
        help="instead of the table: the live-update row (GET /events) on one worker: "
        "--streams-users x --streams-per-user streams open while tasks are created at "
        "--streams-rate a second for --streams-duration s; delivery latency, completeness, RSS",
    )
    parser.add_argument("--streams-users", type=int, default=100, help="users with streams (100)")
    parser.add_argument(
        "--streams-per-user",
        type=int,
        default=10,
        help=f"streams per user (10; above the service's cap, raise it with --env "
        f"{STREAMS_CAP_SETTING}=N)",
    )
    parser.add_argument(
        "--streams-rate", type=float, default=100.0, help="task writes a second, all users (100)"
    )
    parser.add_argument(
        "--streams-duration", type=float, default=20.0, help="seconds of writes (20)"
    )
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service (e.g. DB_POOL_PRE_PING=false); repeatable",
    )
    parser.add_argument(
        "--app-path",
        type=Path,
        default=None,
        help="a directory holding an experimental copy of the `app` package to serve instead",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.connections = 3.0, 1, [50]
        args.burst_duration, args.warmup = 2.0, 1.0
    args.scaling = args.workers if len(args.workers) > 1 else None
    if args.scaling and (args.profile or args.streams):
        parser.error("several --workers measure scaling, which replaces the table like --profile")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers must be positive")
    args.workers = args.workers[0]
    if args.workloads is None:
        args.workloads = ["w1", "w2"] if args.profile else list(DEFAULT_WORKLOADS)
    if args.streams:
        _check_streams_args(parser, args)
    if args.runs < 1 or args.duration < 1 or not args.connections:
        parser.error("--runs and --duration must be at least 1, and --connections non-empty")
    if "w4k" in args.workloads and args.threads > WRITERS:
        # w4k gives each wrk thread writers of its own (see bench/wrk.lua).
        parser.error(f"w4k needs at most {WRITERS} wrk threads (one writer each at least)")
    return args


def _check_streams_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.profile:
        parser.error("--streams and --profile each replace the table: choose one")
    if args.workers != 1:
        parser.error("--streams measures one worker process: --workers must be 1")
    cap = int(
        dict(args.env).get(
            STREAMS_CAP_SETTING, Settings.model_fields["events_max_streams_per_user"].default
        )
    )
    if not 1 <= args.streams_per_user <= cap:
        parser.error(f"--streams-per-user must be 1..{cap} (the service's {STREAMS_CAP_SETTING})")
    if not 1 <= args.streams_users <= READERS:
        parser.error(f"--streams-users must be 1..{READERS} (the seeded readers)")
    if args.streams_rate <= 0 or not 1 <= args.streams_duration <= MAX_STREAMS_DURATION_S:
        parser.error(
            f"--streams-rate must be positive and --streams-duration 1..{MAX_STREAMS_DURATION_S:g}"
        )


@dataclass
class Bench:
    args: argparse.Namespace
    wrk: str
    db: SeededDatabase
    servers: dict[str, Server | scaling.Replicas]
    errors_log: Path

    def data_file(self, workload: str) -> Path:
        if workload in FEED_WORKLOADS:
            assert self.db.syncers_file is not None  # seeded when a feed workload is asked for
            return self.db.syncers_file
        if workload in ORGANISED_WORKLOADS:
            data = self.db.organisers_file if workload == "w5" else self.db.searchers_file
            assert data is not None  # seeded when W5 or W6 is asked for
            return data
        return self.db.writers_file if workload in WRITE_WORKLOADS else self.db.readers_file

    restarts: int = 0

    def run(self, app: str, workload: str, connections: int, duration: float) -> RunResult:
        server = self.servers[app]
        for attempt in range(MAX_RESTARTS_PER_RUN + 1):
            self._ensure_alive(server)
            try:
                result = run_wrk(
                    self.wrk,
                    server,
                    workload,
                    connections,
                    duration,
                    self.data_file(workload),
                    threads=self.args.threads,
                    timeout_s=self.args.timeout,
                    postmaster_pid=self.db.postmaster_pid,
                    errors_log=self.errors_log,
                )
            except RuntimeError:
                if server.alive() or attempt == MAX_RESTARTS_PER_RUN:
                    raise
                continue
            if server.alive():
                return result
        raise RuntimeError(f"{app} kept dying; see {server.log_path}")

    def _ensure_alive(self, server: Server) -> None:
        """A server that died (crash, OOM, or another job's `pkill`) is restarted, loudly:
        the run it spoiled is measured again and the restart is reported."""
        if server.alive():
            return
        code = server.process.returncode if server.process else None
        log(
            f"WARNING: {server.name} exited (code {code}); restarting it. Last log lines:\n"
            f"{server.log_tail(10)}"
        )
        self.restarts += 1
        server.stop()
        server.start()


def _describe(result: RunResult) -> str:
    pg = result.pg_cpu_ms_per_req
    cpu = result.server_cpu_ms_per_req
    return (
        f"{result.rps:8,.0f} req/s  p50 {result.p50_ms:6.1f}  p99 {result.p99_ms:7.1f} ms  "
        f"non-2xx {result.non_2xx}  socket errors {result.socket_errors}  "
        f"cpu {'n/a' if cpu is None else f'{cpu:.2f}'} ms/req  "
        f"pg {'n/a' if pg is None else f'{pg:.2f}'} ms/req"
    )


def measure(bench: Bench) -> list[RunResult]:
    args = bench.args
    apps = list(bench.servers)
    plan: list[tuple[str, int, int]] = []  # (workload, connections, run number)
    for connections in args.connections:
        for workload in args.workloads:
            plan.extend((workload, connections, number) for number in range(args.runs))
    if args.burst_connections:
        plan.extend((workload, args.burst_connections, 0) for workload in args.workloads)
    total = len(plan) * len(apps)
    results: list[RunResult] = []
    warmed: set[tuple[str, str]] = set()
    done = 0
    for workload, connections, number in plan:
        # Alternate which app goes first, so drift (autovacuum, page cache) hits both alike.
        order = apps if number % 2 == 0 else list(reversed(apps))
        burst = connections == args.burst_connections and connections not in args.connections
        duration = args.burst_duration if burst else args.duration
        for app in order:
            if (app, workload) not in warmed and args.warmup > 0:
                bench.run(app, workload, args.connections[0], args.warmup)
                warmed.add((app, workload))
                settle()
            result = bench.run(app, workload, connections, duration)
            results.append(result)
            done += 1
            log(
                f"[{done:>3}/{total}] {app:<9} {workload} c={connections:<4} "
                f"run {number + 1}: {_describe(result)}"
            )
            settle()
    return results


def run_profile(bench: Bench, out: Path) -> str:
    args = bench.args
    server = bench.servers["service"]
    connections = args.connections[0]
    sections = [
        f"# Profile of the service ({args.workers} worker(s), {connections} connections, "
        f"{args.duration:g} s per workload, py-spy at 200 Hz)",
        "",
    ]
    for workload in args.workloads:
        bench.run("service", workload, connections, max(args.warmup, 1.0))
        profile.wait_for_stats()
        before = profile.read_counters(bench.db.url)
        folded = out / f"profile-{workload}.folded"
        spy = profile.record(
            server.pid or 0, args.duration - 1, folded, subprocesses=args.workers > 1
        )
        time.sleep(0.5)  # let py-spy attach before the load starts
        result = bench.run("service", workload, connections, args.duration)
        _, spy_err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not folded.exists():
            raise RuntimeError(f"py-spy failed: {spy_err.decode(errors='replace')}")
        profile.wait_for_stats()
        after = profile.read_counters(bench.db.url)
        log(f"profiled {workload}: {_describe(result)}")
        sections += [
            f"## {WORKLOADS[workload]}",
            "",
            f"Under the profiler: {_describe(result)}",
            "",
            profile.counters_per_request(before, after, result.requests),
            "",
            profile.summarise(profile.parse_folded(folded)),
            "",
        ]
    return "\n".join(sections)


def check_changes_pages(servers: Iterable[Server], data_file: Path | None) -> None:
    """C1 is meant to time one full page: refuse to run if a server answers anything else
    (nothing to check when the syncers were not seeded)."""
    if data_file is None:
        return
    for server in servers:
        _check_changes_page(server, data_file)


def _check_changes_page(server: Server, data_file: Path) -> None:
    user_id, token, query = data_file.read_text().split("\n", 1)[0].split(" ")
    request = urllib.request.Request(
        f"{server.url}/api/{user_id}/changes?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = answer.read()
    page = json.loads(body)
    upserts = sum(1 for change in page["changes"] if change["op"] == "upsert")
    if upserts != CHANGES_AFTER_CURSOR or page["has_more"]:
        raise RuntimeError(
            f"{server.name}: /changes?{query} gave {upserts} upserts of "
            f"{len(page['changes'])} changes, has_more {page['has_more']}; expected "
            f"{CHANGES_AFTER_CURSOR} upserts in one page"
        )
    log(f"{server.name}: /changes?{query} answers {upserts} upserts in one page, {len(body):,} B")


def run_streams(
    args: argparse.Namespace,
    server: Server,
    db: SeededDatabase,
    errors_log: Path,
    out: Path,
    *,
    embedded: bool,
    load_before: str,
    code: str,
    began: float,
) -> None:
    """The --streams row: printed, and written to streams.md and streams.json."""
    plan = streams.StreamsPlan(
        users=args.streams_users,
        per_user=args.streams_per_user,
        rate=args.streams_rate,
        duration=args.streams_duration,
    )
    accounts = streams.accounts_from(db.readers_file, plan.users)
    result = streams.measure(server, accounts, plan, db.postmaster_pid, errors_log)
    extra_env = dict(args.env)
    settings: dict[str, object] = {
        "workers": 1,
        "postgres": "embedded (unix socket)" if embedded else "DATABASE_URL",
        **({"env": _env_text(extra_env)} if extra_env else {}),
        **({"app_path": str(args.app_path)} if args.app_path else {}),
    }
    text = "\n\n".join(
        [
            streams.title(plan),
            report.header(settings, db.server_version, load_before, code),
            streams.table(result),
            streams.verdict(result),
            f"(whole benchmark: {time.monotonic() - began:.0f} s)",
        ]
    )
    print(text)
    (out / "streams.md").write_text(text + "\n")
    (out / "streams.json").write_text(json.dumps(result.as_dict(), indent=1))
    log(f"written: {out / 'streams.md'}, {out / 'streams.json'}")


def _run_scaling(
    args: argparse.Namespace, wrk: str, db: SeededDatabase, out: Path, load_before: str, code: str
) -> None:
    """Several --workers: the scaling table (bench/scaling.py) instead of the matrix."""
    errors_log = out / "server-warnings.log"
    text = scaling.run_scaling(
        args,
        db,
        lambda servers: functools.partial(
            Bench(args, wrk, db, servers, errors_log).run, next(iter(servers))
        ),
        out,
        lambda settings: report.header(settings, db.server_version, load_before, code),
    )
    print(text)
    (out / "scaling.md").write_text(text + "\n")
    log(f"written: {out / 'scaling.md'}, {out / 'scaling.json'}")


def _notes(args: argparse.Namespace, restarts: int) -> list[str]:
    notes = (
        [f"- WARNING: a server died during the benchmark and was restarted {restarts} time(s)"]
        if restarts
        else []
    )
    if args.burst_connections and args.burst_duration <= POOL_TIMEOUT_S:
        notes.append(
            f"- NOTE: the {args.burst_connections}-connection runs lasted "
            f"{args.burst_duration:g} s, not longer than the pool timeout ({POOL_TIMEOUT_S:g} s "
            "by default): requests queued for a connection may not have failed yet, so 'no "
            "errors' there proves little"
        )
    return notes


def _env_text(extra_env: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in extra_env.items())


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers are stopped and the database dropped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def _asked_for(args: argparse.Namespace, workloads: frozenset[str]) -> bool:
    """Whether a run of the matrix needs the users those workloads read (seeded on demand)."""
    return not args.streams and any(name in workloads for name in args.workloads)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _exit_on_sigterm()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    load_before = report.loadavg()
    code = report.code_version() if args.app_path is None else f"app from {args.app_path}"
    try:
        wrk = ensure_wrk()
    except WrkMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server_url, embedded = server_url_from_environment(out)
    except EmbeddedDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log(
        "PostgreSQL: "
        + (f"embedded, data in {out / 'postgres'}" if embedded else "DATABASE_URL")
        + "; creating a fresh database"
    )
    extra_env = dict(args.env)
    feed = _asked_for(args, FEED_WORKLOADS)
    with fresh_database(server_url) as url:
        db = asyncio.run(
            prepare(url, out, syncers=feed, organised=_asked_for(args, ORGANISED_WORKLOADS))
        )
        log(
            f"seeded in {time.monotonic() - began:.0f}s: PostgreSQL {db.server_version}, "
            f"max_connections {db.max_connections}"
            + ("" if db.postmaster_pid else " (not on this machine: no PostgreSQL CPU column)")
        )
        if args.scaling:
            _run_scaling(args, wrk, db, out, load_before, code)
            return 0
        servers = {
            "service": processes.service(
                url, db.jwt_secret, args.workers, out, extra_env, args.app_path
            )
        }
        if not (args.no_reference or args.profile or args.streams):
            servers["reference"] = processes.reference(url, args.workers, out, extra_env)
        errors_log = out / "server-warnings.log"
        errors_log.unlink(missing_ok=True)
        try:
            for server in servers.values():
                server.start()
            if args.streams:
                run_streams(
                    args,
                    servers["service"],
                    db,
                    errors_log,
                    out,
                    embedded=embedded,
                    load_before=load_before,
                    code=code,
                    began=began,
                )
                return 0
            check_changes_pages(servers.values(), db.syncers_file)
            bench = Bench(args, wrk, db, servers, errors_log)
            if args.profile:
                text = run_profile(bench, out)
                (out / "profile.md").write_text(text + "\n")
                print(text)
                log(f"written: {out / 'profile.md'} and {out}/profile-*.folded")
                return 0
            results = measure(bench)
        finally:
            for server in servers.values():
                server.stop()

    settings: dict[str, object] = {
        "workers": args.workers,
        "duration_s": args.duration,
        "runs": args.runs,
        "connections": "/".join(map(str, args.connections)),
        "burst": f"{args.burst_connections} x {args.burst_duration:g}s"
        if args.burst_connections
        else "off",
        "wrk_threads": args.threads,
        "wrk_timeout_s": args.timeout,
        "postgres": "embedded (unix socket)" if embedded else "DATABASE_URL",
        **({"env": _env_text(extra_env)} if extra_env else {}),
        **({"app_path": str(args.app_path)} if args.app_path else {}),
    }
    notes = _notes(args, bench.restarts)
    text = "\n\n".join(
        [
            report.header(settings, db.server_version, load_before, code),
            report.table(results),
            report.verdict(results),
            *notes,
            f"(whole benchmark: {time.monotonic() - began:.0f} s)",
        ]
    )
    print(text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"settings": settings, "runs": [result.as_dict() for result in results]}, indent=1
        )
    )
    log(f"written: {out / 'results.md'}, {out / 'results.json'}")
    return 0
