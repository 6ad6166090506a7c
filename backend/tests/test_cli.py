"""The run command as an operator meets it: `python -m app migrate|serve` in a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from app.settings import Settings
from tests.fixtures.app import TEST_JWT_SECRET
from tests.fixtures.processes import free_port

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

DB_PASSWORD = "cli-Pa55-Jq47"
STARTUP_BOUND_SECONDS = 60
EXIT_BOUND_SECONDS = 30


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without any of the service's variables, plus ``variables``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields and name != "TEST_DATABASE_URL"
    }
    return {**env, **variables}


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- fail fast ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def _run(command: str, env: dict[str, str], cwd: Path) -> Finished:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(EXIT_BOUND_SECONDS):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


VALID_URL = f"postgresql://app:{DB_PASSWORD}@127.0.0.1:1/tasks"
UNREACHABLE_PORT = free_port()
UNREACHABLE_URL = f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{UNREACHABLE_PORT}/inventory"
FAIL_FAST_RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "bad-url-scheme": ("migrate", {"DATABASE_URL": f"mysql://app:{DB_PASSWORD}@127.0.0.1/tasks"}),
    "non-numeric-pool-size": ("migrate", {"DATABASE_URL": VALID_URL, "DB_POOL_SIZE": "five"}),
    "unknown-log-level": ("migrate", {"DATABASE_URL": VALID_URL, "LOG_LEVEL": "LOUD"}),
    "unreachable-migrate": ("migrate", {"DATABASE_URL": UNREACHABLE_URL}),
    "unreachable-serve": ("serve", {"DATABASE_URL": UNREACHABLE_URL}),
    "pgbouncer-without-listen-url": ("serve", {"DATABASE_URL": f"{VALID_URL}?pgbouncer=true"}),
}


@pytest.fixture(scope="module")
async def fail_fast(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Every failing start at once (each is a cold interpreter start), results by name."""
    cwd = tmp_path_factory.mktemp("fail-fast")
    runs = {
        name: _run(
            command,
            _environment(
                JWT_SECRET=TEST_JWT_SECRET, DB_STARTUP_DEADLINE_SECONDS="0.5", **variables
            ),
            cwd,
        )
        for name, (command, variables) in FAIL_FAST_RUNS.items()
    }
    results = await asyncio.gather(*runs.values())
    return dict(zip(runs, results, strict=True))


@pytest.mark.parametrize(
    ("run", "named"),
    [
        ("bad-url-scheme", "DATABASE_URL: unsupported scheme 'mysql'"),
        ("non-numeric-pool-size", "DB_POOL_SIZE: Input should be a valid integer"),
        (
            "unknown-log-level",
            "LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
        ),
    ],
)
def test_an_invalid_setting_stops_the_process_with_one_line(
    fail_fast: dict[str, Finished], run: str, named: str
) -> None:
    result = fail_fast[run]

    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line.startswith("error: Invalid setting ")
    assert named in line
    assert "Traceback" not in result.output
    assert DB_PASSWORD not in result.output


def test_serving_through_pgbouncer_without_a_listen_url_stops_before_connecting(
    fail_fast: dict[str, Finished],
) -> None:
    """LISTEN cannot work through a transaction pooler: said in one line, before any
    database is touched (VALID_URL's port 1 would fail otherwise)."""
    result = fail_fast["pgbouncer-without-listen-url"]

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: DATABASE_LISTEN_URL must point at PostgreSQL directly when DATABASE_URL goes "
        "through PgBouncer"
    ]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("run", ["unreachable-migrate", "unreachable-serve"])
def test_an_unreachable_database_stops_the_process_naming_host_and_database(
    fail_fast: dict[str, Finished], run: str
) -> None:
    result = fail_fast[run]

    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"error: Database unreachable at host 127.0.0.1:{UNREACHABLE_PORT}, "
        "database 'inventory' after 0.5s"
    )
    assert "Traceback" not in result.output
    assert DB_PASSWORD not in result.output
    # The retries were logged as JSON lines on stdout while waiting.
    assert {r["event"] for r in _json_lines(result.stdout)} >= {"database_not_ready"}


