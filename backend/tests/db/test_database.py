"""The engine and its pool, the driver connections, the lifespan's database check, and outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.database import Database
from app.db.engine import CLIENT_TIMEOUT_MARGIN_SECONDS, connect_outside_pool, create_engine
from app.db.errors import DatabaseStartupError, DatabaseUnavailableError, translate_database_error
from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogOutput
from tests.fixtures.processes import free_port
from tests.fixtures.tcp_proxy import TcpProxy, running_proxy

SECRET = "s3cret-Pa55word"
# SQLAlchemy closes a connection it gives up on gracefully, waiting up to 2 s for the server.
GRACEFUL_CLOSE_SECONDS = 2.0


def with_query(url: str, **params: str) -> str:
    return make_url(url).update_query_dict(params).render_as_string(hide_password=False)


async def _backends(engine: AsyncEngine, application_name: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name},
        )
    return int(count or 0)


async def _wait_for_backends(engine: AsyncEngine, application_name: str, expected: int) -> int:
    """Server backends exit a moment after their client disconnects: poll, bounded."""
    count = await _backends(engine, application_name)
    for _ in range(50):
        if count == expected:
            break
        await asyncio.sleep(0.1)
        count = await _backends(engine, application_name)
    return count


# --- the engine -----------------------------------------------------------------------------


async def test_engine_connects_with_libpq_sslmode_and_channel_binding_in_the_url(
    database_url: str, log_output: LogOutput
) -> None:
    url = with_query(database_url, sslmode="disable", channel_binding="require")
    engine = create_engine(make_settings(url))
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT current_database(), coalesce((SELECT ssl FROM pg_stat_ssl "
                        "WHERE pid = pg_backend_pid()), false)"
                    )
                )
            ).one()
    finally:
        await engine.dispose()

    assert row == (make_url(database_url).database, False)
    [warning] = log_output.records(event="database_url_warning")
    assert warning["level"] == "warning"
    assert "channel_binding" in warning["detail"]


async def test_sslmode_require_never_falls_back_to_plain_text(
    database_url: str, engine: AsyncEngine
) -> None:
    if not make_url(database_url).host:
        pytest.skip("the test server listens on a Unix socket, where sslmode does not apply")
    async with engine.connect() as connection:
        server_has_tls = await connection.scalar(text("SELECT current_setting('ssl') = 'on'"))
    required = create_engine(make_settings(with_query(database_url, sslmode="require")))
    try:
        if server_has_tls:
            async with required.connect() as connection:
                ssl_in_use = await connection.scalar(
                    text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            assert ssl_in_use is True
        else:
            # A server without TLS is refused, never used unencrypted.
            with pytest.raises(Exception, match=r"(?i)ssl"):
                async with required.connect():
                    pass
    finally:
        await required.dispose()


async def test_engine_applies_the_pool_settings(database_url: str) -> None:
    settings = make_settings(
        database_url,
        db_pool_size=3,
        db_max_overflow=4,
        db_pool_recycle_seconds=120,
        db_pool_timeout_seconds=2.5,
        db_pool_pre_ping=False,
    )
    engine = create_engine(settings)
    try:
        pool = engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        assert pool._max_overflow == 4  # type: ignore[attr-defined]
        assert pool._recycle == 120
        assert pool._timeout == 2.5  # type: ignore[attr-defined]
        assert pool._pre_ping is False
    finally:
        await engine.dispose()


async def test_engine_defaults_to_the_documented_pool_and_server_timeouts(
    database_url: str,
) -> None:
    engine = create_engine(make_settings(database_url))
    try:
        pool = engine.pool
        assert pool.size() == 20  # type: ignore[attr-defined]
        assert pool._max_overflow == 0  # type: ignore[attr-defined]
        assert pool._recycle == 3600
        assert pool._timeout == 10  # type: ignore[attr-defined]
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT current_setting('statement_timeout'), "
                        "current_setting('idle_in_transaction_session_timeout'), "
                        "current_setting('application_name')"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert row == ("10s", "1min", "taskapi")


async def _reuse_after_backend_killed(
    database_url: str, killer_engine: AsyncEngine, *, seen_closed: bool, **overrides: object
) -> tuple[int, int]:
    """Check a connection out, kill its backend while it sits in the pool (waiting until the
    backend is gone, and with ``seen_closed`` until the driver has also noticed its socket
    close), check out again."""
    engine = create_engine(make_settings(database_url, db_pool_size=1, **overrides))
    try:
        async with engine.connect() as connection:
            first_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
            driver = (await connection.get_raw_connection()).driver_connection
        async with killer_engine.connect() as killer:
            await killer.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first_pid}
            )
        if seen_closed:
            async with asyncio.timeout(5):
                while not driver.is_closed():  # noqa: ASYNC110  (the driver offers no event)
                    await asyncio.sleep(0.01)
        async with engine.connect() as connection:
            second_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
    finally:
        await engine.dispose()
    return first_pid, second_pid


async def test_pre_ping_replaces_a_connection_the_driver_saw_closed_without_a_round_trip(
    database_url: str, engine: AsyncEngine
) -> None:
    # Used a moment ago, so no ping: the local check alone must catch it.
    first_pid, second_pid = await _reuse_after_backend_killed(
        database_url, engine, seen_closed=True, db_pool_pre_ping_idle_seconds=3600
    )
    assert second_pid != first_pid


async def test_pre_ping_replaces_an_idle_connection_that_died_unnoticed(
    database_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A death no socket reported (a dropped NAT entry, say): the driver still calls the
    # connection open, so only the SELECT 1 of a connection idle past the setting finds out.
    monkeypatch.setattr(asyncpg.Connection, "is_closed", lambda _: False)
    first_pid, second_pid = await _reuse_after_backend_killed(
        database_url, engine, seen_closed=False, db_pool_pre_ping_idle_seconds=0
    )
    assert second_pid != first_pid


async def test_without_pre_ping_a_dead_pooled_connection_reaches_the_caller(
    database_url: str, engine: AsyncEngine
) -> None:
    # The control for the test above: it is the check that saves the request.
    with pytest.raises(DBAPIError):
        await _reuse_after_backend_killed(
            database_url, engine, seen_closed=True, db_pool_pre_ping=False
        )


@pytest.mark.parametrize(("ping_after_idle", "pings"), [(3600, 0), (0, 5)])
async def test_only_a_connection_idle_past_the_setting_is_pinged(
    database_url: str, ping_after_idle: float, pings: int
) -> None:
    """The busy pool's checkout costs no round trip: the ping is for connections that sat."""
    database = Database.from_settings(
        make_settings(database_url, db_pool_size=1, db_pool_pre_ping_idle_seconds=ping_after_idle)
    )
    sent: list[str] = []
    try:
        async with database.connection() as connection:
            connection.add_query_logger(lambda record: sent.append(record.query))
        for _ in range(5):
            async with database.connection() as connection:
                await connection.fetchval("SELECT 2")
    finally:
        await database.dispose()
    assert sent.count("SELECT 1") == pings
    assert sent.count("SELECT 2") == 5


