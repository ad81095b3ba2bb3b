"""One client connection and its upstream connection: frames relayed in order, both ways.

Callbacks of asyncio protocols drive it directly (no task per direction): bytes from the
client are split into frames, rewritten and written upstream a few frames per write; replies
the same way back, one write per read. A full write buffer on one side pauses reading on the other.

Requests that may name the app's endpoints before the mapping is known wait, in order
(reading from the client pauses), for at most :data:`HOLD_SECONDS` per connection and never
more than a third of the session timeout the client asked for, so that the client never
times out waiting; after that they pass as they are, each logged as ``proxy_rewrite_skipped``.
An app and its sidecar start together, so the wait is normally the sidecar's first listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import jute
from sidecar.proxy.jute import CloseConnection, FrameReader
from sidecar.proxy.mapper import Mapper
from sidecar.proxy.names import NotReady
from sidecar.proxy.rewrite import Rewriter

HOLD_SECONDS = 5.0
_READY_POLL = 0.02
# Frames written upstream at once at most: a large burst of pipelined requests reaches the
# server while the rest are still being rewritten, rather than after all of them.
_BATCH = 32


class Connection:
    """Both directions of one client connection (see the module docstring)."""

    def __init__(
        self,
        rewriter: Rewriter,
        mapper: Mapper,
        max_frame: int,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.rewriter = rewriter
        self.log: FilteringBoundLogger = rewriter.log
        self.mapper = mapper
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self._requests, self._replies = FrameReader(max_frame), FrameReader(max_frame)
        self._connect_request = self._connect_response = True  # the first frame each way
        self._raw = False  # a four-letter word: bytes relayed as they are
        self._early = b""  # what the client sent before the upstream connection was open
        self._held: list[bytes] = []  # frames waiting for the mapping, in order
        self._hold_budget = HOLD_SECONDS
        self._holding: asyncio.Task[None] | None = None
        self._client_paused: set[str] = set()
        self._on_closed = on_closed
        self.closed = False

    # -- wiring -----------------------------------------------------------------------------

    def opened(self, upstream: asyncio.Transport) -> None:
        """The upstream connection is there: start reading the client."""
        self.upstream = upstream
        if self._early:
            early, self._early = self._early, b""
            self.from_client(early)
        self.resume_client("connecting")

    def pause_client(self, why: str) -> None:
        if self.client is not None and not self._client_paused:
            self.client.pause_reading()
        self._client_paused.add(why)

    def resume_client(self, why: str) -> None:
        self._client_paused.discard(why)
        if self.client is not None and not self._client_paused and not self.closed:
            self.client.resume_reading()

    def close(self, reason: str) -> None:
        """End both connections (once); what is already written is still delivered."""
        if self.closed:
            return
        self.closed = True
        if self._holding is not None:
            self._holding.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.close()
        self._on_closed(self)
        if self.upstream is not None:
            self.log.info("proxy_connection_closed", reason=reason)

    # -- client -> server -------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.upstream is None:
            # Reading was paused in connection_made, but asyncio's selector transport (Python
            # 3.11) starts reading right after that callback all the same: what comes now (a
            # ConnectRequest, a four-letter word) waits for the upstream connection.
            self._early += data
            if len(self._early) > self._requests.max_frame + 4:
                reason = "request: more than a frame before the server connection was open"
                self.log.info("proxy_connection_closed", reason=reason)  # close() cannot yet
                self.close(reason)
            return
        if self._raw:
            self.upstream.write(data)
            return
        try:
            frames = self._requests.feed(data)
        except CloseConnection as exc:
            head = self._requests.pending + data
            if self._connect_request and head[:4].isalpha() and head[:4].islower():
                self._raw = True
                self.upstream.write(head)
            else:
                self.close(f"request: {exc}")
            return
        if self._held:
            self._held += frames
        else:
            self._send_requests(frames)

    def _send_requests(self, frames: list[bytes]) -> None:
        assert self.upstream is not None
        out = []
        for index, frame in enumerate(frames):
            if self._connect_request:
                self._connect_request = False
                timeout_ms = jute.connect_timeout_ms(frame)
                if timeout_ms is not None and timeout_ms > 0:
                    self._hold_budget = min(HOLD_SECONDS, timeout_ms / 3000)
                out.append(frame)
                continue
            if len(out) >= _BATCH:
                self.upstream.write(b"".join(out))
                out = []
            try:
                out.append(self.rewriter.request(frame, wait=self._hold_budget > 0))
            except NotReady:
                self._held = frames[index:]
                self.pause_client("holding")
                self._holding = asyncio.get_running_loop().create_task(self._hold())
                break
            except CloseConnection as exc:
                self.close(f"request: {exc}")
                return
        if out:
            self.upstream.write(b"".join(out))

    async def _hold(self) -> None:
        """Wait for the mapping (within the budget), then send the held frames in order."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not self.mapper.ready() and loop.time() - started < self._hold_budget:
            await asyncio.sleep(_READY_POLL)
        waited = loop.time() - started
        self._hold_budget = max(0.0, self._hold_budget - waited)
        self.log.info("proxy_request_held", waited=round(waited, 3),
                      mapping_known=self.mapper.ready())  # fmt: skip
        self._holding = None
        [first, *rest], self._held = self._held, []
        try:
            sent = self.rewriter.request(first, wait=False)
        except CloseConnection as exc:
            self.close(f"request: {exc}")
            return
        assert self.upstream is not None
        self.upstream.write(sent)
        self._send_requests(rest)
        if not self._held:
            self.resume_client("holding")

    # -- server -> client -------------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        assert self.client is not None
        if self._raw:
            self.client.write(data)
            return
        try:
            frames = self._replies.feed(data)
            if self._connect_response and frames:
                self._connect_response = False
                out = [frames[0], *(self.rewriter.reply(f) for f in frames[1:])]
            else:
                out = [self.rewriter.reply(f) for f in frames]
        except CloseConnection as exc:
            self.close(f"reply: {exc}")
            return
        if out:
            self.client.write(b"".join(out))


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
