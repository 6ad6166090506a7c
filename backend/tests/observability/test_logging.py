"""Logging as it reaches stdout: JSON lines of one shape, one access line per request, request
ids, and no secret in any line."""

from __future__ import annotations

import io
import logging
import re
import sys
import time

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.observability.logging import configure_logging, redact_text
from tests.fixtures.accounts import Account, SignUp
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogOutput

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_records_are_json_lines_with_timestamp_level_event_and_logger(
    log_output: LogOutput,
) -> None:
    structlog.get_logger("app.example").info("something_happened", answer=42)

    [record] = log_output.records(event="something_happened")
    assert record["level"] == "info"
    assert record["logger"] == "app.example"
    assert record["answer"] == 42
    assert ISO_UTC.match(record["timestamp"])


@pytest.mark.parametrize("name", ["uvicorn.error", "sqlalchemy.pool", "alembic.runtime"])
def test_stdlib_records_go_through_the_same_renderer(log_output: LogOutput, name: str) -> None:
    logging.getLogger(name).warning("port %s is busy", 8000)

    [record] = log_output.records(logger=name)
    assert record["event"] == "port 8000 is busy"
    assert record["level"] == "warning"
    assert ISO_UTC.match(record["timestamp"])


def test_exceptions_are_rendered_into_the_record(log_output: LogOutput) -> None:
    try:
        raise ValueError("broken on purpose")
    except ValueError:
        structlog.get_logger("app.example").exception("it_failed")

    [record] = log_output.records(event="it_failed")
    assert record["level"] == "error"
    assert "Traceback" in record["exception"]
    assert "ValueError: broken on purpose" in record["exception"]


def test_log_level_filters_records(log_output: LogOutput) -> None:
    configure_logging("WARNING", "json")
    logger = structlog.get_logger("app.example")

    logger.info("quiet")
    logger.warning("loud")
    try:
        raise ValueError("still reported")
    except ValueError:
        logger.exception("failed")  # an error, whatever the method is called

    events = [r["event"] for r in log_output.records(logger="app.example")]
    assert events == ["loud", "failed"]


def test_console_format_renders_for_humans(log_output: LogOutput) -> None:
    configure_logging("INFO", "console")

    structlog.get_logger("app.example").info("readable", answer=42)
    logging.getLogger("uvicorn.error").info("from uvicorn")

    lines = [ANSI.sub("", line) for line in log_output.text.splitlines()]
    [line] = [line for line in lines if "readable" in line]
    assert not line.startswith("{")
    assert "[info" in line
    assert "answer=42" in line
    assert any("from uvicorn" in line and "uvicorn.error" in line for line in lines)


def test_create_app_applies_log_level_and_format_from_settings(
    database_url: str, log_output: LogOutput
) -> None:
    create_app(make_settings(database_url, log_level="error", log_format="console"))

    structlog.get_logger("app.example").warning("filtered_out")
    structlog.get_logger("app.example").error("kept", answer=42)

    text = ANSI.sub("", log_output.text)
    assert "filtered_out" not in text
    [line] = text.splitlines()
    assert "kept" in line
    assert "answer=42" in line


# --- access lines and request ids ----------------------------------------------------------


async def test_each_request_writes_one_access_line(
    client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await client.get("/health")

    [line] = log_output.records(logger="app.access")
    assert line["event"] == "request"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health", 200)
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert GENERATED_ID.match(line["request_id"])
    assert response.headers["X-Request-ID"] == line["request_id"]
    assert line["client_address"] == "127.0.0.1"  # httpx.ASGITransport's client
    assert ISO_UTC.match(line["timestamp"])


async def test_access_line_records_the_status_of_an_error(
    client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await client.get("/no/such/route")

    [line] = log_output.records(logger="app.access")
    assert response.status_code == 404
    assert (line["path"], line["status"]) == ("/no/such/route", 404)


async def test_incoming_request_id_is_honoured_and_echoed(
    client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "lb-7f3a:2024.01_x"})

    assert response.headers["X-Request-ID"] == "lb-7f3a:2024.01_x"
    [line] = log_output.records(logger="app.access")
    assert line["request_id"] == "lb-7f3a:2024.01_x"


@pytest.mark.parametrize(
    "incoming",
    ["has spaces", "x" * 129, 'quote"and{json}', ""],
    ids=["spaces", "long", "json", "empty"],
)
async def test_invalid_request_id_is_replaced_by_a_generated_one(
    client: httpx.AsyncClient, log_output: LogOutput, incoming: str
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming})

    echoed = response.headers["X-Request-ID"]
    assert GENERATED_ID.match(echoed)
    [line] = log_output.records(logger="app.access")
    assert line["request_id"] == echoed


async def test_request_context_is_on_every_line_of_the_request_and_cleared_after(
    client: httpx.AsyncClient, new_account: Account, log_output: LogOutput
) -> None:
    await client.post(
        new_account.tasks_url,
        json={"title": "logged"},
        headers={**new_account.headers, "X-Request-ID": "req-1"},
    )
    structlog.get_logger("app.example").info("after_the_request")

    [created] = log_output.records(event="task_created")
    [access] = log_output.records(logger="app.access", request_id="req-1")
    [after] = log_output.records(event="after_the_request")
    assert created["request_id"] == "req-1"
    assert access["user_id"] == new_account.id
    assert access["status"] == 201
    assert "request_id" not in after
    assert "user_id" not in after


