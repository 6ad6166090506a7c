"""Driving a server with wrk and measuring one run: throughput, latency, errors, CPU."""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.processes import (
    Server,
    machine_cpu_seconds,
    raise_open_files_limit,
    tree_cpu_seconds,
    wait_until_quiet,
)

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
WORKLOADS = {
    "w1": "W1 list a user's 50 tasks",
    "w2": "W2 get one task",
    "w3": "W3 create a task",
    "w4": "W4 toggle a task",
    "w3k": "W3k create a task, with Idempotency-Key",
    "w4k": "W4k toggle a task, with Idempotency-Key and If-Match",
    "c1": "C1 /changes: 1,000 changes since a cursor, in one page",
    "w5": "W5 list one list by position, 50 of 1,000 tasks",
    "w6": "W6 search 10,000 tasks of one user",
}
# Reads use the 1,000 readers (each keeps exactly 50 tasks); writes use the writers.
WRITE_WORKLOADS = frozenset({"w3", "w4", "w3k", "w4k"})
# The change feed's workloads use the syncers (bench/database.py), seeded only when asked for.
FEED_WORKLOADS = frozenset({"c1"})
# Lists, order and search: their users are seeded only when asked for (bench/database.py).
ORGANISED_WORKLOADS = frozenset({"w5", "w6"})
# Run only when named in --workloads, so the default matrix keeps its length.
OPT_IN_WORKLOADS = FEED_WORKLOADS | ORGANISED_WORKLOADS
DEFAULT_WORKLOADS = tuple(name for name in WORKLOADS if name not in OPT_IN_WORKLOADS)


class WrkMissingError(RuntimeError):
    pass


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise WrkMissingError(
            "wrk is not installed and this is not root; install it with "
            "`sudo apt-get install -y wrk` (Debian/Ubuntu package 'wrk') and run again"
        )
    print("wrk not found: installing the Debian package (apt-get install -y wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise WrkMissingError("apt-get installed wrk but it is not on PATH")
    return found


@dataclass(frozen=True)
class RunResult:
    app: str
    workload: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int  # connect + read + write + timeout
    timeouts: int
    server_cpu_ms_per_req: float | None
    pg_cpu_ms_per_req: float | None
    wrk_cpu_ms_per_req: float | None
    other_cpu_pct: float  # CPU used by the rest of the machine, % of all CPUs
    steal_pct: float  # CPU the hypervisor took away from this VM, % of all CPUs
    log_lines: int
    log_warnings: int  # warning-or-worse lines the server logged (e.g. pool timeouts)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(
    wrk: str,
    server: Server,
    workload: str,
    connections: int,
    duration: float,
    data_file: Path,
    *,
    threads: int,
    timeout_s: float,
    postmaster_pid: int | None,
    errors_log: Path,
) -> RunResult:
    threads = max(1, min(threads, connections))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(WRK_SCRIPT),
        server.url,
    ]
    env = {
        **os.environ,
        "BENCH_WORKLOAD": workload,
        "BENCH_DATA": str(data_file),
        # w3k/w4k: a fresh prefix for the Idempotency-Keys of this run (the database, and the
        # keys stored in it, outlive a run); w4k shares the writers among the threads.
        "BENCH_RUN_ID": secrets.token_hex(8),
        "BENCH_THREADS": str(threads),
        "BENCH_CONNECTIONS": str(connections),
    }
    server.take_log(errors_log)  # start the run with an empty log
    server_before = server.cpu_seconds()
    pg_before = tree_cpu_seconds(postmaster_pid)
    _children_cpu_seconds_delta()  # forget children reaped before this run
    (busy_before, steal_before), started = machine_cpu_seconds(), time.monotonic()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=raise_open_files_limit,  # noqa: PLW1509
    )
    stdout, stderr = process.communicate(timeout=duration + 120)
    server_after = server.cpu_seconds()
    pg_after = tree_cpu_seconds(postmaster_pid)
    (busy_after, steal_after), elapsed = machine_cpu_seconds(), time.monotonic() - started
    # wrk's own CPU, to show how much of the 2 cores the load generator took.
    usage = _children_cpu_seconds_delta()
    # Everything else on the machine (other jobs): a benchmark on a busy box is not a result.
    ours = usage + sum(
        after - before
        for before, after in ((server_before, server_after), (pg_before, pg_after))
        if before is not None and after is not None
    )
    capacity = elapsed * (os.cpu_count() or 1)
    other = max(0.0, busy_after - busy_before - ours) / capacity
    steal = max(0.0, steal_after - steal_before) / capacity
    wait_until_quiet(server.pid)  # requests wrk gave up on may still be running
    log_lines, log_warnings = server.take_log(errors_log)
    text = stdout.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({process.returncode}) for {server.name} {workload} c={connections}:\n"
            f"{text}\n{stderr.decode(errors='replace')}"
        )
    data = json.loads(line.removeprefix("BENCH_JSON "))
    requests = int(data["requests"])
    seconds = data["duration_us"] / 1e6

    def per_request(before: float | None, after: float | None) -> float | None:
        if before is None or after is None or requests == 0:
            return None
        return (after - before) * 1000 / requests

    return RunResult(
        app=server.name,
        workload=workload,
        connections=connections,
        duration_s=round(seconds, 2),
        requests=requests,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=int(data["non_2xx"]),
        socket_errors=int(
            data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]
        ),
        timeouts=int(data["timeouts"]),
        server_cpu_ms_per_req=per_request(server_before, server_after),
        pg_cpu_ms_per_req=per_request(pg_before, pg_after),
        wrk_cpu_ms_per_req=usage * 1000 / requests if requests else None,
        other_cpu_pct=round(100 * other, 1),
        steal_pct=round(100 * steal, 1),
        log_lines=log_lines,
        log_warnings=log_warnings,
    )


_children_seen = 0.0


def _children_cpu_seconds_delta() -> float:
    """CPU of reaped children (wrk) since the previous call."""
    global _children_seen
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    delta, _children_seen = total - _children_seen, total
    return delta


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
