"""The three ways to run: docker compose wiring, the container image's start command, SIGTERM.

No Docker engine runs on the build machines, so the compose file is checked for its wiring and
the image's exact ENTRYPOINT/CMD/HEALTHCHECK are run here as processes against a real database.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import REPO_ROOT, Settings
from tests.fixtures.accounts import PASSWORD
from tests.fixtures.processes import AppServer

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return loaded


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text_ = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text_.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _dockerfile(instruction: str) -> list[str]:
    return [args for name, args in _dockerfile_instructions() if name == instruction]


def _runtime_env() -> dict[str, str]:
    """ENV of the last stage (the image that runs)."""
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    env: dict[str, str] = {}
    for name, args in instructions[last_from:]:
        if name == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def test_compose_has_db_redis_migrate_and_api(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"db", "redis", "migrate", "api"}


def test_compose_db_is_official_postgres_with_volume_and_healthcheck(
    compose: dict[str, Any],
) -> None:
    db = compose["services"]["db"]
    assert db["image"].split(":")[0] == "postgres"
    volume, mount = db["volumes"][0].split(":")
    assert volume in compose["volumes"]
    assert mount == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert set(db["environment"]) == POSTGRES_IMAGE_VARIABLES


def test_compose_migrate_is_one_shot_after_db_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    assert migrate["env_file"] == ".env"


def test_compose_api_waits_for_db_and_migrations_and_checks_readiness(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["api"]
    assert api["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    # The limits are counted in the compose Redis, as in a deployment with replicas.
    assert api["environment"]["RATE_LIMIT_STORAGE_URL"] == "redis://redis:6379/0"
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert "ping" in redis["healthcheck"]["test"]
    assert api["ports"] == ["8000:8000"]
    assert api["env_file"] == ".env"
    assert "/health/db" in " ".join(api["healthcheck"]["test"])
    assert api["command"] == ["serve", "--no-migrate"]


def test_compose_environment_names_are_settings(compose: dict[str, Any]) -> None:
    for service in ("migrate", "api"):
        names = set(compose["services"][service]["environment"])
        assert names <= SETTINGS_VARIABLES, names - SETTINGS_VARIABLES
    database_url = compose["services"]["api"]["environment"]["DATABASE_URL"]
    assert "@db:5432/" in database_url


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    text_ = (REPO_ROOT / ".env.example").read_text()
    mentioned = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", text_, flags=re.MULTILINE))
    assert mentioned == SETTINGS_VARIABLES


def test_dockerfile_is_multi_stage_slim_non_root_with_readiness_healthcheck() -> None:
    stages = _dockerfile("FROM")
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    assert any("uv sync --frozen --no-dev" in run for run in _dockerfile("RUN"))
    assert _dockerfile("USER") == ["app"]
    (healthcheck,) = _dockerfile("HEALTHCHECK")
    assert "/health/db" in healthcheck
    env = _runtime_env()
    assert env["HOST"] == "0.0.0.0"
    assert {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PORT"} <= set(env)


@pytest.fixture
def image_server(database_url: str, tmp_path: Path, clean_database: None) -> Iterator[AppServer]:
    """The image's ENTRYPOINT + CMD, with the image's ENV (the port and loopback address
    changed so the test talks to 127.0.0.1 only)."""
    entrypoint = json.loads(_dockerfile("ENTRYPOINT")[0])
    command = json.loads(_dockerfile("CMD")[0])
    assert entrypoint == ["python", "-m", "app"]
    assert command == ["serve"]
    env = {**_runtime_env(), "HOST": "127.0.0.1", "SHUTDOWN_GRACE_SECONDS": "20"}
    env.pop("PATH")
    env.pop("PORT")  # a free port instead of 8000
    with AppServer(database_url=database_url, root=tmp_path, env=env).serving() as server:
        yield server


def test_image_start_command_serves_and_its_healthcheck_passes(image_server: AppServer) -> None:
    response = httpx.get(f"{image_server.base_url}/health/db", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

    (healthcheck,) = _dockerfile("HEALTHCHECK")
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert probe[0] == "python"
    script = probe[2].replace("127.0.0.1:8000", f"127.0.0.1:{image_server.port}")
    result = subprocess.run([sys.executable, "-c", script], timeout=10, check=False)
    assert result.returncode == 0


async def test_sigterm_finishes_the_in_flight_request_and_exits_zero(
    image_server: AppServer, engine: AsyncEngine
) -> None:
    assert image_server.process is not None
    credentials = {"email": "t@example.com", "password": PASSWORD}
    async with httpx.AsyncClient(base_url=image_server.base_url, timeout=30) as http:
        await http.post("/api/auth/signup", json=credentials)
        login = (await http.post("/api/auth/login", json=credentials)).json()
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        tasks_url = f"/api/{login['user']['id']}/tasks"
        task = (await http.post(tasks_url, json={"title": "slow"}, headers=headers)).json()

        # Hold the task's row lock so the toggle is in flight when the signal arrives.
        async with engine.connect() as blocker:
            await blocker.execute(
                text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": task["id"]}
            )
            toggle = asyncio.ensure_future(
                http.patch(f"{tasks_url}/{task['id']}/complete", headers=headers)
            )
            await asyncio.sleep(1.0)
            assert not toggle.done()
            image_server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            # New connections are refused while the in-flight request drains.
            with pytest.raises(httpx.TransportError):
                async with httpx.AsyncClient(base_url=image_server.base_url) as fresh:
                    await fresh.get("/health", timeout=2)
            await blocker.rollback()
        response = await toggle

    assert response.status_code == 200
    assert response.json()["completed"] is True
    exit_code = await asyncio.to_thread(image_server.process.wait, 30)
    assert exit_code == 0
    assert "database_disposed" in image_server.log_text()