# --- secrets ---------------------------------------------------------------------------------

SIGNUP_PASSWORD = "Pa55-signup-Qx7u"


async def test_passwords_sent_to_signup_and_login_are_never_logged(
    client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    email = "redaction@example.com"
    responses = [
        await client.post("/api/auth/signup", json={"email": email, "password": SIGNUP_PASSWORD}),
        await client.post("/api/auth/login", json={"email": email, "password": SIGNUP_PASSWORD}),
        await client.post(
            "/api/auth/login", json={"email": email, "password": SIGNUP_PASSWORD + "-wrong"}
        ),
        await client.post(
            "/api/auth/signup", json={"email": "not-an-email", "password": SIGNUP_PASSWORD}
        ),
    ]

    assert [r.status_code for r in responses] == [201, 200, 401, 422]
    assert len(log_output.records(logger="app.access")) == 4
    assert SIGNUP_PASSWORD not in log_output.text


async def test_bearer_tokens_are_never_logged(
    client: httpx.AsyncClient, sign_up: SignUp, log_output: LogOutput
) -> None:
    account = await sign_up()
    tampered = account.token[:-6] + "AAAAAA"

    good = await client.get("/api/auth/me", headers=account.headers)
    bad = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {tampered}"})

    assert (good.status_code, bad.status_code) == (200, 401)
    assert log_output.records(event="token_rejected")
    signature = account.token.rsplit(".", 1)[1]
    assert signature not in log_output.text
    assert tampered.rsplit(".", 1)[1] not in log_output.text


DB_PASSWORD = "db-Pa55-Vv93"


async def test_database_url_password_is_never_logged(
    database_url: str, log_output: LogOutput
) -> None:
    # The test server trusts local connections, so it accepts (and ignores) the password.
    url = make_url(database_url).set(password=DB_PASSWORD)
    with_password = url.update_query_dict({"channel_binding": "require"}).render_as_string(
        hide_password=False
    )
    app = create_app(make_settings(with_password))

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ready = await http.get("/health/db")

    assert ready.status_code == 200
    [started] = log_output.records(event="database_ready")
    assert started["database"].startswith("postgresql+asyncpg://")
    assert log_output.records(event="database_url_warning")
    assert DB_PASSWORD not in log_output.text


def test_secrets_logged_by_mistake_are_redacted(log_output: LogOutput) -> None:
    structlog.get_logger("app.example").info(
        "careless",
        password="hunter2-secret",
        token="tok-secret-123",
        dsn=f"postgresql://app:{DB_PASSWORD}@db.internal/tasks",
        header="Bearer eyJsecret.payload.signature",
        pasted=f"bEaReR postgresql://app:{DB_PASSWORD}@db.internal/tasks",
    )
    logging.getLogger("sqlalchemy.engine").error(
        "cannot connect to %s", f"postgres://app:{DB_PASSWORD}@db.internal:5432/tasks"
    )

    [careless] = log_output.records(event="careless")
    [stdlib] = log_output.records(logger="sqlalchemy.engine")
    assert careless["password"] == "[redacted]"
    assert careless["token"] == "[redacted]"
    assert careless["dsn"] == "postgresql://app:[redacted]@db.internal/tasks"
    assert careless["header"] == "Bearer [redacted]"
    assert careless["pasted"] == "bEaReR [redacted]://app:[redacted]@db.internal/tasks"
    assert stdlib["event"] == "cannot connect to postgres://app:[redacted]@db.internal:5432/tasks"
    for secret in ("hunter2-secret", "tok-secret-123", DB_PASSWORD, "eyJsecret"):
        assert secret not in log_output.text


class _BrokenStdout(io.TextIOBase):
    """A log shipper that went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_log_line_that_cannot_be_written_does_not_fail_the_request(
    client: httpx.AsyncClient,
    new_account: Account,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdout", _BrokenStdout())
    response = await client.post(
        new_account.tasks_url, json={"title": "logged nowhere"}, headers=new_account.headers
    )
    monkeypatch.undo()

    assert response.status_code == 201, response.text
    async with engine.connect() as connection:
        titles = (await connection.scalars(text("SELECT title FROM tasks"))).all()
    assert titles == ["logged nowhere"]
    assert "log line lost (BrokenPipeError" in capsys.readouterr().err


# --- what a crafted request costs the log -------------------------------------------------


def _best_of(runs: int, text: str) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        redact_text(text)
        timings.append(time.perf_counter() - start)
    return min(timings)


@pytest.mark.parametrize(
    "crafted",
    [
        "a://:" * 13_000 + "@",
        "a." * 32_000 + "://x:@",
        "a.a://:" * 9_000 + "@",
        "://:" * 16_000 + "@",
    ],
    ids=["repeated-scheme-and-colon", "word-boundaries", "both", "repeated-separator"],
)
def test_redaction_costs_about_the_same_whatever_the_text_contains(crafted: str) -> None:
    """Compared with benign text of the same length, so the test does not depend on the
    machine's speed: the crafted paths once cost 20-100 times as much."""
    benign = "/api/" + "b" * (len(crafted) - 6) + "@"

    assert _best_of(5, crafted) < 6 * _best_of(5, benign)


async def test_the_access_line_carries_a_long_path_cut_short(
    client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    path = "/" + "p" * 5_000

    response = await client.get(path)

    assert response.status_code == 404
    [line] = log_output.records(logger="app.access")
    assert line["path"] == path[:1024] + "...[3977 more characters]"
