"""The proxy's listener: one upstream connection per client connection, the client's own
session passing through, all on one event loop thread.

The proxy is no ZooKeeper client: the app's ConnectRequest (session id and password) reaches
the server untouched, so the app's session survives a server failover or a proxy restart
exactly as without the proxy. When the upstream connection ends, the client's is closed, and
the app's client library reconnects (through the proxy, to the next server) as it would.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import ssl
import threading
from collections.abc import Callable, Sequence

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import capture, jute
from sidecar.proxy.connection import Budget, Connection
from sidecar.proxy.counters import Counters, NoCounters
from sidecar.proxy.mapper import Mapper
from sidecar.proxy.names import Names
from sidecar.proxy.repoint import Registrations
from sidecar.proxy.requests import Rewriter
from sidecar.tls import ClientTls, TlsProblem

CONNECT_TIMEOUT = 3.0
# Bytes of unfinished requests buffered over every connection at most: a connection that
# takes them past this is closed (its client connects again), so that many connections each
# sending an unfinished large frame cost a bounded amount of memory.
BUFFERED = 32 << 20
REPOINT_EVERY = 0.5


class ProxyServer:
    """The ZooKeeper proxy: ``start()`` listens (and captures), ``stop()`` ends everything.

    ``servers``: where to connect when a client dialled the proxy itself (tried in turn,
    starting at a different one for each connection); ``capture_ports``: ZooKeeper ports
    redirected to the proxy (see ``capture``), each connection then going where it was going;
    ``jute_maxbuffer``: the servers' limit (a larger request closes its connection);
    ``pass_unmapped``: writes naming the app's endpoints that cannot be published go as they
    are, instead of being refused; ``tls``: the upstream connections use TLS (the app speaks
    plaintext to the proxy, which adds TLS and the client certificate).
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
        pass_unmapped: bool = False,
        counters: Counters | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.mapper = mapper
        self.tls = tls
        self._tls_refused = ""  # the TLS refusal last logged, said once
        self.counters = counters or NoCounters()
        self.pass_unmapped = pass_unmapped
        self.budget = Budget(BUFFERED)
        self.registrations = Registrations()
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
        self._servers: list[asyncio.Server] = []
        self._following: asyncio.Task[None] | None = None
        self.unreachable = ""  # why the last upstream connection failed ("": it did not)
        self.client_tls = ""  # an app speaking TLS to the proxy, until a session passes again

    def start(self) -> None:
        """Listen (raising OSError if an address cannot be bound, CaptureError if loopback
        cannot be) and install the capture (raising CaptureError if it cannot be)."""
        host, port = self.address
        socks = [_listen(host, port)]
        self.address = socks[0].getsockname()[:2]
        ipv6 = False
        if self._capture_ports:
            socks += _loopbacks(host, int(self.address[1]))
            ipv6 = any(s.family == socket.AF_INET6 for s in socks)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(socks, started), name="zookeeper-proxy", daemon=True
        )
        self._thread.start()
        started.wait()
        if self._capture_ports:
            self._capture = capture.Capture(self._capture_ports, self.address[1], ipv6)
            try:
                self._capture.install()
            except capture.CaptureError:
                self.stop()
                raise
        self.log.info("proxy_listening", address=_format(self.address),
                      servers=[_format(s) for s in self.servers],
                      capture=list(self._capture_ports), ipv6=ipv6)  # fmt: skip

    def stop(self) -> None:
        """Close the listener and every connection. The capture rules stay (fail closed: the
        app reaches ZooKeeper through a proxy or not at all; see ``capture``)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(self._shutdown()))
        thread.join(10)
        self._loop = self._thread = None
        self.log.info("proxy_stopped", address=_format(self.address))

    def not_ready(self) -> list[str]:
        """Why the proxy cannot do its job now (empty: it can): the capture rules are
        missing, or no server could be reached on the last try."""
        reasons = []
        if self._capture is not None and (missing := self._capture.missing()):
            reasons.append(f"proxy: {missing}")
        if self.unreachable:
            reasons.append(f"proxy: no ZooKeeper server reachable: {self.unreachable}")
        if self.client_tls:
            reasons.append(f"proxy: {self.client_tls}")
        return reasons

    def _run(self, socks: list[socket.socket], started: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        for sock in socks:
            server = loop.create_server(lambda: ClientSide(self._accepted), sock=sock)
            self._servers.append(loop.run_until_complete(server))
        self._following = loop.create_task(self._follow_mapping())
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _follow_mapping(self) -> None:
        """Every half second: the app's registrations follow a change of its mapping (see
        ``repoint``), and what is kept of sessions gone for good is let go."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(REPOINT_EVERY)
            for connection in list(self._connections):
                connection.repoint()
            self.registrations.forget_idle(loop.time())

    async def _shutdown(self) -> None:
        if self._following is not None:
            self._following.cancel()
        for server in self._servers:
            server.close()
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
        rewriter = Rewriter(self.names, log, self.pass_unmapped, self.counters,
                            self.registrations)  # fmt: skip
        connection = Connection(rewriter, self.mapper, self.max_frame, self._closed,
                                self.budget, self.counters)  # fmt: skip
        self._connections.add(connection)
        targets = self._targets(transport.get_extra_info("socket"))
        opening = asyncio.get_running_loop().create_task(self._open_upstream(connection, targets))
        self._opening.add(opening)
        opening.add_done_callback(self._opening.discard)
        return connection

    def _closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        if connection.spoke_tls:
            self.client_tls = (
                "an app spoke TLS to it (the sidecar adds TLS to the ensemble: give the app "
                "plaintext to the proxy's address)"
            )
        elif connection.rewriter.session:
            self.client_tls = ""

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
                context = self._upstream_tls()
                transport, _ = await loop.create_connection(
                    lambda: UpstreamSide(connection), sock=sock, ssl=context,
                    server_hostname=self._server_name(host) if context else None,
                    ssl_handshake_timeout=CONNECT_TIMEOUT if context else None,
                )  # fmt: skip
            except TlsProblem as exc:
                sock.close()
                problems.append(f"{_format((host, port))}: TLS: {exc.reason}")
                continue
            except OSError as exc:
                problems.append(f"{_format((host, port))}: {exc.strerror or exc or 'timed out'}")
                continue
            connection.log = connection.rewriter.log = connection.log.bind(
                upstream=_format((host, port))
            )
            connection.log.info("proxy_connection_opened")
            connection.opened(transport)
            self.unreachable = ""
            return
        self.unreachable = "; ".join(problems) or "no server to connect to"
        connection.log.warning("proxy_upstream_unreachable", reason=self.unreachable)
        connection.close("no upstream")

    def _upstream_tls(self) -> ssl.SSLContext | None:
        """The TLS context for the next upstream connection (None: plaintext); TlsProblem,
        logged once per problem, when the files as they are now cannot be used."""
        if self.tls is None:
            return None
        try:
            context, changed = self.tls.context()
        except TlsProblem as exc:
            if exc.reason != self._tls_refused:
                self._tls_refused = exc.reason
                self.log.error("zookeeper_tls_refused", setting=exc.flag, problem=exc.reason)
            raise
        self._tls_refused = ""
        if changed:
            self.log.info("zookeeper_tls_reloaded", ca=str(self.tls.files.ca))
        return context

    def _server_name(self, host: str) -> str:
        # An empty name turns asyncio's check of the server's name off (the CA still counts).
        return host.strip("[]") if self.tls and self.tls.files.verify_hostname else ""

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


