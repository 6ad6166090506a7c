"""Medians over runs, the Markdown table, the target check, and the machine description."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.load import OPT_IN_WORKLOADS, WORKLOADS, RunResult

# The targets (single worker, 50 connections, ratio to the reference in the same run).
TARGET_RATIO = 0.40
TARGET_P99_MS = 100.0
TARGET_CONNECTIONS = 50
BUSY_MACHINE_PCT = 10.0


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
    }


def versions(postgres: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "postgresql": postgres}
    for package in ("uvicorn", "fastapi", "starlette", "pydantic", "sqlalchemy", "asyncpg"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    for package in ("uvloop", "httptools"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def code_version() -> str:
    """The commit measured, and whether backend/ had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "backend"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return commit + (" (+ uncommitted changes in backend/)" if dirty else "")


def header(
    settings: dict[str, object], postgres: str, load_before: str, code: str | None = None
) -> str:
    box = machine()
    ver = versions(postgres)
    lines = [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- code: {code or code_version()}",
        f"- machine: {box['nproc']} CPUs ({box['cpu']}), {box['memory']} RAM, "
        f"Linux {box['kernel']}; server, PostgreSQL and wrk share it",
        "- versions: " + ", ".join(f"{name} {value}" for name, value in ver.items()),
        f"- load average (1, 5, 15 min) before the run: {load_before}",
        "- settings: " + ", ".join(f"{name}={value}" for name, value in settings.items()),
    ]
    return "\n".join(lines)


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


class Cell:
    """All runs of one (app, workload, connections)."""

    def __init__(self, runs: Sequence[RunResult]) -> None:
        self.runs = list(runs)

    def median(self, name: str) -> float | None:
        return _median(getattr(run, name) for run in self.runs)

    def total(self, name: str) -> int:
        return sum(int(getattr(run, name)) for run in self.runs)


def cells(results: Sequence[RunResult]) -> dict[tuple[str, str, int], Cell]:
    grouped: dict[tuple[str, str, int], list[RunResult]] = {}
    for result in results:
        grouped.setdefault((result.app, result.workload, result.connections), []).append(result)
    return {key: Cell(runs) for key, runs in grouped.items()}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _worst(a: Cell | None, b: Cell | None, name: str) -> float | None:
    values = [getattr(run, name) for cell in (a, b) if cell for run in cell.runs]
    return max(values) if values else None


def table(results: Sequence[RunResult]) -> str:
    grouped = cells(results)
    rows = [
        "| workload | conns | service req/s | reference req/s | ratio | p50 ms | p90 ms | p99 ms "
        "| ref p99 ms | non-2xx svc/ref | socket errors svc/ref | service CPU ms/req "
        "| reference CPU ms/req | PG CPU ms/req svc/ref | other load % | steal % | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: |",
    ]
    keys = sorted(
        {(workload, conns) for (_, workload, conns) in grouped},
        key=lambda key: (key[1], key[0]),
    )
    for workload, conns in keys:
        svc = grouped.get(("service", workload, conns))
        ref = grouped.get(("reference", workload, conns))
        svc_rps = svc.median("rps") if svc else None
        ref_rps = ref.median("rps") if ref else None
        ratio = svc_rps / ref_rps if svc_rps is not None and ref_rps else None

        def both(name: str, a: Cell | None = svc, b: Cell | None = ref) -> str:
            left = str(a.total(name)) if a else "-"
            right = str(b.total(name)) if b else "-"
            return f"{left}/{right}"

        pg = (
            f"{_fmt(svc.median('pg_cpu_ms_per_req'), 2) if svc else '-'}/"
            f"{_fmt(ref.median('pg_cpu_ms_per_req'), 2) if ref else '-'}"
        )
        rows.append(
            "| "
            + " | ".join(
                [
                    WORKLOADS[workload],
                    str(conns),
                    _fmt(svc_rps, 0),
                    _fmt(ref_rps, 0),
                    "n/a" if ratio is None else f"{ratio:.0%}",
                    _fmt(svc.median("p50_ms")) if svc else "-",
                    _fmt(svc.median("p90_ms")) if svc else "-",
                    _fmt(svc.median("p99_ms")) if svc else "-",
                    _fmt(ref.median("p99_ms")) if ref else "-",
                    both("non_2xx"),
                    both("socket_errors"),
                    _fmt(svc.median("server_cpu_ms_per_req"), 2) if svc else "-",
                    _fmt(ref.median("server_cpu_ms_per_req"), 2) if ref else "-",
                    pg,
                    _fmt(_worst(svc, ref, "other_cpu_pct"), 0),
                    _fmt(_worst(svc, ref, "steal_pct"), 0),
                    str(len(svc.runs) if svc else len(ref.runs) if ref else 0),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def verdict(results: Sequence[RunResult]) -> str:
    """The issue's targets, one line each: met or missed, and by how much."""
    grouped = cells(results)
    lines = []
    # The targets are for the task routes; the opt-in workloads have none of their own.
    workloads = sorted({workload for (_, workload, _) in grouped} - OPT_IN_WORKLOADS)
    for workload in workloads:
        svc = grouped.get(("service", workload, TARGET_CONNECTIONS))
        ref = grouped.get(("reference", workload, TARGET_CONNECTIONS))
        if svc is None:
            continue
        svc_rps, p99 = svc.median("rps"), svc.median("p99_ms")
        if ref is not None and svc_rps is not None and ref.median("rps"):
            ratio = svc_rps / (ref.median("rps") or 1)
            mark = "met" if ratio >= TARGET_RATIO else "MISSED"
            lines.append(
                f"- {WORKLOADS[workload]}: {ratio:.0%} of the reference's req/s at "
                f"{TARGET_CONNECTIONS} connections (target >= {TARGET_RATIO:.0%}): {mark}"
            )
        if p99 is not None:
            mark = "met" if p99 < TARGET_P99_MS else "MISSED"
            lines.append(
                f"- {WORKLOADS[workload]}: p99 {p99:.1f} ms at {TARGET_CONNECTIONS} connections "
                f"(target < {TARGET_P99_MS:.0f} ms): {mark}"
            )
    failing = [
        f"{run.app} {run.workload} c={run.connections}: {run.non_2xx} non-2xx, "
        f"{run.socket_errors} socket errors ({run.timeouts} timeouts)"
        for run in results
        if run.errors
    ]
    warned = [
        f"{run.app} {run.workload} c={run.connections}: {run.log_warnings}"
        for run in results
        if run.log_warnings
    ]
    if warned:
        lines.append(
            "- the server logged warnings or errors (bench/out/server-warnings.log; e.g. pool "
            "timeouts answered after wrk stopped waiting):"
        )
        lines.extend(f"  - {line}" for line in warned)
    busy = max((run.other_cpu_pct for run in results), default=0.0)
    steal = max((run.steal_pct for run in results), default=0.0)
    if busy > BUSY_MACHINE_PCT or steal > BUSY_MACHINE_PCT:
        lines.append(
            f"- WARNING: other processes used up to {busy:.0f}% of the machine's CPU, and the "
            f"hypervisor took up to {steal:.0f}% (steal), during runs (columns 'other load %', "
            "'steal %'); absolute numbers are low, ratios noisy"
        )
    if failing:
        lines.append("- errors (target: none at any connection count): MISSED")
        lines.extend(f"  - {line}" for line in failing)
    else:
        counts = sorted({run.connections for run in results})
        lines.append(
            f"- errors at {', '.join(map(str, counts))} connections: none (target: none): met"
        )
    return "\n".join(lines)
