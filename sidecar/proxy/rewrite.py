"""In-flight rewriting of one connection's frames: the app's names out, and back in (no I/O).

Requests that name a node (create, create2, createContainer, createTTL, delete, exists,
getData, setData, getACL, setACL, check, getChildren, getChildren2, checkWatches,
removeWatches, deleteContainer, addWatch), every operation of a multi, and every path of a
setWatches / setWatches2 travel with the app's names published (see ``names``). Nothing else
is decoded: other opcodes, auth and SASL packets, pings and unknown multi operations go out as
the bytes that came in.

Replies come back in request order, so the requests whose replies must be mapped back are
queued with their xid: a created path (create, create2, a multi's creates) is returned under
the name the app asked for, and a listing of a providers or instance directory shows the
app's own published names under its names. Watch events carry the path as the server knows
it; each path this connection renamed is remembered, so an event on it reaches the app under
the name its watch was set on (a watch set on an earlier connection is set again on this one
by the client's setWatches, which is renamed too).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from sidecar.proxy import jute
from sidecar.proxy.jute import Cursor
from sidecar.proxy.names import Kept, Names, Renamed

REMEMBERED = 4096  # renamed paths kept per connection for watch events (the app's own nodes)
_WRITES = jute.CREATES | {jute.DELETE, jute.SET_DATA, jute.MULTI}
_LISTINGS = frozenset({jute.GET_CHILDREN, jute.GET_CHILDREN2})
_MULTI_WRITES = jute.CREATES | {jute.DELETE, jute.SET_DATA, jute.CHECK}


@dataclass
class _Awaited:
    """A request whose reply is mapped back."""

    xid: int
    opcode: int
    creates: tuple[Renamed | None, ...] = ()  # per operation: a renamed create
    directory: str | None = None  # a listing of endpoint names


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


class Rewriter:
    """One connection's rewriting state: what its replies and events map back."""

    def __init__(self, names: Names, log: FilteringBoundLogger) -> None:
        self.names = names
        self.log = log
        self._awaited: deque[_Awaited] = deque()
        self._asked: dict[str, str] = {}  # path as sent -> the app's path

    def request(self, frame: bytes, wait: bool) -> bytes:
        """The request as it goes upstream. With ``wait``, raises NotReady (and changes
        nothing) when it may name the app's endpoints before the mapping is known."""
        xid, opcode = jute.request_header(frame)
        handler = _REQUESTS.get(opcode)
        if handler is None:
            return frame
        edit = handler(self, frame, xid, opcode, wait)
        for op, renamed, note in edit.renamed:
            self._remember(renamed)
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
        """The reply or watch event as the app sees it."""
        xid = jute.reply_xid(frame)
        if xid == jute.WATCH_EVENT:
            return self._event(frame) if self._asked else frame
        awaited = self._awaited
        # Replies come in request order: one for a later request means an earlier one's
        # never comes.
        while awaited and 0 <= awaited[0].xid < xid:
            awaited.popleft()
        if not awaited or awaited[0].xid != xid:
            return frame
        request = awaited.popleft()
        if jute.reply_error(frame) != 0 and request.opcode != jute.MULTI:
            return frame
        if request.opcode == jute.MULTI:
            return self._multi_reply(frame, request)
        if request.opcode in _LISTINGS:
            return self._listing_reply(frame, request)
        return self._create_reply(frame, request)

    # -- requests ---------------------------------------------------------------------------

    def _path_first(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        path = cursor.string()
        found = self.names.rename(path, wait)
        edit = _Edit(frame)
        if opcode in _LISTINGS and self.names.lists_endpoints(path):
            edit.awaited = _Awaited(xid, opcode, directory=path)
        edit.add(jute.OPCODE_NAMES[opcode], found)
        if isinstance(found, Renamed):
            edit.frame = jute.frame(frame[4:12] + jute.encode_string(found.sent) + cursor.rest())
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
        edit.add(jute.OPCODE_NAMES[opcode], found, note)
        if opcode in jute.CREATES:
            edit.awaited = _Awaited(xid, opcode, creates=(found,))
        body = jute.encode_string(found.sent) + jute.encode_buffer(new_data) + cursor.rest()
        edit.frame = jute.frame(frame[4:12] + body)
        return edit

    def _multi(self, frame: bytes, xid: int, opcode: int, wait: bool) -> _Edit:
        cursor = Cursor(frame, 12)
        parts = [frame[4:12]]
        creates: list[Renamed | None] = []
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
            edit.add(f"multi.{jute.OPCODE_NAMES[kind]}", found, note)
            creates.append(found if kind in jute.CREATES and isinstance(found, Renamed) else None)
            sent = found.sent if isinstance(found, Renamed) else path
            has_data = kind != jute.DELETE and kind != jute.CHECK
            parts += [head, jute.encode_string(sent)]
            parts += [jute.encode_buffer(new_data)] if has_data else []
            parts.append(frame[tail : cursor.position])
        if edit.renamed:
            edit.frame = jute.frame(b"".join(parts))
            if any(creates):
                edit.awaited = _Awaited(xid, opcode, creates=tuple(creates))
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

    # -- replies ----------------------------------------------------------------------------

    def _create_reply(self, frame: bytes, request: _Awaited) -> bytes:
        cursor = Cursor(frame, 20)
        path = cursor.string()
        asked = _asked_path(request.creates[0], path)
        if asked == path:
            return frame
        return jute.frame(frame[4:20] + jute.encode_string(asked) + cursor.rest())

    def _multi_reply(self, frame: bytes, request: _Awaited) -> bytes:
        if len(frame) == 4 + jute.REPLY_HEADER:
            return frame  # refused as a whole (an error without results)
        cursor = Cursor(frame, 20)
        parts = [frame[4:20]]
        changed = False
        for created in itertools.chain(request.creates, itertools.repeat(None)):
            start = cursor.position
            kind, done, _ = cursor.multi_header()
            if done or kind not in _RESULT_TAILS:
                parts.append(frame[start:])
                break
            if kind in (jute.CREATE, jute.CREATE2):
                path = cursor.string()
                asked = _asked_path(created, path)
                changed |= asked != path
                parts += [frame[start : start + 9], jute.encode_string(asked)]
                start = cursor.position
            _RESULT_TAILS[kind](cursor)
            parts.append(frame[start : cursor.position])
        return jute.frame(b"".join(parts)) if changed else frame

    def _listing_reply(self, frame: bytes, request: _Awaited) -> bytes:
        assert request.directory is not None
        cursor = Cursor(frame, 20)
        children = cursor.strings()
        shown = self.names.shown(request.directory, children) if children else None
        if shown is None:
            return frame
        return jute.frame(frame[4:20] + jute.encode_strings(shown) + cursor.rest())

    def _event(self, frame: bytes) -> bytes:
        cursor = Cursor(frame, 20)
        cursor.skip(8, "event type and state")
        path = cursor.string()
        asked = self._asked.get(path) if path is not None else None
        if asked is None:
            return frame
        return jute.frame(frame[4:28] + jute.encode_string(asked) + cursor.rest())

    def _remember(self, renamed: Renamed) -> None:
        self._asked.pop(renamed.sent, None)
        self._asked[renamed.sent] = renamed.asked
        if len(self._asked) > REMEMBERED:
            del self._asked[next(iter(self._asked))]


def _asked_path(created: Renamed | None, path: str | None) -> str | None:
    """A created path as the app named it (a sequential node keeps its suffix)."""
    if created is None or path is None or not path.startswith(created.sent):
        return path
    return created.asked + path[len(created.sent) :]


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


def _skip_strings(cursor: Cursor) -> None:
    cursor.strings()


def _skip_data_and_stat(cursor: Cursor) -> None:
    cursor.buffer()
    cursor.skip(jute.STAT, "a stat")


# What follows a multi result's header (after the path, for creates).
_RESULT_TAILS: dict[int, Callable[[Cursor], None]] = {
    jute.CREATE: lambda cursor: None,
    jute.CREATE2: lambda cursor: cursor.skip(jute.STAT, "a stat"),
    jute.DELETE: lambda cursor: None,
    jute.CHECK: lambda cursor: None,
    jute.SET_DATA: lambda cursor: cursor.skip(jute.STAT, "a stat"),
    jute.GET_CHILDREN: _skip_strings,
    jute.GET_DATA: _skip_data_and_stat,
    jute.ERROR: lambda cursor: cursor.skip(4, "an error code"),
}

_Handler = Callable[[Rewriter, bytes, int, int, bool], _Edit]
_PATH_FIRST = (
    jute.DELETE, jute.EXISTS, jute.GET_DATA, jute.GET_ACL, jute.SET_ACL, jute.GET_CHILDREN,
    jute.GET_CHILDREN2, jute.CHECK, jute.CHECK_WATCHES, jute.REMOVE_WATCHES,
    jute.DELETE_CONTAINER, jute.ADD_WATCH,
)  # fmt: skip
_REQUESTS: dict[int, _Handler] = {
    **dict.fromkeys(_PATH_FIRST, Rewriter._path_first),
    **dict.fromkeys((*jute.CREATES, jute.SET_DATA), Rewriter._with_data),
    jute.MULTI: Rewriter._multi,
    jute.SET_WATCHES: Rewriter._set_watches,
    jute.SET_WATCHES2: Rewriter._set_watches,
}