class ClientSide(asyncio.Protocol):
    """The client's socket."""

    def __init__(self, accepted: Callable[[ClientSide, asyncio.Transport], Connection]) -> None:
        self._accepted = accepted
        self.connection: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.connection = self._accepted(self, transport)
        self.connection.client = transport
        self.connection.pause_client("connecting")

    def data_received(self, data: bytes) -> None:
        assert self.connection is not None
        self.connection.from_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        assert self.connection is not None
        self.connection.close(f"client: {exc}" if exc else "client closed the connection")

    def pause_writing(self) -> None:
        assert self.connection is not None
        if self.connection.upstream is not None:
            self.connection.upstream.pause_reading()

    def resume_writing(self) -> None:
        assert self.connection is not None
        if self.connection.upstream is not None and not self.connection.closed:
            self.connection.upstream.resume_reading()


class UpstreamSide(asyncio.Protocol):
    """The socket to the ZooKeeper server."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def data_received(self, data: bytes) -> None:
        self.connection.from_server(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.close(f"server: {exc}" if exc else "server closed the connection")

    def pause_writing(self) -> None:
        self.connection.pause_client("backpressure")

    def resume_writing(self) -> None:
        self.connection.resume_client("backpressure")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def _loopbacks(host: str, port: int) -> list[socket.socket]:
    """The listeners redirected connections need besides the one on ``host`` (loopback or
    every address: the settings see to it): they arrive at 127.0.0.1 (IPv4) and ::1 (IPv6).
    A namespace without IPv6 gets no IPv6 listener (and no IPv6 capture)."""
    ip = ipaddress.ip_address(host)
    socks = []
    for version, loopback in ((4, "127.0.0.1"), (6, "::1")):
        if version == ip.version:
            continue
        try:
            socks.append(_listen(loopback, port))
        except OSError as exc:
            if version == 4:
                raise capture.CaptureError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
    return socks


def _format(address: Sequence[object] | None) -> str:
    if not address:
        return "-"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