@pytest.mark.parametrize(
    ("statement", "cancel_after", "raised", "kept"),
    [
        # The server answered with an ERROR: the session is as it was, the connection reusable.
        pytest.param("SELECT 1 / 0", None, asyncpg.DivisionByZeroError, True, id="refused"),
        # Cancelled with the statement in flight: nobody should inherit that connection.
        pytest.param("SELECT pg_sleep(2)", 0.2, TimeoutError, False, id="cancelled-midway"),
    ],
)
async def test_a_connection_goes_back_to_the_pool_only_if_its_statement_ended_cleanly(
    database_url: str,
    statement: str,
    cancel_after: float | None,
    raised: type[Exception],
    kept: bool,
) -> None:
    database = Database.from_settings(make_settings(database_url, db_pool_size=1))
    try:
        async with database.connection() as connection:
            first_pid = await connection.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(raised):
            async with asyncio.timeout(cancel_after), database.connection() as connection:
                await connection.execute(statement)

        async with database.connection() as connection:
            second_pid = await connection.fetchval("SELECT pg_backend_pid()")
    finally:
        await database.dispose()
    assert (second_pid == first_pid) is kept


async def test_requests_waiting_for_a_connection_get_one_in_order_of_arrival(
    database_url: str,
) -> None:
    database = Database.from_settings(
        make_settings(database_url, db_pool_size=1, db_max_overflow=0)
    )
    served: list[str] = []

    async def query(name: str) -> None:
        async with database.connection() as connection:
            served.append(name)
            await connection.execute("SELECT pg_sleep(0.01)")

    try:
        async with database.connection():
            waiting = [asyncio.create_task(query(f"waiter-{n}")) for n in range(3)]
            await asyncio.sleep(0.05)  # all three are queued
            # A request that arrives as the connection is handed back (it runs before the
            # woken waiter does) must not overtake them. In SQLAlchemy's own queue it would:
            # it takes a connection that is there without waiting, and the waiter that was
            # woken for it queues again at the back.
            late = asyncio.create_task(query("late"))
        await asyncio.gather(*waiting, late)
    finally:
        await database.dispose()
    assert served == ["waiter-0", "waiter-1", "waiter-2", "late"]


