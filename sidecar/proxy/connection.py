"""One client connection and its upstream connection: frames relayed in order, both ways.

Callbacks of asyncio protocols drive it directly (no task per direction): bytes from the
client are split into frames, rewritten and written upstream a few frames per write; replies
the same way back, one write per read. A full write buffer on one side pauses reading on the
other.

Requests that may name the app's endpoints before the mapping is known wait, in order, for
at most a third of the session timeout the server granted (and :data:`HOLD_SECONDS` per
connection); meanwhile the client's pings go on (their replies are out of band for every
client), so a held request never expires its session. A write that would store one of the
app's endpoints unpublished (its bindings never came, or its port is not published) is not
sent: its reply says the operation timed out, which ZooKeeper clients (Curator, kazoo) and
Dubbo's failback registry retry. Such replies keep the order the client expects: each comes
once the server has answered every request sent before it.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import jute, replies
from sidecar.proxy.counters import Counters, NoCounters, why_closed
from sidecar.proxy.jute import CloseConnection, FrameReader
from sidecar.proxy.mapper import Mapper
from sidecar.proxy.names import NotReady, Renamed
from sidecar.proxy.repoint import Registration, move
from sidecar.proxy.requests import Refused, Rewriter

HOLD_SECONDS = 5.0
_READY_POLL = 0.02
# Frames written upstream at once at most: a large burst of pipelined requests reaches the
# server while the rest are still being rewritten, rather than after all of them.
_BATCH = 32
# Requests queued behind a held one, in bytes, before reading from the client pauses.
_HELD_BYTES = 4 << 20
_PING = -2
_OPERATION_TIMEOUT = -7  # ZooKeeper's OPERATIONTIMEOUT: clients retry the operation
_REPLY_HEADER = struct.Struct(">iqi")  # xid, zxid, err


# A TLS record's first byte when it carries a handshake (a ClientHello opens every one).
TLS_HANDSHAKE = b"\x16"


@dataclass
class Budget:
    """Bytes buffered for unfinished requests, over every connection of one proxy."""

    limit: int
    used: int = 0


class Connection:
    """Both directions of one client connection (see the module docstring)."""

    def __init__(
        self,
        rewriter: Rewriter,
        mapper: Mapper,
        max_frame: int,
        on_closed: Callable[[Connection], None],
        budget: Budget | None = None,
        counters: Counters | None = None,
    ) -> None:
        """``max_frame``: the largest request (the servers' limit: replies may be larger);
        ``budget``: shared by the proxy's connections, bounds what they buffer in all."""
        self.counters = counters or NoCounters()
        self.counters.opened()
        self.rewriter = rewriter
        self.log: FilteringBoundLogger = rewriter.log
        self.mapper = mapper
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self._requests, self._replies = FrameReader(max_frame), FrameReader(jute.MAX_REPLY)
        self._budget = budget or Budget(1 << 62)
        self._buffered = 0  # this connection's share of the budget
        self._connect_request = self._connect_response = True  # the first frame each way
        self._raw = False  # a four-letter word: bytes relayed as they are
        self._early = b""  # what the client sent before the upstream connection was open
        self._held: deque[bytes] = deque()  # frames waiting for the mapping, in order
        self._held_bytes = 0
        self._hold_budget = HOLD_SECONDS
        self._holding: asyncio.Task[None] | None = None
        # Per request sent upstream, in order: None (the app's), or what takes the answer to
        # one of the proxy's own (a move of a registration). A reply the proxy gives itself
        # sits where its request would have been, and goes once every earlier one is answered.
        self._order: deque[bytes | Callable[[bytes], None] | None] = deque()
        self._granted = HOLD_SECONDS * 3  # the session timeout the server granted, seconds
        self._moving: set[str] = set()  # the app's registrations being moved now
        self._own_xids = itertools.count(1)
        self._zxid = 0  # the last the server told: the proxy's own replies carry it
        self._client_paused: set[str] = set()
        self._on_closed = on_closed
        self.closed = False
        self.spoke_tls = False  # the client began a TLS handshake: refused

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
        self._account(0)
        self._held.clear()
        if self.rewriter.session:
            loop_time = asyncio.get_event_loop().time()
            self.rewriter.registrations.disconnected(self.rewriter.session, loop_time,
                                                     self._granted)  # fmt: skip
        self.counters.closed(why_closed(reason))
        self._on_closed(self)
        if self.upstream is not None:
            self.log.info("proxy_connection_closed", reason=reason)

    # -- client -> server -------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        self.counters.relayed("requests", len(data))
        if self._connect_request and not self._early and data[:1] == TLS_HANDSHAKE:
            # A ClientHello where a ConnectRequest belongs (whose first byte, of its length,
            # is 0): the app speaks TLS itself, which the proxy cannot relay. Said plainly,
            # not left to wait for a frame of 369 MB.
            self.spoke_tls = True
            self.log.warning("proxy_client_tls", client=_peer(self.client))
            self.close("request: the client speaks TLS (the proxy takes plaintext)")
            return
        if self.upstream is None:
            # Reading was paused in connection_made, but asyncio's selector transport (Python
            # 3.11) starts reading right after that callback all the same: what comes now (a
            # ConnectRequest, a four-letter word) waits for the upstream connection.
            self._early += data
            if len(self._early) > self._requests.max_frame + 4:
                reason = "request: more than a frame before the server connection was open"
                self.log.info("proxy_connection_closed", reason=reason)  # close() cannot yet
                self.close(reason)
            elif not self._account(len(self._early)):
                self.log.info("proxy_connection_closed", reason="request: buffers over budget")
            return
        if self._raw:
            self.upstream.write(data)
            return
        try:
            frames = self._requests.feed(data)
        except CloseConnection as exc:
            head = bytes(self._requests.pending) + data
            if self._connect_request and head[:4].isalpha() and head[:4].islower():
                self._raw = True
                self.upstream.write(head)
            else:
                self.close(f"request: {exc}")
            return
        if not self._account(len(self._requests.pending) + self._held_bytes):
            return
        self._send_requests(frames)

    def _send_requests(self, frames: list[bytes]) -> None:
        out: list[bytes] = []
        for frame in frames:
            if self._connect_request:
                self._connect_request = False
                timeout_ms = jute.connect_timeout_ms(frame)
                if timeout_ms is not None and timeout_ms > 0:
                    self._hold_budget = min(HOLD_SECONDS, timeout_ms / 3000)
                assert self.upstream is not None
                assert not out
                self.upstream.write(frame)  # answered first, by the ConnectResponse
                continue
            if self._held:
                self._queue(frame, out)
                continue
            try:
                if not self._rewrite(frame, out, wait=self._hold_budget > 0):
                    return
            except NotReady:
                self._queue(frame, out)
                self._holding = asyncio.get_running_loop().create_task(self._hold())
                self.counters.held()
            if len(out) >= _BATCH:
                self._flush(out)
        self._flush(out)

    def _rewrite(self, frame: bytes, out: list[bytes], wait: bool) -> bool:
        """One request rewritten into ``out``, or answered here if refused; False if it
        closed the connection. NotReady (the mapping awaited: only if ``wait``) is raised."""
        try:
            out.append(self.rewriter.request(frame, wait=wait))
        except Refused:
            self._flush(out)
            self._refuse(frame)
        except CloseConnection as exc:
            self.close(f"request: {exc}")
            return False
        return True

    def _queue(self, frame: bytes, out: list[bytes]) -> None:
        """Behind a held request: a ping goes on (its reply is out of band), the rest waits."""
        if len(frame) >= 12 and jute.request_header(frame)[0] == _PING:
            out.append(frame)
            return
        self._held.append(frame)
        self._held_bytes += len(frame)
        if self._held_bytes > _HELD_BYTES:
            self.pause_client("holding")

    def _flush(self, out: list[bytes]) -> None:
        """Write these requests upstream; each gets its place in the reply order."""
        if out and self.upstream is not None and not self.closed:
            self.upstream.write(b"".join(out))
            self._order.extend([None] * len(out))
        out.clear()

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
        held, self._held, self._held_bytes = self._held, deque(), 0
        out: list[bytes] = []
        for frame in held:
            if not self._rewrite(frame, out, wait=False):
                return
        self._flush(out)
        self._account(len(self._requests.pending))
        self.resume_client("holding")

    def _refuse(self, frame: bytes) -> None:
        """Answer a request the proxy does not send: the operation timed out (clients retry
        it), once every request sent before it is answered."""
        self.counters.refused()
        xid = jute.request_header(frame)[0]
        self._order.append(jute.frame(_REPLY_HEADER.pack(xid, self._zxid, _OPERATION_TIMEOUT)))
        self._answer_own()

    def _account(self, buffered: int) -> bool:
        """This connection now buffers ``buffered`` bytes; False (closed) if that takes the
        proxy's buffers past their budget."""
        self._budget.used += buffered - self._buffered
        self._buffered = buffered
        if self._budget.used > self._budget.limit and buffered and not self.closed:
            self.close(f"request: buffers over {self._budget.limit} bytes in all")
            return False
        return True

    # -- server -> client -------------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        assert self.client is not None
        self.counters.relayed("replies", len(data))
        if self._raw:
            self.client.write(data)
            return
        try:
            frames = self._replies.feed(data)
            out = []
            for frame in frames:
                if self._connect_response:
                    self._connect_response = False
                    self._negotiated(frame)
                    out.append(frame)
                    continue
                xid = jute.reply_xid(frame)
                if xid != jute.WATCH_EVENT:
                    self._zxid = max(self._zxid, jute.reply_zxid(frame))
                    answered = self._order.popleft() if self._order else None
                    if callable(answered):
                        answered(frame)  # the answer to the proxy's own request: not the app's
                        out += self._own_answers()
                        continue
                out.append(self.rewriter.reply(frame))
                out += self._own_answers()
        except CloseConnection as exc:
            self.close(f"reply: {exc}")
            return
        if out:
            self.client.write(b"".join(out))

    def _negotiated(self, frame: bytes) -> None:
        """The session timeout the server granted bounds every hold (a third of it); the
        session is the one the app's registrations on this connection belong to."""
        granted = jute.granted_timeout_ms(frame)
        if granted is not None and granted > 0:
            self._granted = granted / 1000
            self._hold_budget = min(self._hold_budget, granted / 3000)
        session = jute.granted_session(frame)
        if session:
            self.rewriter.session = session
            self.rewriter.registrations.connected(session)

    # -- the app's registrations follow its mapping -----------------------------------------

    def repoint(self) -> None:
        """Move each of the app's registrations of this connection's session whose published
        name is no longer the mapping's (see ``repoint``)."""
        rewriter = self.rewriter
        if self.closed or self.upstream is None or not rewriter.session or self._held:
            return
        for registration, now in rewriter.registrations.moved(rewriter.session, rewriter.names):
            if registration.asked in self._moving:
                continue
            self._moving.add(registration.asked)
            frame = move(-(1 << 20) - next(self._own_xids), registration, now, rewriter.names)
            self.upstream.write(frame)
            self._order.append(self._moved(registration, now))

    def _moved(self, registration: Registration, now: Renamed | None) -> Callable[[bytes], None]:
        rewriter = self.rewriter

        def answered(frame: bytes) -> None:
            self._moving.discard(registration.asked)
            to = now.sent if now is not None else None
            if replies.failed(frame, now is not None):
                # Gone meanwhile, or its new name taken: it is the app's to register again.
                self.log.warning("proxy_repoint_failed", node=registration.asked,
                                 sent=registration.sent, to=to)  # fmt: skip
                rewriter.registrations.deleted(rewriter.session, registration.asked)
                return
            rewriter.registrations.repointed(rewriter.session, registration, now)
            rewriter.names.forget(registration.sent)
            self.log.info("proxy_repointed", node=registration.asked, sent=registration.sent,
                          to=to)  # fmt: skip

        return answered

    def _own_answers(self) -> list[bytes]:
        """The proxy's own replies whose turn has come."""
        found = []
        while self._order and isinstance(self._order[0], bytes):
            answer = self._order.popleft()
            assert isinstance(answer, bytes)
            found.append(answer)
        return found

    def _answer_own(self) -> None:
        answers = self._own_answers()
        if answers and self.client is not None and not self.closed:
            self.client.write(b"".join(answers))


def _peer(transport: asyncio.Transport | None) -> str:
    peer = transport.get_extra_info("peername") if transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown"