# --- serve ------------------------------------------------------------------------------------


@dataclass
class Server:
    process: asyncio.subprocess.Process
    base_url: str
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    async def wait_until_ready(self) -> httpx.Response:
        """Poll /health/db until it answers 200, bounded; fails early if the process died."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + STARTUP_BOUND_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            while loop.time() < give_up_at:
                if self.process.returncode is not None:
                    pytest.fail(f"the server exited with {self.process.returncode}: {self.stderr}")
                with contextlib.suppress(httpx.TransportError):
                    response = await http.get("/health/db")
                    if response.status_code == 200:
                        return response
                await asyncio.sleep(0.2)
        pytest.fail(f"the server did not become ready in {STARTUP_BOUND_SECONDS}s: {self.stderr}")

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(EXIT_BOUND_SECONDS):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], workdir: Path) -> AsyncIterator[Server]:
    port = free_port()
    stdout_path = workdir / f"serve-{port}.out"
    stderr_path = workdir / f"serve-{port}.err"
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "serve",
            cwd=workdir,
            env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)
    finally:
        if process.returncode is None:
            process.kill()
            async with asyncio.timeout(EXIT_BOUND_SECONDS):
                await process.wait()


async def test_serve_migrates_serves_and_exits_0_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    # The test server trusts local connections, so it accepts (and ignores) the password.
    url = make_url(database_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    env = _environment(DATABASE_URL=url, JWT_SECRET=TEST_JWT_SECRET)

    async with serving(env, tmp_path) as server:
        ready = await server.wait_until_ready()
        exit_code = await server.terminate()

    assert ready.json()["database"] == make_url(database_url).database
    assert exit_code == 0
    records = _json_lines(server.stdout)  # every line is JSON
    [migrated] = [r for r in records if r["event"] == "migrations_applied"]
    assert migrated["database"].startswith("postgresql+asyncpg://")
    assert str(make_url(database_url).database) in migrated["database"]
    assert any(
        r["logger"] == "uvicorn.error" and r["event"] == "Application startup complete."
        for r in records
    )
    assert any(
        r["logger"] == "app.access" and r["path"] == "/health/db" and r["status"] == 200
        for r in records
    )
    assert "Traceback" not in server.stdout + server.stderr
    assert DB_PASSWORD not in server.stdout + server.stderr


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(attrs=("name", "cmdline")):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and any(str(pgdata) in arg for arg in cmdline):
            found.append(process)
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A DATA_DIR the embedded server's system user can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="taskapi-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        # Only if a run was killed before its server was stopped.
        for process in _postgres_processes(path / "postgres"):
            with contextlib.suppress(psutil.Error):
                process.terminate()
        shutil.rmtree(path, ignore_errors=True)


async def test_serve_without_database_url_runs_embedded_postgres_that_keeps_data(
    data_dir: Path,
) -> None:
    env = _environment(DATA_DIR=str(data_dir))
    credentials = {"email": "kept@example.com", "password": "survives a restart"}

    async with serving(env, data_dir) as first:
        await first.wait_until_ready()
        async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
            signed_up = await http.post("/api/auth/signup", json=credentials)
        first_exit = await first.terminate()
    left_running = _postgres_processes(data_dir / "postgres")

    async with serving(env, data_dir) as second:
        await second.wait_until_ready()
        async with httpx.AsyncClient(base_url=second.base_url, timeout=10) as http:
            logged_in = await http.post("/api/auth/login", json=credentials)
        second_exit = await second.terminate()

    assert signed_up.status_code == 201, signed_up.text
    assert first_exit == 0
    assert left_running == []
    [embedded] = [r for r in _json_lines(first.stdout) if r["event"] == "using_embedded_database"]
    assert embedded["database"].startswith("postgresql+asyncpg://postgres@/postgres?host=")
    assert embedded["data_dir"] == str(data_dir / "postgres")
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["user"]["id"] == signed_up.json()["id"]
    assert second_exit == 0
    assert "Traceback" not in first.stdout + first.stderr + second.stdout + second.stderr
