"""One connection's requests, rewritten in flight: the app's names out, published (no I/O).

Requests that name a node (create, create2, createContainer, createTTL, delete, exists,
getData, setData, getACL, setACL, check, getChildren, getChildren2, checkWatches,
removeWatches, deleteContainer, addWatch, getAllChildrenNumber), every operation of a multi
and of a multiRead, and every path of a setWatches / setWatches2 travel with the app's names
published (see ``names``). Nothing else is decoded: other opcodes, auth and SASL packets,
pings and unknown multi operations go out as the bytes that came in.

Replies come back in request order, so the requests whose replies must be mapped back
(``replies``) are queued with their xid; watch events are mapped back whatever connection
set the watch.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import jute, replies
from sidecar.proxy.counters import Counters, NoCounters
from sidecar.proxy.jute import Cursor
from sidecar.proxy.names import Kept, Names, Renamed
from sidecar.proxy.replies import Read
from sidecar.proxy.repoint import Registration, Registrations

_WRITES = jute.CREATES | {jute.DELETE, jute.SET_DATA, jute.MULTI}
_LISTINGS = frozenset({jute.GET_CHILDREN, jute.GET_CHILDREN2})
_MULTI_WRITES = jute.CREATES | {jute.DELETE, jute.SET_DATA, jute.CHECK}
# Operations that store a name or data: one naming the app's endpoint unpublished is refused.
_INT = struct.Struct(">i")
_STORING = frozenset(jute.OPCODE_NAMES[op] for op in (*jute.CREATES, jute.SET_DATA))


@dataclass
class _Awaited:
    """A request whose reply is mapped back."""

    xid: int
    opcode: int
    creates: tuple[Renamed | None, ...] = ()  # per operation: a renamed create
    directory: str | None = None  # a listing of endpoint names
    read: Renamed | None = None  # a getData of one of the app's nodes
    reads: tuple[Read, ...] = ()  # per multiRead operation
    # What the app's registrations become once the server says it is done.
    done: tuple[Callable[[], None], ...] = ()


@dataclass
class _Edit:
    frame: bytes
    renamed: list[tuple[str, Renamed, str]] = field(default_factory=list)  # (op, how, note)
    kept: list[tuple[str, Kept]] = field(default_factory=list)
    awaited: _Awaited | None = None

    def add(self, op: str, found: Renamed | Kept | None, note: str = "") -> None:
        if isinstance(found, Renamed):
            self.renamed.append((op, found, note))
        elif isinstance(found, Kept):
            self.kept.append((op, found))


class Refused(Exception):
    """A write that would store one of the app's container endpoints unpublished (its port
    is not published, or its bindings were not known in time): it is not sent."""


class Rewriter:
    """One connection's rewriting state: what its replies and events map back."""

    def __init__(
        self,
        names: Names,
        log: FilteringBoundLogger,
        pass_unmapped: bool = False,
        counters: Counters | None = None,
        registrations: Registrations | None = None,
    ) -> None:
        """``pass_unmapped``: writes naming the app's endpoints that cannot be published go
        as they are (stored with the container's address) instead of being refused."""
        self.names = names
        self.log = log
        self.pass_unmapped = pass_unmapped
        self.counters = counters or NoCounters()
        self.registrations = registrations or Registrations()
        self.session = 0  # the app's session on this connection, once the server said
        self._awaited: deque[_Awaited] = deque()

    def request(self, frame: bytes, wait: bool) -> bytes:
        """The request as it goes upstream. With ``wait``, raises NotReady (and changes
        nothing) when it may name the app's endpoints before the mapping is known; raises
        Refused for a write that would store one of them unpublished."""
        xid, opcode = jute.request_header(frame)
        handler = _REQUESTS.get(opcode)
        if handler is None:
            return frame
        edit = handler(self, frame, xid, opcode, wait)
        refused = [kept for op, kept in edit.kept if op.rpartition(".")[2] in _STORING]
        if refused and not self.pass_unmapped:
            self.log.warning("proxy_request_refused", op=jute.OPCODE_NAMES[opcode],
                             node=refused[0].path, original=str(refused[0].endpoint),
                             reason=refused[0].reason)  # fmt: skip
            raise Refused(refused[0].reason)
        for op, renamed, note in edit.renamed:
            self.counters.rewritten(op)
            if opcode in _WRITES:  # a read of the app's own node is no decision worth a line
                self.log.info("proxy_rewrite", op=op, node=renamed.asked, sent=renamed.sent,
                              original=str(renamed.endpoint), rewritten=str(renamed.advertised),
                              **({"note": note} if note else {}))  # fmt: skip
        for op, kept in edit.kept:
            log = self.log.warning if opcode in _WRITES else self.log.debug
            log("proxy_rewrite_skipped", op=op, node=kept.path, original=str(kept.endpoint),
                reason=kept.reason)  # fmt: skip
        if edit.awaited is not None:
            self._awaited.append(edit.awaited)
        return edit.frame

    def reply(self, frame: bytes) -> bytes:
        """The reply or watch event as the app sees it (see ``replies``)."""
        xid = jute.reply_xid(frame)
        if xid == jute.WATCH_EVENT:
            return replies.event(frame, self.names)
        awaited = self._awaited
        # Replies come in request order: one for a later request means an earlier one's
        # never comes.
        while awaited and 0 <= awaited[0].xid < xid:
            awaited.popleft()
        if not awaited or awaited[0].xid != xid:
            return frame
        request = awaited.popleft()
        multiple = request.opcode in (jute.MULTI, jute.MULTI_READ)
        if jute.reply_error(frame) != 0 and not multiple:
            return frame
        if request.done and not replies.failed(frame, request.opcode == jute.MULTI):
            for effect in request.done:
                effect()
        if request.opcode == jute.MULTI:
            return replies.multi(frame, request.creates)
        if request.opcode == jute.MULTI_READ:
            return replies.multi_read(frame, request.reads, self.names)
        if request.directory is not None:
            return replies.listing(frame, request.directory, self.names)
        if request.read is not None:
            return replies.data(frame, request.read, self.names)
        if request.opcode == jute.GET_EPHEMERALS:
            return replies.paths(frame, self.names)
        if request.creates:
            return replies.created(frame, request.creates[0])
        return frame  # a delete or setData: awaited for its effects alone

    # -- requests ---------------------------------------------------------------------------

    def _path_first(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        path = cursor.string()
        found = self.names.rename(path, wait)
        edit = _Edit(frame)
        if opcode in _LISTINGS and self.names.lists_endpoints(path):
            edit.awaited = _Awaited(xid, opcode, directory=path)
        elif opcode == jute.GET_EPHEMERALS:
            edit.awaited = _Awaited(xid, opcode)
        edit.add(jute.OPCODE_NAMES[opcode], found)
        if isinstance(found, Renamed):
            edit.frame = jute.frame(frame[4:12] + jute.encode_string(found.sent) + cursor.rest())
            if opcode == jute.GET_DATA:
                edit.awaited = _Awaited(xid, opcode, read=found)
            elif opcode in (jute.DELETE, jute.DELETE_CONTAINER):
                self.names.forget(found.sent)
                edit.awaited = _Awaited(xid, opcode, done=(self._deleted(found),))
        return edit

    def _with_data(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        path = cursor.string()
        data = cursor.buffer()
        found = self.names.rename(path, wait)
        edit = _Edit(frame)
        if not isinstance(found, Renamed):
            edit.add(jute.OPCODE_NAMES[opcode], found)
            return edit
        new_data, note = self.names.data(found, data)
        self.names.wrote(found.sent, new_data, data)
        edit.add(jute.OPCODE_NAMES[opcode], found, note)
        rest = cursor.rest()
        if opcode in jute.CREATES:
            done = self._created(found, data, Cursor(frame, cursor.position), opcode)
            edit.awaited = _Awaited(xid, opcode, creates=(found,), done=done)
        else:
            edit.awaited = _Awaited(xid, opcode, done=(self._data_set(found, data),))
        body = jute.encode_string(found.sent) + jute.encode_buffer(new_data) + rest
        edit.frame = jute.frame(frame[4:12] + body)
        return edit

    def _multi(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        parts = [frame[4:12]]
        creates: list[Renamed | None] = []
        effects: tuple[Callable[[], None], ...] = ()
        edit = _Edit(frame)
        while True:
            start = cursor.position
            kind, done, _ = cursor.multi_header()
            if done or kind not in _MULTI_WRITES:
                # The end marker, or an operation this proxy does not know: the rest as it is.
                parts.append(frame[start:])
                break
            head = frame[start : cursor.position]
            path = cursor.string()
            data = cursor.buffer() if kind != jute.DELETE and kind != jute.CHECK else None
            tail = cursor.position
            _skip_operation_tail(cursor, kind)
            found = self.names.rename(path, wait)
            new_data, note = (data, "")
            if isinstance(found, Renamed):
                new_data, note = self.names.data(found, data)
                effects += self._effects(found, kind, data, Cursor(frame, tail))
                if kind == jute.DELETE:
                    self.names.forget(found.sent)
                elif kind != jute.CHECK:
                    self.names.wrote(found.sent, new_data, data)
            edit.add(f"multi.{jute.OPCODE_NAMES[kind]}", found, note)
            creates.append(found if kind in jute.CREATES and isinstance(found, Renamed) else None)
            sent = found.sent if isinstance(found, Renamed) else path
            has_data = kind != jute.DELETE and kind != jute.CHECK
            parts += [head, jute.encode_string(sent)]
            parts += [jute.encode_buffer(new_data)] if has_data else []
            parts.append(frame[tail : cursor.position])
        if edit.renamed:
            edit.frame = jute.frame(b"".join(parts))
            edit.awaited = _Awaited(xid, opcode, creates=tuple(creates), done=effects)
        return edit

    # -- what the app's registrations become ------------------------------------------------

    def _effects(
        self, found: Renamed, kind: int, data: bytes | None, tail: Cursor
    ) -> tuple[Callable[[], None], ...]:
        if kind in jute.CREATES:
            return self._created(found, data, tail, kind)
        if kind == jute.DELETE:
            return (self._deleted(found),)
        if kind == jute.SET_DATA:
            return (self._data_set(found, data),)
        return ()

    def _created(
        self, found: Renamed, data: bytes | None, tail: Cursor, opcode: int
    ) -> tuple[Callable[[], None], ...]:
        """``tail``: at the create's ACL (then its flags)."""
        if opcode == jute.CREATE_TTL:
            return ()  # a node with a time to live is not made again elsewhere
        start = tail.position
        _skip_operation_tail(tail, opcode)
        acl = tail.frame[start : tail.position - 4]
        flags = _INT.unpack_from(tail.frame, tail.position - 4)[0]
        made = Registration(found.asked, found.sent, data, acl, flags)
        return (lambda: self.registrations.created(self.session, made),)

    def _deleted(self, found: Renamed) -> Callable[[], None]:
        return lambda: self.registrations.deleted(self.session, found.asked)

    def _data_set(self, found: Renamed, data: bytes | None) -> Callable[[], None]:
        return lambda: self.registrations.data_set(self.session, found.asked, data)

    def _multi_read(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        """multiRead: getChildren and getData operations, each ``{path, watch}``."""
        cursor = Cursor(frame, 12)
        parts = [frame[4:12]]
        reads: list[Read] = []
        edit = _Edit(frame)
        while True:
            start = cursor.position
            kind, done, _ = cursor.multi_header()
            if done or kind not in (jute.GET_CHILDREN, jute.GET_DATA):
                parts.append(frame[start:])
                break
            head = frame[start : cursor.position]
            path = cursor.string()
            watch = cursor.position
            cursor.skip(1, "a watch flag")
            found = self.names.rename(path, wait)
            edit.add(f"multiRead.{jute.OPCODE_NAMES[kind]}", found)
            listed = kind == jute.GET_CHILDREN and self.names.lists_endpoints(path)
            reads.append(path if listed else found if isinstance(found, Renamed) else None)
            sent = found.sent if isinstance(found, Renamed) else path
            parts += [head, jute.encode_string(sent), frame[watch : cursor.position]]
        if edit.renamed:
            edit.frame = jute.frame(b"".join(parts))
        if any(r is not None for r in reads):
            edit.awaited = _Awaited(xid, opcode, reads=tuple(reads))
        return edit

    def _set_watches(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        cursor.skip(8, "relativeZxid")
        vectors = [cursor.strings() for _ in range(3 if opcode == jute.SET_WATCHES else 5)]
        rest = cursor.rest()
        edit = _Edit(frame)
        sent_vectors = []
        for paths in vectors:
            sent: list[str | None] = []
            for path in paths or ():
                found = self.names.rename(path, wait)
                edit.add(jute.OPCODE_NAMES[opcode], found)
                sent.append(found.sent if isinstance(found, Renamed) else path)
            sent_vectors.append(sent if paths is not None else None)
        if edit.renamed:
            vectors_bytes = b"".join(jute.encode_strings(v) for v in sent_vectors)
            edit.frame = jute.frame(frame[4:20] + vectors_bytes + rest)
        return edit


def _skip_operation_tail(cursor: Cursor, kind: int) -> None:
    """Past what follows path (and data) in a multi's write operation."""
    if kind in jute.CREATES:
        count = cursor.integer()
        for _ in range(max(count, 0)):
            cursor.skip(4, "ACL permissions")
            cursor.buffer()  # scheme
            cursor.buffer()  # id
        cursor.skip(12 if kind == jute.CREATE_TTL else 4, "create flags")
    else:
        cursor.skip(4, "version")


_Handler = Callable[[Rewriter, bytes, int, int, bool], _Edit]
_PATH_FIRST = (
    jute.DELETE, jute.EXISTS, jute.GET_DATA, jute.GET_ACL, jute.SET_ACL, jute.GET_CHILDREN,
    jute.GET_CHILDREN2, jute.CHECK, jute.CHECK_WATCHES, jute.REMOVE_WATCHES,
    jute.DELETE_CONTAINER, jute.ADD_WATCH, jute.GET_EPHEMERALS, jute.GET_ALL_CHILDREN_NUMBER,
)  # fmt: skip
_REQUESTS: dict[int, _Handler] = {
    **dict.fromkeys(_PATH_FIRST, Rewriter._path_first),
    **dict.fromkeys((*jute.CREATES, jute.SET_DATA), Rewriter._with_data),
    jute.MULTI: Rewriter._multi,
    jute.MULTI_READ: Rewriter._multi_read,
    jute.SET_WATCHES: Rewriter._set_watches,
    jute.SET_WATCHES2: Rewriter._set_watches,
}
