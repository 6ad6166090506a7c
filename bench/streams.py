"""`python -m bench --streams`: live-update fan-out on one worker (GET /api/{user_id}/events).

One service process (WEB_CONCURRENCY=1) holds ``users x per_user`` event streams open (100 x 10
by default: the per-user cap, EVENTS_MAX_STREAMS_PER_USER) while a writer creates ``rate`` tasks
a second for ``duration`` seconds, round-robin over those users, on a fixed schedule (a slow
answer does not slow the writes down). Every stream must receive every write of its user, once.

Each write's acknowledgement (its 201 read by the writer) and each stream's receipt of that
task's event are stamped with one monotonic clock in this one process, so a delivery latency
is receipt minus acknowledgement; it is negative when the event outran the writer's response
(PostgreSQL notifies at commit, before the service answers the write). The task is matched by
its id, chosen by the writer.

The client is raw asyncio streams on uvloop, not an HTTP library, and it reports its own CPU
and its event loop's lag next to the server's CPU: a client near a full core, or a loop that
lags, would have been measured instead of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import uvloop

from bench.load import log
from bench.processes import (
    Server,
    machine_cpu_seconds,
    raise_open_files_limit,
    tree_cpu_seconds,
)

# Streams opened at once: enough to open 1,000 in seconds, few enough not to measure a storm.
OPEN_CONCURRENCY = 50
OPEN_TIMEOUT_S = 120.0
# Quiet time after the streams open and after they close, before memory is read.
SETTLE_S = 2.0
# How long the last writes' events may take before the missing ones count as lost.
DRAIN_TIMEOUT_S = 10.0
# Keep-alive connections the writer sends on; far more than 100 writes/s at ~10 ms need.
WRITER_CONNECTIONS = 20
WRITE_TIMEOUT_S = 30.0
LOOP_LAG_PERIOD_S = 0.01
# Above these the client, not the server, may have set the numbers.
CLIENT_BUSY_PCT = 70.0
CLIENT_LAG_P99_MS = 10.0


@dataclass(frozen=True)
class StreamsPlan:
    users: int
    per_user: int
    rate: float  # writes per second, all users together
    duration: float  # seconds of writes


@dataclass(frozen=True)
class Account:
    id: str
    token: str


def accounts_from(data_file: Path, count: int) -> list[Account]:
    """The first ``count`` users of a wrk data file ("<id> <token> ..." per line)."""
    accounts = []
    for line in data_file.read_text().splitlines()[:count]:
        user_id, token, _ = line.split(" ", 2)
        accounts.append(Account(user_id, token))
    if len(accounts) < count:
        raise ValueError(f"{data_file} holds {len(accounts)} users, not {count}")
    return accounts


class HttpError(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """A response's status and headers (names lower-cased)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(b" ", 2)[1]), headers


def _request(method: str, path: str, host: str, token: str, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {token}",
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    else:
        lines.append("Accept: text/event-stream")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class EventStream:
    """One open /events response, read with just enough HTTP/1.1 (chunked) and SSE parsing for
    what the service sends: ``id: `` and ``data: `` fields, comments, blank-line dispatch."""

    def __init__(self, user: int) -> None:
        self.user = user
        self.received: list[tuple[str, float]] = []  # (task id, monotonic time of receipt)
        self.out_of_order = 0  # events whose id was not above the previous one's
        self.ended_by_server = False
        self.first_event = asyncio.Event()
        self._last_id = 0
        self._partial = b""  # a line split across chunks
        self._id = 0
        self._data: bytes | None = None
        self._closing = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, host: str, port: int, account: Account) -> None:
        """Connect and wait for the first chunk: by then the service has joined the stream to
        its user's channel and read its cursor, so every later write reaches it."""
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self._writer.write(
            _request("GET", f"/api/{account.id}/events", f"{host}:{port}", account.token)
        )
        status, headers = await _read_head(self._reader)
        if status != 200:
            raise HttpError(f"status {status}")
        if headers.get(b"transfer-encoding") != b"chunked":
            raise HttpError("not a chunked response")
        first = await self._next_chunk()
        if first is None:
            raise HttpError("ended before its first chunk")
        self._parse(first, time.monotonic())

    async def read_until_closed(self) -> None:
        try:
            while (chunk := await self._next_chunk()) is not None:
                self._parse(chunk, time.monotonic())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.ended_by_server = not self._closing

    def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()

    async def _next_chunk(self) -> bytes | None:
        assert self._reader is not None
        size_line = await self._reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return None
        return (await self._reader.readexactly(size + 2))[:-2]

    def _parse(self, chunk: bytes, now: float) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if not line:
                self._dispatch(now)
            elif line.startswith(b"id: "):
                self._id = int(line[4:])
            elif line.startswith(b"data: "):
                self._data = line[6:]
            # "event: " names and ": " comments carry nothing this benchmark checks.

    def _dispatch(self, now: float) -> None:
        if self._data is None:
            return
        change = orjson.loads(self._data)
        task_id = change["task"]["id"] if change["op"] == "upsert" else change["task_id"]
        self.received.append((task_id, now))
        self.first_event.set()
        if self._id <= self._last_id:
            self.out_of_order += 1
        self._last_id = self._id
        self._data = None