async def test_waiting_for_a_connection_gives_up_after_the_pool_timeout(
    database_url: str,
) -> None:
    database = Database.from_settings(
        make_settings(database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.3)
    )
    try:
        async with database.connection():
            started = time.monotonic()
            with pytest.raises(SATimeoutError):
                async with database.connection():
                    pass
            waited = time.monotonic() - started
    finally:
        await database.dispose()
    assert 0.25 < waited < 2
    assert isinstance(translate_database_error(SATimeoutError()), DatabaseUnavailableError)


async def test_statement_timeout_follows_the_setting(database_url: str) -> None:
    engine = create_engine(make_settings(database_url, db_statement_timeout_seconds=0.25))
    try:
        async with engine.connect() as connection:
            setting = await connection.scalar(text("SELECT current_setting('statement_timeout')"))
            with pytest.raises(Exception, match="canceling statement due to statement timeout"):
                await connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()
    assert setting == "250ms"


async def test_pgbouncer_mode_sets_the_timeouts_in_each_transaction(database_url: str) -> None:
    engine = create_engine(make_settings(with_query(database_url, pgbouncer="true")))
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT current_setting('statement_timeout'), "
                        "current_setting('idle_in_transaction_session_timeout')"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert row == ("10s", "1min")


# --- the lifespan ---------------------------------------------------------------------------


async def test_lifespan_verifies_the_database_and_disposes_the_engine_on_exit(
    database_url: str, engine: AsyncEngine
) -> None:
    application_name = f"lifespan-{uuid.uuid4().hex[:8]}"
    app = create_app(make_settings(with_query(database_url, application_name=application_name)))

    async with LifespanManager(app) as manager:
        # The startup check's connection went back to the pool and stays open.
        assert await _backends(engine, application_name) == 1
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/health/db")).status_code == 200

    assert await _wait_for_backends(engine, application_name, 0) == 0


async def test_lifespan_fails_naming_host_and_database_without_the_password() -> None:
    port = free_port()
    url = f"postgresql://app:{SECRET}@127.0.0.1:{port}/orders"
    app = create_app(make_settings(url, db_startup_deadline_seconds=0.3))

    with pytest.raises(DatabaseStartupError) as caught:
        async with LifespanManager(app):
            pass

    message = str(caught.value)
    assert message.startswith(f"Database unreachable at host 127.0.0.1:{port}, database 'orders'")
    assert "ConnectionRefusedError" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None


