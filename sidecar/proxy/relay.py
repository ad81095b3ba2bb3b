"""The proxy's listener and per-connection relay: one upstream connection per client, frames in
order, the client's own session passing through.

The proxy is no ZooKeeper client: the app's ConnectRequest (session id and password) reaches
the server untouched, so the app's session survives a server failover or a proxy restart
exactly as without the proxy. When the upstream connection ends, the client's is closed, and
the app's client library reconnects (through the proxy, to the next server) as it would.

Requests that may name the app's endpoints before the mapping is known wait, in order, for at
most :data:`HOLD_SECONDS` per connection and never more than a third of the session timeout
the client asked for (so the client never times out waiting); after that they pass as they
are, each logged as ``proxy_rewrite_skipped``. An app and its sidecar start together, so the
wait is normally the sidecar's first container listing.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Sequence

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import capture, jute
from sidecar.proxy.jute import CloseConnection, FrameReader
from sidecar.proxy.mapper import Mapper
from sidecar.proxy.names import Names, NotReady
from sidecar.proxy.rewrite import Rewriter

HOLD_SECONDS = 5.0
CONNECT_TIMEOUT = 3.0
_READ_SIZE = 256 * 1024
_READY_POLL = 0.02


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
        self._listen = listen
        self._capture_ports = tuple(capture_ports)
        self._capture: capture.Capture | None = None
        self._rotation = itertools.count()
        self._connections = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = listen

    def start(self) -> None:
        """Listen (raising OSError if the address cannot be bound) and install the capture
        (raising CaptureError, with nothing left behind, if it cannot be installed)."""
        host, port = self._listen
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
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, sock=sock))
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        asyncio.get_running_loop().stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        log = self.log.bind(connection=next(self._connections), client=_format(peer))
        try:
            await self._serve(reader, writer, log)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: FilteringBoundLogger
    ) -> None:
        targets = self._targets(writer.get_extra_info("socket"))
        try:
            upstream, target = await self._open_upstream(targets)
        except OSError as exc:
            log.warning("proxy_upstream_unreachable", reason=str(exc)[:300])
            return
        log = log.bind(upstream=target)
        log.info("proxy_connection_opened")
        relay = _Relay(self, reader, writer, upstream, Rewriter(self.names, log))
        try:
            reason = await relay.run()
        finally:
            upstream[1].close()
        log.info("proxy_connection_closed", reason=reason)

    def _targets(self, sock: socket.socket) -> list[tuple[str, int]]:
        if self._capture_ports:
            original = capture.original_destination(sock)
            if original is not None and original != sock.getsockname()[:2]:
                return [original]
        if not self.servers:
            return []
        start = next(self._rotation) % len(self.servers)
        return [*self.servers[start:], *self.servers[:start]]

    async def _open_upstream(
        self, targets: list[tuple[str, int]]
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], str]:
        problems = []
        for host, port in targets:
            try:
                sock = await self._connect(host, port)
            except OSError as exc:
                problems.append(f"{_format((host, port))}: {exc.strerror or exc or 'timed out'}")
                continue
            return await asyncio.open_connection(sock=sock), _format((host, port))
        raise OSError("; ".join(problems) or "no ZooKeeper server to connect to")

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


class _Relay:
    """Both directions of one client connection and its upstream connection."""

    def __init__(
        self,
        server: ProxyServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        rewriter: Rewriter,
    ) -> None:
        self.server = server
        self.client = (reader, writer)
        self.upstream = upstream
        self.rewriter = rewriter
        self.hold_budget = HOLD_SECONDS
        self.raw = False  # a four-letter word: bytes relayed as they are

    async def run(self) -> str:
        """Relay until either side ends; the reason."""
        directions = [
            asyncio.ensure_future(self._requests()),
            asyncio.ensure_future(self._replies()),
        ]
        try:
            done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for direction in directions:
                direction.cancel()
        first = done.pop()
        error = first.exception()
        if isinstance(error, CloseConnection):
            return f"{'request' if first is directions[0] else 'reply'}: {error}"
        if error is not None:
            return f"{type(error).__name__}: {error}"[:300]
        return first.result()

    async def _requests(self) -> str:
        reader, (_, writer) = FrameReader(self.server.max_frame), self.upstream
        connecting = True
        while data := await self.client[0].read(_READ_SIZE):
            if self.raw:
                writer.write(data)
                continue
            try:
                frames = reader.feed(data)
            except CloseConnection:
                head = reader.pending + data
                if not connecting or not (head[:4].isalpha() and head[:4].islower()):
                    raise
                self.raw = True
                writer.write(head)
                continue
            out = []
            for frame in frames:
                if connecting:
                    connecting = False
                    self._limit_hold(frame)
                    out.append(frame)
                    continue
                try:
                    out.append(self.rewriter.request(frame, wait=self.hold_budget > 0))
                except NotReady:
                    writer.write(b"".join(out))
                    out = [await self._held(frame)]
            writer.write(b"".join(out))
            await writer.drain()
        return "client closed the connection"

    async def _replies(self) -> str:
        reader, writer = FrameReader(self.server.max_frame), self.client[1]
        connecting = True
        while data := await self.upstream[0].read(_READ_SIZE):
            if self.raw:
                writer.write(data)
                continue
            frames = reader.feed(data)
            if connecting and frames:
                connecting = False
                out = [frames[0], *(self.rewriter.reply(f) for f in frames[1:])]
            else:
                out = [self.rewriter.reply(f) for f in frames]
            writer.write(b"".join(out))
            await writer.drain()
        return "server closed the connection"

    def _limit_hold(self, connect_request: bytes) -> None:
        timeout_ms = jute.connect_timeout_ms(connect_request)
        if timeout_ms is not None and timeout_ms > 0:
            self.hold_budget = min(HOLD_SECONDS, timeout_ms / 3000)

    async def _held(self, frame: bytes) -> bytes:
        """``frame`` rewritten once the mapping is known or the connection's budget is spent."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.hold_budget
        mapper = self.server.mapper
        while not mapper.ready() and loop.time() < deadline:
            await asyncio.sleep(_READY_POLL)
        waited = loop.time() - started
        self.hold_budget = max(0.0, self.hold_budget - waited)
        self.rewriter.log.info("proxy_request_held", waited=round(waited, 3),
                               mapping_known=mapper.ready())  # fmt: skip
        return self.rewriter.request(frame, wait=False)


def _format(address: tuple[str, int] | Sequence[object] | None) -> str:
    if not address:
        return "-"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