class WriterConnection:
    """One keep-alive connection for the writer's POSTs (responses carry Content-Length)."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, token: str, body: bytes) -> int:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        host = f"{self._host}:{self._port}"
        self._writer.write(_request("POST", path, host, token, body))
        try:
            status, headers = await _read_head(self._reader)
            await self._reader.readexactly(int(headers[b"content-length"]))
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise
        if headers.get(b"connection") == b"close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Write:
    user: int
    task_id: str
    scheduled: float
    sent: float = 0.0
    acked: float | None = None
    status: int = 0  # 0: no answer (a connection error or the timeout)


def _percentile(ordered: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of values sorted ascending."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _ms_summary(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50_ms": _ms(_percentile(ordered, 0.50)),
        "p99_ms": _ms(_percentile(ordered, 0.99)),
        "max_ms": _ms(ordered[-1] if ordered else None),
        "min_ms": _ms(ordered[0] if ordered else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of one process, from /proc/<pid>/status."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class StreamsResult:
    plan: StreamsPlan
    streams_opened: int
    streams_failed: dict[str, int]  # reason -> count
    open_seconds: float
    writes_scheduled: int
    writes_acked: int  # answered 201
    writes_failed: dict[str, int]  # status (or "no answer") -> count
    write_seconds: float  # from the first write's schedule to the last one's answer
    write_latency: dict[str, float | None]  # sent -> 201
    sent_late_max_ms: float  # how far behind its schedule the latest write was sent
    events_expected: int
    events_delivered: int
    events_missing: int
    events_duplicate: int
    events_unexpected: int  # a task the writer did not get a 201 for
    events_out_of_order: int
    delivery_from_ack: dict[str, float | None]
    delivery_from_send: dict[str, float | None]
    last_stream_from_ack: dict[str, float | None]  # per write: its user's slowest stream
    negative_from_ack: int  # receipts before the writer read the 201
    streams_ended_by_server: int
    rss_kib: dict[str, int | None]
    cpu_pct_of_one_core: dict[str, float | None]
    loop_lag: dict[str, float | None]
    close_reasons: dict[str, int] = field(default_factory=dict)
    log_warnings: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class StreamsRun:
    """One sitting: open the streams, write on schedule, wait for the events, close."""

    def __init__(
        self, server: Server, accounts: list[Account], plan: StreamsPlan, pg_pid: int | None
    ) -> None:
        self.server = server
        self.host = "127.0.0.1"
        self.accounts = accounts
        self.plan = plan
        self.pg_pid = pg_pid
        self.streams: list[EventStream] = []
        self.readers: list[asyncio.Task[None]] = []
        self.failed: Counter[str] = Counter()
        self.writes: list[Write] = []
        self.lags: list[float] = []

    async def run(self) -> StreamsResult:
        await self._warm_up()
        await asyncio.sleep(SETTLE_S)
        # With one worker uvicorn serves in the process it was started as: that is the worker.
        rss = {"before_streams": rss_kib(self.server.pid)}
        log(f"streams: opening {self.plan.users * self.plan.per_user} streams")
        started = time.monotonic()
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await self._open_all()
        open_seconds = time.monotonic() - started
        log(f"streams: {len(self.streams)} open in {open_seconds:.1f}s, failed {dict(self.failed)}")
        await asyncio.sleep(SETTLE_S)
        rss["streams_open"] = rss_kib(self.server.pid)

        # No collector pauses in the client while it stamps times (reference counting still
        # frees what it drops): a pause would be counted as delivery latency.
        gc.collect()
        gc.disable()
        try:
            cpu_before = self._cpu()
            lag_watch = asyncio.create_task(self._watch_loop_lag())
            log(f"streams: writing {self.plan.rate:g}/s for {self.plan.duration:g}s")
            write_seconds = await self._write_all()
            expected = self._expected_count()
            log(f"streams: writes done; waiting for {expected} events")
            await self._drain(expected)
            lag_watch.cancel()
            cpu = self._cpu_pct(cpu_before, self._cpu())
        finally:
            gc.enable()
        rss["end_streams_open"] = rss_kib(self.server.pid)

        for stream in self.streams:
            stream.close()
        await asyncio.wait(self.readers, timeout=10)
        await asyncio.sleep(SETTLE_S)
        rss["after_close"] = rss_kib(self.server.pid)
        return self._result(open_seconds, write_seconds, rss, cpu)

    async def _warm_up(self) -> None:
        """One stream, one write and its event, so that the memory measured before and after
        opening the streams differs by the streams, not by the routes' first use."""
        stream = EventStream(0)
        await stream.open(self.host, self.server.port, self.accounts[0])
        reader = asyncio.create_task(stream.read_until_closed())
        pool: asyncio.Queue[WriterConnection] = asyncio.Queue()
        pool.put_nowait(WriterConnection(self.host, self.server.port))
        await self._write(Write(0, str(uuid.uuid4()), time.monotonic()), pool)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.first_event.wait(), DRAIN_TIMEOUT_S)
        pool.get_nowait().close()
        stream.close()
        await asyncio.wait([reader], timeout=10)

    async def _open_all(self) -> None:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def open_one(user: int) -> None:
            async with gate:
                stream = EventStream(user)
                try:
                    await stream.open(self.host, self.server.port, self.accounts[user])
                except (HttpError, OSError, asyncio.IncompleteReadError) as exc:
                    self.failed[str(exc) or type(exc).__name__] += 1
                    stream.close()
                    return
                self.streams.append(stream)
                self.readers.append(asyncio.create_task(stream.read_until_closed()))

        # Round by round, so each user's streams open at different moments, as tabs would.
        await asyncio.gather(
            *(open_one(user) for _ in range(self.plan.per_user) for user in range(self.plan.users))
        )

    async def _write_all(self) -> float:
        pool: asyncio.Queue[WriterConnection] = asyncio.Queue()
        for _ in range(WRITER_CONNECTIONS):
            pool.put_nowait(WriterConnection(self.host, self.server.port))
        count = round(self.plan.rate * self.plan.duration)
        start = time.monotonic()
        pending = []
        for number in range(count):
            scheduled = start + number / self.plan.rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            write = Write(number % self.plan.users, str(uuid.uuid4()), scheduled)
            self.writes.append(write)
            pending.append(asyncio.create_task(self._write(write, pool)))
        await asyncio.gather(*pending)
        while not pool.empty():
            pool.get_nowait().close()
        return time.monotonic() - start

    async def _write(self, write: Write, pool: asyncio.Queue[WriterConnection]) -> None:
        account = self.accounts[write.user]
        body = orjson.dumps({"id": write.task_id, "title": f"bench event {write.task_id[:8]}"})
        connection = await pool.get()
        try:
            write.sent = time.monotonic()
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                write.status = await connection.post(
                    f"/api/{account.id}/tasks", account.token, body
                )
            write.acked = time.monotonic()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, KeyError, ValueError):
            write.status = 0
        finally:
            pool.put_nowait(connection)

    def _expected_count(self) -> int:
        per_user = Counter(stream.user for stream in self.streams)
        return sum(per_user[write.user] for write in self.writes if write.status == 201)

    async def _drain(self, expected: int) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if sum(len(stream.received) for stream in self.streams) >= expected:
                return
            await asyncio.sleep(0.05)

    async def _watch_loop_lag(self) -> None:
        """How late the loop wakes a sleeper: the time a ready event waits for this client."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_LAG_PERIOD_S)
            self.lags.append(max(0.0, loop.time() - before - LOOP_LAG_PERIOD_S))

    def _cpu(self) -> dict[str, float | None]:
        busy, steal = machine_cpu_seconds()
        return {
            "wall": time.monotonic(),
            "server": self.server.cpu_seconds(),
            "postgresql": tree_cpu_seconds(self.pg_pid),
            "client": time.process_time(),
            "machine": busy,
            "steal": steal,
        }

    @staticmethod
    def _cpu_pct(
        before: dict[str, float | None], after: dict[str, float | None]
    ) -> dict[str, float | None]:
        def used(name: str) -> float | None:
            first, last = before[name], after[name]
            return None if first is None or last is None else last - first

        wall = used("wall") or 1.0
        ours = sum(used(name) or 0.0 for name in ("server", "postgresql", "client"))
        shares = {
            name: None if (seconds := used(name)) is None else round(100 * seconds / wall, 1)
            for name in ("server", "postgresql", "client", "steal")
        }
        shares["other"] = round(100 * max(0.0, (used("machine") or 0.0) - ours) / wall, 1)
        return shares

    def _result(
        self,
        open_seconds: float,
        write_seconds: float,
        rss: dict[str, int | None],
        cpu: dict[str, float | None],
    ) -> StreamsResult:
        acked = {write.task_id: write for write in self.writes if write.status == 201}
        streams_of: Counter[int] = Counter(stream.user for stream in self.streams)
        from_ack: list[float] = []
        from_send: list[float] = []
        slowest: dict[str, float] = {}
        delivered = duplicate = unexpected = 0
        for stream in self.streams:
            seen: set[str] = set()
            for task_id, received in stream.received:
                write = acked.get(task_id)
                if write is None or write.user != stream.user:
                    unexpected += 1
                elif task_id in seen:
                    duplicate += 1
                else:
                    seen.add(task_id)
                    delivered += 1
                    assert write.acked is not None
                    from_ack.append(received - write.acked)
                    from_send.append(received - write.sent)
                    slowest[task_id] = max(slowest.get(task_id, -1e9), received - write.acked)
        expected = sum(streams_of[write.user] for write in acked.values())
        failed = Counter(
            "no answer" if write.status == 0 else str(write.status)
            for write in self.writes
            if write.status != 201
        )
        return StreamsResult(
            plan=self.plan,
            streams_opened=len(self.streams),
            streams_failed=dict(self.failed),
            open_seconds=round(open_seconds, 2),
            writes_scheduled=len(self.writes),
            writes_acked=len(acked),
            writes_failed=dict(failed),
            write_seconds=round(write_seconds, 2),
            write_latency=_ms_summary(
                [w.acked - w.sent for w in acked.values() if w.acked is not None]
            ),
            sent_late_max_ms=round(
                1000 * max((w.sent - w.scheduled for w in self.writes), default=0.0), 2
            ),
            events_expected=expected,
            events_delivered=delivered,
            events_missing=expected - delivered,
            events_duplicate=duplicate,
            events_unexpected=unexpected,
            events_out_of_order=sum(stream.out_of_order for stream in self.streams),
            delivery_from_ack=_ms_summary(from_ack),
            delivery_from_send=_ms_summary(from_send),
            last_stream_from_ack=_ms_summary(list(slowest.values())),
            negative_from_ack=sum(1 for value in from_ack if value < 0),
            streams_ended_by_server=sum(1 for stream in self.streams if stream.ended_by_server),
            rss_kib=rss,
            cpu_pct_of_one_core=cpu,
            loop_lag=_ms_summary(self.lags),
        )


def close_reasons(log_path: Path) -> dict[str, int]:
    """Why the service says its streams ended (its `event_stream_closed` log lines)."""
    reasons: Counter[str] = Counter()
    with contextlib.suppress(OSError), log_path.open("rb") as lines:
        for line in lines:
            if b"event_stream_closed" in line:
                with contextlib.suppress(ValueError):
                    reasons[str(orjson.loads(line).get("reason"))] += 1
    return dict(reasons)


def measure(
    server: Server,
    accounts: list[Account],
    plan: StreamsPlan,
    pg_pid: int | None,
    errors_log: Path,
) -> StreamsResult:
    # 1,000 sockets here, more than the usual soft limit of 1,024 descriptors allows with the rest.
    raise_open_files_limit()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(StreamsRun(server, accounts, plan, pg_pid).run())
    result.close_reasons = close_reasons(server.log_path)
    _, result.log_warnings = server.take_log(errors_log)
    return result


def _fmt_ms(summary: dict[str, float | None], *keys: str) -> str:
    return " / ".join("n/a" if summary[key] is None else f"{summary[key]:,.1f}" for key in keys)


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:,.1f} MiB"


def title(plan: StreamsPlan) -> str:
    return (
        f"# Event streams: {plan.users * plan.per_user:,} open on one worker ({plan.users} users "
        f"x {plan.per_user}), {plan.rate:g} task writes/s for {plan.duration:g} s"
    )


def table(result: StreamsResult) -> str:
    plan = result.plan
    rss = result.rss_kib
    opened, before = rss["streams_open"], rss["before_streams"]
    per_stream = (
        f"{(opened - before) / result.streams_opened:,.1f} KiB a stream"
        if result.streams_opened and opened is not None and before is not None
        else "n/a KiB a stream"
    )
    cpu = result.cpu_pct_of_one_core
    rows = [
        (
            "streams open (users x per user)",
            f"{result.streams_opened:,} of {plan.users * plan.per_user:,} ({plan.users} x "
            f"{plan.per_user}) in {result.open_seconds:.1f} s; failed: "
            f"{result.streams_failed or 'none'}",
        ),
        (
            "writes (create a task)",
            f"{result.writes_acked:,} answered 201 of {result.writes_scheduled:,} scheduled at "
            f"{plan.rate:g}/s for {plan.duration:g} s (done in {result.write_seconds:.1f} s); "
            f"failed: {result.writes_failed or 'none'}; sent late by at most "
            f"{result.sent_late_max_ms:,.1f} ms",
        ),
        (
            "write latency, sent → 201, p50 / p99 / max ms",
            _fmt_ms(result.write_latency, "p50_ms", "p99_ms", "max_ms"),
        ),
        (
            "events delivered / expected",
            f"{result.events_delivered:,} / {result.events_expected:,} (missing "
            f"{result.events_missing}, duplicates {result.events_duplicate}, unexpected "
            f"{result.events_unexpected}, out of order {result.events_out_of_order})",
        ),
        (
            "delivery latency, 201 → event, p50 / p99 / max ms",
            _fmt_ms(result.delivery_from_ack, "p50_ms", "p99_ms", "max_ms")
            + f" (min {_fmt_ms(result.delivery_from_ack, 'min_ms')}; "
            f"{result.negative_from_ack:,} events arrived before their 201)",
        ),
        (
            "delivery latency, sent → event, p50 / p99 / max ms",
            _fmt_ms(result.delivery_from_send, "p50_ms", "p99_ms", "max_ms"),
        ),
        (
            "a write's slowest stream, 201 → event, p50 / p99 / max ms",
            _fmt_ms(result.last_stream_from_ack, "p50_ms", "p99_ms", "max_ms"),
        ),
        (
            "streams the server ended early / why they ended (service log)",
            f"{result.streams_ended_by_server} / {result.close_reasons or 'none logged'}",
        ),
        (
            "service RSS (VmRSS): before streams / open / end / after closing",
            " / ".join(
                _mib(rss[key])
                for key in ("before_streams", "streams_open", "end_streams_open", "after_close")
            )
            + f" ({per_stream})",
        ),
        (
            "CPU while writing and draining, % of one core",
            f"service {cpu['server']}, PostgreSQL {cpu['postgresql']}, this client "
            f"{cpu['client']}, other processes {cpu['other']}, steal {cpu['steal']}",
        ),
        (
            "client event-loop lag, p50 / p99 / max ms",
            _fmt_ms(result.loop_lag, "p50_ms", "p99_ms", "max_ms"),
        ),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def verdict(result: StreamsResult) -> str:
    lines = []
    complete = result.events_missing == 0 and result.events_duplicate == 0
    lines.append(
        "- every stream received every write of its user exactly once: "
        + ("yes" if complete and not result.events_unexpected else "NO")
    )
    if result.streams_failed or result.writes_failed or result.streams_ended_by_server:
        lines.append("- WARNING: streams failed to open, writes failed or streams ended early")
    client = result.cpu_pct_of_one_core.get("client") or 0.0
    other = result.cpu_pct_of_one_core.get("other") or 0.0
    lag = result.loop_lag.get("p99_ms") or 0.0
    if client > CLIENT_BUSY_PCT:
        lines.append(
            f"- WARNING: the client may have been the bottleneck: it used {client} % of one "
            f"core (loop lag p99 {lag} ms), so latencies include its own queueing"
        )
    elif lag > CLIENT_LAG_P99_MS:
        lines.append(
            f"- WARNING: the client's loop lagged (p99 {lag} ms) though it used only {client} % "
            f"of one core: the CPUs were contended (other processes {other} % of one core), so "
            "latencies include the time this client waited to be scheduled"
        )
    else:
        lines.append(
            f"- the client was not the bottleneck: {client} % of one core, event-loop lag p99 "
            f"{lag} ms (limits {CLIENT_BUSY_PCT:g} %, {CLIENT_LAG_P99_MS:g} ms)"
        )
    if result.log_warnings:
        lines.append(
            f"- the service logged {result.log_warnings} warning(s) or error(s) "
            "(bench/out/server-warnings.log)"
        )
    return "\n".join(lines)
