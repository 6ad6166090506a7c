"""A TCP proxy on 127.0.0.1 in front of the test PostgreSQL, switched by the test between
forwarding, refusing and black-holing: a database that goes away and comes back, for real,
under an app that keeps running.

- ``forward()``: new connections reach the server; connections opened before are cut first
  (a server that came back does not know its old sessions).
- ``refuse()``: the listening socket closes (connect gets ECONNREFUSED) and open connections
  are reset.
- ``black_hole()``: new connections are accepted and never answered; open connections stay
  open but nothing passes any more (a host that silently drops packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import AsyncIterator

from sqlalchemy.engine import make_url

CHUNK = 65536


class Mode(enum.Enum):
    FORWARD = "forward"
    REFUSE = "refuse"
    BLACK_HOLE = "black_hole"


class TcpProxy:
    def __init__(self, upstream_url: str) -> None:
        url = make_url(upstream_url)
        socket_dir = url.query.get("host")
        if url.host:
            self._upstream_tcp: tuple[str, int] | None = (url.host, url.port or 5432)
            self._upstream_unix: str | None = None
        elif isinstance(socket_dir, str):
            self._upstream_tcp = None
            self._upstream_unix = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
        else:
            raise ValueError("the test database URL names neither a host nor a socket")
        self._url = url
        self._server: asyncio.Server | None = None
        self._port = 0
        self._mode = Mode.FORWARD
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The database URL, pointed at the proxy."""
        query = {k: v for k, v in self._url.query.items() if k != "host"}
        return self._url.set(host="127.0.0.1", port=self._port, query=query).render_as_string(
            hide_password=False
        )

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def forward(self) -> None:
        self._mode = Mode.FORWARD
        self._cut_all()
        if self._server is None:
            await self.start()

    async def refuse(self) -> None:
        self._mode = Mode.REFUSE
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._cut_all()
        if server is not None:
            await server.wait_closed()

    def black_hole(self) -> None:
        self._mode = Mode.BLACK_HOLE

    async def close(self) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _cut_all(self) -> None:
        for transport in list(self._transports):
            # abort(): RST, as from a server host that restarted.
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        if self._mode is Mode.REFUSE:
            writer.transport.abort()
            return
        if self._mode is Mode.BLACK_HOLE:
            await self._swallow(reader)
            return
        try:
            if self._upstream_unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._upstream_unix)
            else:
                assert self._upstream_tcp is not None
                up_reader, up_writer = await asyncio.open_connection(*self._upstream_tcp)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(CHUNK):
                if self._mode is Mode.FORWARD:
                    sink.write(data)
                    await sink.drain()
                # Black hole: the bytes are dropped and the connection stays open.
        sink.transport.abort()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass


@contextlib.asynccontextmanager
async def running_proxy(upstream_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(upstream_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def unused_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
