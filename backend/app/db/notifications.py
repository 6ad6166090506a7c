"""PostgreSQL notifications across processes: one LISTEN session per process, outside the
request pool, that outlives database restarts, and the batched sending of notifications that
announce changes already committed.

PostgreSQL delivers a NOTIFY only to sessions listening at that moment, so a session that was
lost misses what was sent until it is back. The listener therefore runs ``on_connect`` after
every (re)connect, once LISTEN is in place: the caller reloads there whatever may have changed
while nobody listened, and a notification sent meanwhile is queued, not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any

import asyncpg
import structlog
from sqlalchemy import Text, bindparam, func, select

from app.db.engine import DriverConnection
from app.db.errors import DatabaseStartupError, translate_database_error
from app.db.startup import FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS, retry_until_deadline
from app.db.statements import compile_statement

logger = structlog.get_logger("app.db")

Connect = Callable[[], Awaitable[DriverConnection]]
OnConnect = Callable[[DriverConnection], Awaitable[None]]
Callback = Callable[[str], None]
Execute = Callable[..., Awaitable[Any]]

# A background reconnect (connect, LISTEN, on_connect) that hangs must not stop the retries.
ATTEMPT_TIMEOUT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 2.0
# A process whose listener has been down this long is not ready (health.py), and ends its event
# streams (live/hub.py): it would accept the tokens of sessions ended elsewhere meanwhile, and
# its streams would stay silent. Short outages, which the listener rides out by reconnecting,
# change neither.
LOST_TOO_LONG_SECONDS = 10.0


class NotificationListener:
    """One dedicated connection (outside the request pool) that LISTENs on some channels.

    ``connect`` opens the connection (engine.connect_outside_pool), ``channels`` maps each
    channel to the callback that gets a notification's payload, and ``on_connect`` runs on the
    connection after each LISTEN. A lost connection is noticed from the socket (asyncpg's
    termination listener) or, for deaths no socket reports, from a ``SELECT 1`` every
    ``keepalive_seconds`` that must answer within as long; it is then reopened with capped
    exponential backoff for as long as the listener runs.
    """

    def __init__(
        self,
        connect: Connect,
        channels: Mapping[str, Callback],
        on_connect: OnConnect | None = None,
        keepalive_seconds: float = 5.0,
    ) -> None:
        if not channels:
            raise ValueError("a listener needs at least one channel")
        if keepalive_seconds <= 0:
            raise ValueError("keepalive_seconds must be positive")
        self._connect = connect
        self._channels = dict(channels)
        self._on_connect = on_connect
        self._keepalive_seconds = keepalive_seconds
        self._connection: DriverConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost_at: float | None = None  # the loop's time the connection was lost

    @property
    def connected(self) -> bool:
        """Listening right now (LISTEN and on_connect done, the connection not known lost)."""
        return self._connection is not None and not self._connection.is_closed()

    def seconds_disconnected(self) -> float:
        """How long the running listener has been without its connection (0 while listening):
        for the readiness probe, since whatever is notified meanwhile reaches this process only
        once it reconnects."""
        if self._lost_at is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._lost_at

    def lost_too_long(self) -> bool:
        return self.seconds_disconnected() > LOST_TOO_LONG_SECONDS

    async def start(self, deadline_seconds: float) -> None:
        """Connect, LISTEN and run on_connect, retrying with backoff for up to
        ``deadline_seconds`` (each attempt gets half a second at least); then keep listening
        in a background task until `stop`.

        Raises DatabaseStartupError when the deadline passes first, or at once on an error
        retrying will not fix (a refused login, a missing database, on_connect's own bug).
        """
        if self._task is not None:
            raise RuntimeError("the listener is already running")
        connection, attempts = await retry_until_deadline(
            self._open,
            deadline_seconds,
            not_ready_event="notification_listener_not_ready",
            refused=lambda exc: DatabaseStartupError(
                f"Listening for notifications failed: {_describe(exc)}"
            ),
            unreachable=lambda exc, attempts: DatabaseStartupError(
                f"Could not listen for notifications within {deadline_seconds:g}s "
                f"({attempts} attempts): {_describe(exc)}"
            ),
            keep_refusal_cause=True,
        )
        self._connected(connection, attempts)
        self._task = asyncio.create_task(self._run(connection), name="notification-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection; safe to call at any time, and again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # our own cancellation still propagates
        connection, self._connection = self._connection, None
        if connection is not None:
            # A close() that fails has aborted the connection: closed either way.
            with contextlib.suppress(Exception):
                await connection.close(timeout=CLOSE_TIMEOUT_SECONDS)

    async def _open(self) -> DriverConnection:
        connection = await self._connect()
        try:
            for channel, callback in self._channels.items():
                await connection.add_listener(channel, _deliver_to(channel, callback))
            if self._on_connect is not None:
                await self._on_connect(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def _connected(self, connection: DriverConnection, attempt: int) -> None:
        self._connection = connection
        self._lost_at = None
        logger.info(
            "notification_listener_connected",
            attempt=attempt,
            channels=sorted(self._channels),
            server_pid=connection.get_server_pid(),
        )

    async def _run(self, connection: DriverConnection) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_SECONDS
        while True:
            connected_at = loop.time()
            reason = await self._watch(connection)
            self._connection = None
            self._lost_at = loop.time()
            connection.terminate()
            logger.warning("notification_listener_lost", **reason)
            if loop.time() - connected_at >= MAX_RETRY_SECONDS:
                # It had been up a while: a new outage. One that died young keeps the longer
                # delay, so a server that accepts and drops at once is not hammered.
                delay = FIRST_RETRY_SECONDS
            attempt = 0
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                attempt += 1
                try:
                    async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                        connection = await self._open()
                    break
                except Exception as exc:
                    logger.warning(
                        "notification_listener_reconnect_failed",
                        attempt=attempt,
                        error=_describe(exc),
                        retry_in_s=delay,
                        # Not an outage (on_connect's own bug, say): the traceback too.
                        exc_info=translate_database_error(exc) is None,
                    )
            self._connected(connection, attempt)

    async def _watch(self, connection: DriverConnection) -> dict[str, Any]:
        """Return once ``connection`` is lost, with why (for the log)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        while not connection.is_closed():
            try:
                async with asyncio.timeout(self._keepalive_seconds):
                    await lost.wait()
            except TimeoutError:
                pass
            else:
                break
            try:
                await connection.execute("SELECT 1", timeout=self._keepalive_seconds)
            except Exception as exc:
                return {"reason": "keepalive_failed", "error": _describe(exc)}
        return {"reason": "connection_closed"}


def _deliver_to(channel: str, callback: Callback) -> Callable[[Any, int, str, object], None]:
    """asyncpg's listener for ``callback``: a callback that raises is logged, and the
    connection (and every other callback) goes on."""

    def deliver(_connection: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            callback(str(payload))
        except Exception:
            logger.exception("notification_callback_failed", channel=channel)

    return deliver


def _describe(exc: BaseException) -> str:
    """The error's class, and for one the server sent its message (never the password)."""
    name = type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        return f"{name}: {exc}"
    return name


# A notification in a transaction of its own. It writes no WAL before its commit, so PostgreSQL
# commits it without waiting for a flush (pg_stat_wal: 300 of them, 3 syncs).
NOTIFY = compile_statement(
    select(func.pg_notify(bindparam("channel", type_=Text), bindparam("payload", type_=Text)))
)
# PostgreSQL refuses a payload of 8,000 bytes or more.
MAX_PAYLOAD_BYTES = 7999
# A payload that announces a change to every key of the channel.
EVERY_KEY = "*"
# Keys waiting to be sent on one channel (the database unreachable for a while): past this many,
# one "*" stands for them all.
MAX_PENDING_KEYS = 10_000


class NotificationSender:
    """Announces committed changes to every process's listener: ``send(channel, key)`` after
    the change has committed, and the listeners get ``key`` (several keys, comma-separated).

    Why not NOTIFY in the changing transaction (a trigger): PostgreSQL serializes the commits
    of all transactions that notified, in the whole cluster, from before their commit record
    to after its flush (one lock), which cost the bare reference a third of its writes
    (bench/RESULTS.md). Here a change only adds its key to a set; one NOTIFY at a time per
    process carries every key gathered meanwhile (ASCII keys), in a transaction that does not
    wait for a flush, so the lock is held briefly, at most once per round trip and process.

    A NOTIFY that fails is retried with backoff, its keys kept. A process that dies between a
    change's commit and its announcement (a round trip) leaves it unannounced: the other
    processes learn of it with the next change of the same key.
    """

    def __init__(self, execute: Execute) -> None:
        self._execute = execute  # Database.fetch_value
        self._pending: dict[str, set[str]] = {}
        self._sending: asyncio.Task[None] | None = None
        self._closed = False

    def send(self, channel: str, key: str) -> None:
        if self._closed:
            return  # shutting down: the other processes' listeners reconnect to a new one
        self._add(channel, {key})
        if self._sending is None:
            # A fresh context: it sends for every request since, not the one that started it.
            self._sending = asyncio.create_task(
                self._send_pending(), name="notification-sender", context=contextvars.Context()
            )

    async def stop(self) -> None:
        """Send what is pending (a write acknowledged just before shutdown is still told), for
        a short while at most; nothing is sent after."""
        self._closed = True
        sending = self._sending
        if sending is not None:
            _, unfinished = await asyncio.wait([sending], timeout=CLOSE_TIMEOUT_SECONDS)
            if unfinished:
                sending.cancel()
                await asyncio.wait([sending])

    def _add(self, channel: str, keys: set[str]) -> None:
        pending = self._pending.setdefault(channel, set())
        if EVERY_KEY in pending:
            return
        pending |= keys
        if EVERY_KEY in pending or len(pending) > MAX_PENDING_KEYS:
            self._pending[channel] = {EVERY_KEY}

    async def _send_pending(self) -> None:
        delay = FIRST_RETRY_SECONDS
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                try:
                    for channel, keys in pending.items():
                        for payload in _payloads(keys):
                            await self._execute(NOTIFY, channel=channel, payload=payload)
                except Exception as exc:
                    # Not sent, or not known to be: kept and sent again (twice is harmless),
                    # since the listeners may be fine and would otherwise never hear of it.
                    for channel, keys in pending.items():
                        self._add(channel, keys)
                    logger.warning("notification_not_sent", error=_describe(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
                else:
                    delay = FIRST_RETRY_SECONDS
        finally:
            self._sending = None


def _payloads(keys: Collection[str]) -> Iterator[str]:
    """The keys, comma-separated, in as few payloads as PostgreSQL accepts ("*" alone: it
    stands for all of them)."""
    if EVERY_KEY in keys:
        yield EVERY_KEY
        return
    payload = ""
    for key in keys:
        if payload and len(payload) + 1 + len(key) > MAX_PAYLOAD_BYTES:
            yield payload
            payload = ""
        payload = f"{payload},{key}" if payload else key
    if payload:
        yield payload