async def test_startup_check_does_not_retry_a_rejected_connection(
    database_url: str, log_output: LogOutput
) -> None:
    url = make_url(database_url).set(database="no_such_database_here", password=SECRET)
    database = Database.from_settings(make_settings(url.render_as_string(hide_password=False)))
    try:
        with pytest.raises(DatabaseStartupError) as caught:
            await database.wait_until_ready(10)
    finally:
        await database.dispose()

    message = str(caught.value)
    assert "database 'no_such_database_here' rejected the connection" in message
    assert 'InvalidCatalogNameError: database "no_such_database_here" does not exist' in message
    assert SECRET not in message
    assert log_output.records(event="database_not_ready") == []


async def test_startup_check_retries_until_the_database_accepts_connections(
    database_url: str, log_output: LogOutput
) -> None:
    async with running_proxy(database_url) as proxy:
        await proxy.refuse()
        database = Database.from_settings(make_settings(proxy.url))
        try:
            waiting = asyncio.create_task(database.wait_until_ready(10))
            for _ in range(100):
                if log_output.records(event="database_not_ready"):
                    break
                await asyncio.sleep(0.05)
            assert not waiting.done()
            await proxy.forward()
            async with asyncio.timeout(5):
                await waiting
            latency = await database.ping()
        finally:
            await database.dispose()

    assert latency > 0
    assert log_output.records(event="database_not_ready")[0]["attempt"] == 1


# --- the unit of work -----------------------------------------------------------------------


async def test_a_created_task_is_committed_when_the_response_arrives(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    response = await client.post(
        new_account.tasks_url, json={"title": "committed"}, headers=new_account.headers
    )

    assert response.status_code == 201, response.text
    async with engine.connect() as connection:
        title = await connection.scalar(
            text("SELECT title FROM tasks WHERE id = :id"), {"id": response.json()["id"]}
        )
    assert title == "committed"


REFUSED_TITLE = "refused at commit"


async def test_a_failing_commit_gives_an_error_response_and_stores_nothing(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    # A deferred constraint trigger runs at COMMIT, after the INSERT succeeded: the commit
    # itself fails, which is what the unit of work must turn into an error response.
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE FUNCTION test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.title = '{REFUSED_TITLE}' THEN "
            "RAISE EXCEPTION 'refused by the deferred test trigger'; END IF; RETURN NULL; END $$"
        )
        await connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER INSERT ON tasks "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_at_commit()"
        )
    try:
        accepted = await client.post(
            new_account.tasks_url, json={"title": "accepted"}, headers=new_account.headers
        )
        refused = await client.post(
            new_account.tasks_url, json={"title": REFUSED_TITLE}, headers=new_account.headers
        )
    finally:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TRIGGER test_refuse_at_commit ON tasks")
            await connection.exec_driver_sql("DROP FUNCTION test_refuse_at_commit()")

    assert accepted.status_code == 201, accepted.text
    assert refused.status_code == 500
    assert refused.json() == {"detail": "Internal server error", "code": "internal_error"}
    async with engine.connect() as connection:
        titles = (await connection.scalars(text("SELECT title FROM tasks"))).all()
    assert titles == ["accepted"]


# --- the database goes away while serving ---------------------------------------------------

STATEMENT_TIMEOUT = 0.5
# The client-side backstop (statement timeout + margin), then SQLAlchemy's graceful close of
# the dead connection, then generous slack: "never hangs", not a speed requirement.
OUTAGE_ANSWER_BOUND = (
    STATEMENT_TIMEOUT + CLIENT_TIMEOUT_MARGIN_SECONDS + GRACEFUL_CLOSE_SECONDS + 3.0
)


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    async with running_proxy(database_url) as running:
        yield running


