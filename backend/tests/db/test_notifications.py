"""The notification listener on a real PostgreSQL: delivery, the on_connect hook, callbacks that
raise, and a connection that is terminated, silently lost, or taken down by a restart."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.db.database import Database
from app.db.engine import DriverConnection, connect_outside_pool
from app.db.errors import DatabaseStartupError
from app.db.notifications import NotificationListener
from app.db.statements import compile_statement
from app.settings import Settings
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogOutput
from tests.fixtures.processes import PostgresCluster, free_port
from tests.fixtures.tcp_proxy import running_proxy

# A private cluster is restarted and stopped here.
pytestmark = pytest.mark.slow

DELIVERY_TIMEOUT_SECONDS = 5.0
RECONNECT_TIMEOUT_SECONDS = 10.0


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def notify(url: str, channel: str, payload: str) -> None:
    """NOTIFY from a connection of its own, as another process would."""
    connection = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        await connection.execute("SELECT pg_notify($1, $2)", channel, payload)
    finally:
        await connection.close()


async def fetch_value(url: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


def ignore(_payload: str) -> None:
    pass


async def eventually(condition: Callable[[], Awaitable[object]], within_seconds: float = 5) -> bool:
    """Whether ``condition`` comes true within ``within_seconds`` (polled)."""
    for _ in range(int(within_seconds / 0.02)):
        if await condition():
            return True
        await asyncio.sleep(0.02)
    return bool(await condition())


async def not_connected(listener: NotificationListener) -> bool:
    return not listener.connected


def new_channel() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@dataclass
class Recorder:
    """What a listener delivered, and each connection it (re)made (held here, so only the
    listener's own close ends one: asyncpg terminates a connection it garbage-collects)."""

    received: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    connections: list[DriverConnection] = field(default_factory=list)
    server_pids: list[int] = field(default_factory=list)
    connected: asyncio.Condition = field(default_factory=asyncio.Condition)

    def callback(self, payload: str) -> None:
        self.received.put_nowait(payload)

    async def on_connect(self, connection: DriverConnection) -> None:
        self.connections.append(connection)
        self.server_pids.append(connection.get_server_pid())
        async with self.connected:
            self.connected.notify_all()

    async def next_payload(self) -> str:
        async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
            return await self.received.get()

    async def wait_for_connections(self, count: int) -> float:
        """Seconds until the listener has connected ``count`` times (bounded)."""
        started = time.monotonic()
        async with asyncio.timeout(RECONNECT_TIMEOUT_SECONDS), self.connected:
            await self.connected.wait_for(lambda: len(self.connections) >= count)
        return time.monotonic() - started


StartListener = Callable[..., Awaitable[NotificationListener]]


@pytest.fixture
async def start_listener() -> AsyncIterator[StartListener]:
    """Start a listener on ``settings.listen_database``; each is stopped after the test."""
    listeners: list[NotificationListener] = []

    async def _start(
        settings: Settings,
        channels: Mapping[str, Callable[[str], None]],
        on_connect: Callable[[DriverConnection], Awaitable[None]] | None = None,
        keepalive_seconds: float = 5.0,
        connect: Callable[[], Awaitable[DriverConnection]] | None = None,
    ) -> NotificationListener:
        listener = NotificationListener(
            connect or functools.partial(connect_outside_pool, settings, settings.listen_database),
            channels,
            on_connect=on_connect,
            keepalive_seconds=keepalive_seconds,
        )
        listeners.append(listener)
        await listener.start(deadline_seconds=5)
        return listener

    yield _start
    for listener in listeners:
        await listener.stop()


async def test_a_notify_from_another_connection_reaches_the_callback(
    database_url: str, start_listener: StartListener
) -> None:
    channel, recorder = new_channel(), Recorder()
    listener = await start_listener(
        make_settings(database_url), {channel: recorder.callback}, recorder.on_connect
    )
    assert listener.connected

    await notify(database_url, channel, "hello")
    await notify(database_url, new_channel(), "not for us")
    await notify(database_url, channel, "é ünïcode")

    assert await recorder.next_payload() == "hello"
    assert await recorder.next_payload() == "é ünïcode"
    [pid] = recorder.server_pids
    await listener.stop()
    await listener.stop()  # idempotent
    assert not listener.connected
    assert await eventually(  # the server session ends a moment after the close
        lambda: fetch_value(
            database_url, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid
        )
    )


async def test_the_listener_connects_like_the_pool_without_taking_a_slot_of_it(
    database_url: str, start_listener: StartListener
) -> None:
    url = make_url(database_url).update_query_dict({"application_name": "listen-test"})
    settings = make_settings(
        url.render_as_string(hide_password=False),
        db_statement_timeout_seconds=3,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=0.5,
    )
    seen: dict[str, str] = {}

    async def on_connect(connection: DriverConnection) -> None:
        seen["statement_timeout"] = await connection.fetchval("SHOW statement_timeout")
        seen["application_name"] = await connection.fetchval("SHOW application_name")

    database = Database.from_settings(settings)
    try:
        async with database.connection():  # the pool's only connection is taken
            listener = await start_listener(settings, {new_channel(): ignore}, on_connect)
            assert listener.connected
        assert await database.fetch_value(compile_statement(select(1))) == 1
    finally:
        await database.dispose()
    # The pool's name with a suffix, so pg_stat_activity tells the two apart.
    assert seen == {"statement_timeout": "3s", "application_name": "listen-test-listener"}


async def test_behind_pgbouncer_the_listen_url_is_connected_to_as_postgresql(
    database_url: str, start_listener: StartListener
) -> None:
    """DB_PGBOUNCER speaks of DATABASE_URL: the listener's direct connection still gets the
    timeouts as startup parameters (which a pooled endpoint would refuse)."""
    listen_url = make_url(database_url).update_query_dict({"application_name": "listener"})
    settings = make_settings(
        database_url,  # stands in for the PgBouncer address; never connected to here
        db_pgbouncer=True,
        database_listen_url=listen_url.render_as_string(hide_password=False),
        db_statement_timeout_seconds=3,
    )
    seen: list[str] = []

    async def on_connect(connection: DriverConnection) -> None:
        seen.append(await connection.fetchval("SHOW statement_timeout"))
        seen.append(await connection.fetchval("SHOW application_name"))

    await start_listener(settings, {new_channel(): ignore}, on_connect)

    assert seen == ["3s", "listener"]


async def test_a_notify_sent_during_on_connect_is_received(
    database_url: str, start_listener: StartListener
) -> None:
    """LISTEN comes first: what changes while on_connect reloads is not missed."""
    channel, recorder = new_channel(), Recorder()

    async def on_connect(connection: DriverConnection) -> None:
        await notify(database_url, channel, "during on_connect")

    await start_listener(make_settings(database_url), {channel: recorder.callback}, on_connect)

    assert await recorder.next_payload() == "during on_connect"


async def test_a_raising_callback_is_logged_and_delivery_goes_on(
    database_url: str, start_listener: StartListener, log_output: LogOutput
) -> None:
    failing, other, recorder = new_channel(), new_channel(), Recorder()

    def fragile(payload: str) -> None:
        if payload == "boom":
            raise ValueError("the callback broke")
        recorder.callback(f"fragile:{payload}")

    listener = await start_listener(
        make_settings(database_url), {failing: fragile, other: recorder.callback}
    )
    await notify(database_url, failing, "boom")
    await notify(database_url, failing, "after")
    await notify(database_url, other, "other")

    assert await recorder.next_payload() == "fragile:after"
    assert await recorder.next_payload() == "other"
    assert listener.connected
    [failure] = log_output.records(event="notification_callback_failed")
    assert failure["channel"] == failing
    assert failure["logger"] == "app.db"
    assert "the callback broke" in failure["exception"]


async def test_a_terminated_backend_is_replaced_and_on_connect_runs_again(
    database_url: str, start_listener: StartListener, log_output: LogOutput
) -> None:
    channel, recorder = new_channel(), Recorder()
    listener = await start_listener(
        make_settings(database_url), {channel: recorder.callback}, recorder.on_connect
    )

    assert await fetch_value(
        database_url, "SELECT pg_terminate_backend($1)", recorder.server_pids[0]
    )
    elapsed = await recorder.wait_for_connections(2)

    assert elapsed < 2  # the first retry comes after 0.25 s
    assert listener.connected
    assert recorder.server_pids[1] != recorder.server_pids[0]
    await notify(database_url, channel, "after the kill")
    assert await recorder.next_payload() == "after the kill"
    [lost] = log_output.records(event="notification_listener_lost")
    assert lost["reason"] == "connection_closed"
    connected = log_output.records(event="notification_listener_connected")
    assert [record["server_pid"] for record in connected] == recorder.server_pids


async def test_a_connection_that_goes_silent_is_noticed_by_the_keepalive(
    database_url: str, start_listener: StartListener, log_output: LogOutput
) -> None:
    """Packets black-holed: no socket reports anything, only the keepalive's timeout does."""
    channel, recorder = new_channel(), Recorder()
    async with running_proxy(database_url) as proxy:
        settings = make_settings(proxy.url, db_connect_timeout_seconds=1)
        listener = await start_listener(
            settings, {channel: recorder.callback}, recorder.on_connect, keepalive_seconds=0.5
        )
        proxy.black_hole()
        # Within a keepalive interval and its timeout, and a margin.
        assert await eventually(lambda: not_connected(listener), within_seconds=3)
        [lost] = log_output.records(event="notification_listener_lost")
        assert lost["reason"] == "keepalive_failed"

        await proxy.forward()
        await recorder.wait_for_connections(2)
        await notify(database_url, channel, "after the silence")
        assert await recorder.next_payload() == "after the silence"


async def test_a_database_restart_is_survived(
    pg_cluster: PostgresCluster, start_listener: StartListener
) -> None:
    channel, recorder = new_channel(), Recorder()
    url = pg_cluster.url()
    listener = await start_listener(
        make_settings(url, db_connect_timeout_seconds=1),
        {channel: recorder.callback},
        recorder.on_connect,
    )

    await asyncio.to_thread(pg_cluster.restart, "fast")
    await recorder.wait_for_connections(2)

    assert listener.connected
    await notify(url, channel, "after the restart")
    assert await recorder.next_payload() == "after the restart"


async def test_while_the_database_is_down_reconnects_back_off(
    pg_cluster: PostgresCluster, start_listener: StartListener
) -> None:
    attempts: list[float] = []
    url = pg_cluster.url()
    settings = make_settings(url, db_connect_timeout_seconds=1)

    async def counting_connect() -> DriverConnection:
        attempts.append(time.monotonic())
        return await connect_outside_pool(settings, settings.listen_database)

    channel, recorder = new_channel(), Recorder()
    listener = await start_listener(
        settings, {channel: recorder.callback}, recorder.on_connect, connect=counting_connect
    )
    await asyncio.to_thread(pg_cluster.stop, "fast")
    try:
        stopped = time.monotonic()
        await asyncio.sleep(2)
        assert not listener.connected
        tries = [at - stopped for at in attempts[1:]]
    finally:
        await asyncio.to_thread(pg_cluster.start)

    # 0.25 s, then 0.5 s, then 1 s apart: three tries in two seconds, not a busy loop.
    assert 2 <= len(tries) <= 4, tries
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert all(gap >= 0.4 for gap in gaps), gaps
    assert gaps == sorted(gaps), gaps
    await recorder.wait_for_connections(2)
    await notify(url, channel, "back")
    assert await recorder.next_payload() == "back"


async def test_start_gives_up_at_the_deadline(log_output: LogOutput) -> None:
    settings = make_settings(
        f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", db_connect_timeout_seconds=1
    )
    listener = NotificationListener(
        functools.partial(connect_outside_pool, settings, settings.listen_database),
        {new_channel(): ignore},
    )
    started = time.monotonic()

    with pytest.raises(DatabaseStartupError, match=r"within 1s \(\d attempts\)") as caught:
        await listener.start(deadline_seconds=1)

    assert 0.9 < time.monotonic() - started < 2
    assert "ConnectionRefusedError" in str(caught.value)
    assert not listener.connected
    assert len(log_output.records(event="notification_listener_not_ready")) >= 2
    await listener.stop()


async def test_start_fails_at_once_when_on_connect_fails(database_url: str) -> None:
    async def broken(_connection: DriverConnection) -> None:
        raise KeyError("a bug, not an outage")

    settings = make_settings(database_url)
    listener = NotificationListener(
        functools.partial(connect_outside_pool, settings, settings.listen_database),
        {new_channel(): ignore},
        on_connect=broken,
    )
    started = time.monotonic()

    with pytest.raises(DatabaseStartupError, match="KeyError") as caught:
        await listener.start(deadline_seconds=5)

    assert time.monotonic() - started < 1
    assert isinstance(caught.value.__cause__, KeyError)  # the bug's traceback is kept
    assert not listener.connected
