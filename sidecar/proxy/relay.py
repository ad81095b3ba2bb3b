"""The proxy's listener: one upstream connection per client connection, the client's own
session passing through, all on one event loop thread.

The proxy is no ZooKeeper client: the app's ConnectRequest (session id and password) reaches
the server untouched, so the app's session survives a server failover or a proxy restart
exactly as without the proxy. When the upstream connection ends, the client's is closed, and
the app's client library reconnects (through the proxy, to the next server) as it would.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Sequence

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import capture, jute
from sidecar.proxy.connection import ClientSide, Connection, UpstreamSide
from sidecar.proxy.mapper import Mapper
from sidecar.proxy.names import Names
from sidecar.proxy.rewrite import Rewriter

CONNECT_TIMEOUT = 3.0


class ProxyServer:
    """The ZooKeeper proxy: ``start()`` listens (and captures), ``stop()`` ends everything.

    ``servers``: where to connect when a client dialled the proxy itself (tried in turn,
    starting at a different one for each connection); ``capture_ports``: ZooKeeper ports
    redirected to the proxy (see ``capture``), each connection then going where it was going;
    ``jute_maxbuffer``: the servers' limit (a larger frame closes its connection).
    """

    def __init__(
        self,
        listen: tuple[str, int],
        mapper: Mapper,
        log: FilteringBoundLogger,
        *,
        servers: Sequence[tuple[str, int]] = (),
        services_roots: Sequence[str] = ("/services",),
        capture_ports: Sequence[int] = (),
        jute_maxbuffer: int = jute.MAXBUFFER,
    ) -> None:
        self.mapper = mapper
        self.log = log
        self.servers = tuple(servers)
        self.names = Names(mapper, services_roots)
        self.max_frame = jute_maxbuffer + jute.SLACK
        self.address: tuple[str, int] = listen
        self._capture_ports = tuple(capture_ports)
        self._capture: capture.Capture | None = None
        self._rotation = itertools.count()
        self._numbers = itertools.count(1)
        self._connections: set[Connection] = set()
        self._opening: set[asyncio.Task[None]] = set()  # upstream connections being made
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        """Listen (raising OSError if the address cannot be bound) and install the capture
        (raising CaptureError, with nothing left behind, if it cannot be installed)."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
        self.address = sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, started), name="zookeeper-proxy", daemon=True
        )
        self._thread.start()
        started.wait()
        if self._capture_ports:
            self._capture = capture.Capture(self._capture_ports, self.address[1])
            try:
                self._capture.install()
            except capture.CaptureError:
                self.stop()
                raise
        self.log.info("proxy_listening", address=_format(self.address),
                      servers=[_format(s) for s in self.servers],
                      capture=list(self._capture_ports))  # fmt: skip

    def stop(self) -> None:
        """Remove the capture, close the listener and every connection."""
        if self._capture is not None:
            self._capture.remove()
            self._capture = None
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(self._shutdown()))
        thread.join(10)
        self._loop = self._thread = None
        self.log.info("proxy_stopped", address=_format(self.address))

    def _run(self, sock: socket.socket, started: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        server = loop.create_server(lambda: ClientSide(self._accepted), sock=sock)
        self._server = loop.run_until_complete(server)
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for opening in list(self._opening):
            opening.cancel()
        for connection in list(self._connections):
            connection.close("proxy stopped")
            for transport in (connection.client, connection.upstream):
                if transport is not None:
                    transport.abort()
        await asyncio.sleep(0)  # the transports' own closing callbacks
        asyncio.get_running_loop().stop()

    def _accepted(self, side: ClientSide, transport: asyncio.Transport) -> Connection:
        peer = transport.get_extra_info("peername")
        log = self.log.bind(connection=next(self._numbers), client=_format(peer))
        connection = Connection(
            Rewriter(self.names, log), self.mapper, self.max_frame, self._connections.discard
        )
        self._connections.add(connection)
        targets = self._targets(transport.get_extra_info("socket"))
        opening = asyncio.get_running_loop().create_task(self._open_upstream(connection, targets))
        self._opening.add(opening)
        opening.add_done_callback(self._opening.discard)
        return connection

    def _targets(self, sock: socket.socket) -> list[tuple[str, int]]:
        if self._capture_ports:
            original = capture.original_destination(sock)
            if original is not None and original != sock.getsockname()[:2]:
                return [original]
        if not self.servers:
            return []
        start = next(self._rotation) % len(self.servers)
        return [*self.servers[start:], *self.servers[:start]]

    async def _open_upstream(self, connection: Connection, targets: list[tuple[str, int]]) -> None:
        problems = []
        loop = asyncio.get_running_loop()
        for host, port in targets:
            try:
                sock = await self._connect(host, port)
                if connection.closed:  # the client went away meanwhile
                    sock.close()
                    return
                transport, _ = await loop.create_connection(
                    lambda: UpstreamSide(connection), sock=sock
                )
            except OSError as exc:
                problems.append(f"{_format((host, port))}: {exc.strerror or exc or 'timed out'}")
                continue
            connection.log = connection.rewriter.log = connection.log.bind(
                upstream=_format((host, port))
            )
            connection.log.info("proxy_connection_opened")
            connection.opened(transport)
            return
        connection.log.warning(
            "proxy_upstream_unreachable", reason="; ".join(problems) or "no server to connect to"
        )
        connection.close("no upstream")

    async def _connect(self, host: str, port: int) -> socket.socket:
        loop = asyncio.get_running_loop()
        [(family, kind, protocol, _, address), *_] = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setblocking(False)
            if self._capture_ports:
                capture.mark(sock)
            await asyncio.wait_for(loop.sock_connect(sock, address), CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return sock


def _format(address: Sequence[object] | None) -> str:
    if not address:
        return "-"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