@pytest.fixture
async def proxied_client(proxy: TcpProxy) -> AsyncIterator[httpx.AsyncClient]:
    """An app that started while the database was reachable through the proxy."""
    settings = make_settings(
        proxy.url,
        db_statement_timeout_seconds=STATEMENT_TIMEOUT,
        db_connect_timeout_seconds=1,
        db_pool_timeout_seconds=1,
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _timed_get(
    http: httpx.AsyncClient, url: str, account: Account
) -> tuple[httpx.Response, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(30):
        response = await http.get(url, headers=account.headers)
    return response, loop.time() - started


async def _titles(engine: AsyncEngine, account: Account) -> list[str]:
    async with engine.connect() as connection:
        return list(
            (
                await connection.scalars(
                    text("SELECT title FROM tasks WHERE user_id = :owner"), {"owner": account.id}
                )
            ).all()
        )


@pytest.mark.parametrize("outage", ["black_hole", "refuse"])
async def test_a_route_answers_503_while_the_database_is_gone_and_recovers_without_restart(
    outage: str,
    proxy: TcpProxy,
    proxied_client: httpx.AsyncClient,
    new_account: Account,
    engine: AsyncEngine,
) -> None:
    before = await proxied_client.get(new_account.tasks_url, headers=new_account.headers)
    assert before.status_code == 200, before.text

    if outage == "black_hole":
        proxy.black_hole()
    else:
        await proxy.refuse()
    during, elapsed = await _timed_get(proxied_client, new_account.tasks_url, new_account)
    refused_write = await proxied_client.post(
        new_account.tasks_url, json={"title": "while down"}, headers=new_account.headers
    )
    await proxy.forward()
    after = await proxied_client.post(
        new_account.tasks_url, json={"title": "after the outage"}, headers=new_account.headers
    )

    assert during.status_code == 503
    assert during.json()["code"] in ("database_unavailable", "database_timeout")
    assert during.headers["Retry-After"] == "5"
    assert elapsed < OUTAGE_ANSWER_BOUND
    assert refused_write.status_code == 503
    assert after.status_code == 201, after.text
    assert await _titles(engine, new_account) == ["after the outage"]


async def test_a_host_list_moves_on_from_a_host_that_never_answers(database_url: str) -> None:
    """libpq's rule, which asyncpg alone does not follow: each host of a list gets the whole
    connect timeout, so a primary that silently drops packets leaves the next host tried, by
    the pool and by the LISTEN session alike."""
    async with running_proxy(database_url) as dead, running_proxy(database_url) as alive:
        dead.black_hole()
        both = f"127.0.0.1:{dead.port},127.0.0.1:{alive.port}"
        url = alive.url.replace(f"127.0.0.1:{alive.port}", both)
        settings = make_settings(url, db_connect_timeout_seconds=1)
        database = Database.from_settings(settings)
        try:
            started = time.monotonic()
            await database.ping()
            pooled_after = time.monotonic() - started
            listener = await connect_outside_pool(settings, settings.database)
            await listener.close()
        finally:
            await database.dispose()

    # The silent host's timeout, then the next host at once.
    assert 1 <= pooled_after < 1 + 5


async def test_a_host_list_stops_at_a_configuration_error(database_url: str) -> None:
    """A host that answers but refuses the session for a reason no other host would fix (here
    a database that does not exist) is reported at once, not hidden behind the next host's
    timeout, as libpq does."""
    async with running_proxy(database_url) as reachable, running_proxy(database_url) as silent:
        silent.black_hole()
        both = f"127.0.0.1:{reachable.port},127.0.0.1:{silent.port}"
        missing = make_url(reachable.url).set(database="no_such_database")
        url = missing.render_as_string(hide_password=False)
        url = url.replace(f"127.0.0.1:{reachable.port}", both)
        settings = make_settings(url, db_connect_timeout_seconds=2)
        started = time.monotonic()
        with pytest.raises(asyncpg.InvalidCatalogNameError):
            await connect_outside_pool(settings, settings.database)
        refused_after = time.monotonic() - started

    assert refused_after < 2
