"""Servers under test (as subprocesses) and CPU accounting from /proc."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OPEN_FILES = 65536


def raise_open_files_limit() -> None:
    """preexec_fn: 1,000 connections need more than the usual 1,024 descriptors."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- CPU from /proc -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after "pid (comm) ": state ppid ... utime(14) stime(15) cutime(16) cstime(17).
    return text.rsplit(")", 1)[1].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_cpu_seconds(root: int | None) -> float | None:
    """User+system CPU of ``root`` and every descendant, alive or already reaped.

    A reaped child's time lives on in its parent's cutime/cstime, so short-lived PostgreSQL
    backends (connections opened and closed during a run) are counted too.
    """
    if root is None:
        return None
    children = _children_map()
    ticks = 0
    stack = [root]
    seen = False
    while stack:
        pid = stack.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        seen = True
        ticks += sum(int(value) for value in fields[11:15])
        stack.extend(children.get(pid, ()))
    return ticks / CLOCK_TICKS if seen else None


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal): CPU seconds all CPUs spent not idle, and the time the hypervisor gave
    this VM's CPUs to someone else, since boot (/proc/stat, first line)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    # guest time is already counted in user time.
    return (sum(fields[:7]) - idle) / CLOCK_TICKS, steal / CLOCK_TICKS


def wait_until_quiet(pid: int | None, limit_s: float = 20.0) -> float:
    """Wait until the server stops burning CPU (it may still be answering requests whose
    clients wrk already dropped); returns the seconds waited."""
    start = time.monotonic()
    previous = tree_cpu_seconds(pid)
    quiet = 0
    while previous is not None and time.monotonic() - start < limit_s:
        time.sleep(0.25)
        current = tree_cpu_seconds(pid)
        if current is None:
            break
        quiet = quiet + 1 if current - previous < 0.02 else 0
        previous = current
        if quiet >= 2:
            break
    return time.monotonic() - start


# --- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    ready_path: str
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _log_offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 90.0) -> None:
        self._log = self.log_path.open("ab")  # append mode: truncating it later is safe
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_open_files_limit,  # noqa: PLW1509
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float | None:
        return tree_cpu_seconds(self.pid)

    def take_log(self, keep: Path) -> tuple[int, int]:
        """Counts of (log lines, warning-or-worse lines) written since the last call; copies
        the warning-or-worse lines to ``keep`` and empties the log so it stays small."""
        if self._log is None:
            return 0, 0
        self._log.flush()
        with self.log_path.open("rb") as log:
            data = log.read()
        bad = [
            line
            for line in data.splitlines()
            if b'"level":"warning"' in line
            or b'"level":"error"' in line
            or b'"level":"critical"' in line
            or b"Traceback" in line
        ]
        if bad:
            with keep.open("ab") as kept:
                kept.write(b"\n".join(bad) + b"\n")
        os.truncate(self.log_path, 0)
        return len(data.splitlines()), len(bad)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return
        # Its own session: SIGTERM to the group reaches uvicorn's workers too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def service(
    database_url: str,
    jwt_secret: str,
    workers: int,
    out_dir: Path,
    extra_env: dict[str, str],
    app_path: Path | None = None,
) -> Server:
    """The real service, started as production starts it: ``python -m app serve``."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET": jwt_secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        **extra_env,
    }
    if app_path is not None:  # an experimental copy of backend/ shadows the installed one
        env["PYTHONPATH"] = os.pathsep.join([str(app_path), env.get("PYTHONPATH", "")])
    return Server(
        name="service",
        command=[sys.executable, "-m", "app", "serve"],
        env=env,
        port=port,
        log_path=out_dir / "service.log",
        ready_path="/health",
    )


def reference(database_url: str, workers: int, out_dir: Path, extra_env: dict[str, str]) -> Server:
    """bench/reference.py under the same uvicorn settings, without an access log."""
    port = free_port()
    pool_env = {k: v for k, v in extra_env.items() if k in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW")}
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        **pool_env,
    }
    return Server(
        name="reference",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "bench.reference:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        port=port,
        log_path=out_dir / "reference.log",
        ready_path="/ready",
    )
