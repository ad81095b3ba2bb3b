"""Replies and watch events as the app sees them (no I/O): its own names and data, as it
wrote them, wherever they come back.

One rule for every connection of the app: what the app reads of its own registrations is
what it wrote. Created paths come back under the name asked for (a sequential node keeps its
suffix); listings of providers and instance directories, the paths of watch events and of
``getEphemerals``, and the results of ``multiRead`` show each of the app's published names
under its own (see ``names``); data read back of a node the app wrote through the proxy is
the bytes it wrote, while the published data is still what the proxy stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from sidecar.proxy import jute
from sidecar.proxy.jute import Cursor
from sidecar.proxy.names import Names, Renamed

# What a read of a multiRead or a listing is, for its reply: a directory whose children are
# named after endpoints, or one of the app's nodes, renamed.
Read = str | Renamed | None
_Asked = TypeVar("_Asked")


def created(frame: bytes, request: Renamed | None) -> bytes:
    """A create's reply: the created path as the app named it."""
    cursor = Cursor(frame, 20)
    path = cursor.string()
    asked = asked_path(request, path)
    if asked == path:
        return frame
    return jute.frame(frame[4:20] + jute.encode_string(asked) + cursor.rest())


def multi(frame: bytes, creates: Sequence[Renamed | None]) -> bytes:
    """A multi's results: each created path as the app named it."""

    def named(kind: int, cursor: Cursor, create: Renamed | None) -> bytes | None:
        if kind not in (jute.CREATE, jute.CREATE2):
            _RESULT_TAILS[kind](cursor)
            return None
        path = cursor.string()
        tail = cursor.position
        _RESULT_TAILS[kind](cursor)
        asked = asked_path(create, path)
        if asked == path:
            return None
        return jute.encode_string(asked) + cursor.frame[tail : cursor.position]

    return _each_result(frame, creates, named)


def listing(frame: bytes, directory: str, names: Names) -> bytes:
    """A getChildren(2) reply of an endpoint directory: the app's names shown as its own."""
    cursor = Cursor(frame, 20)
    children = cursor.strings()
    shown = names.shown(directory, children) if children else None
    if shown is None:
        return frame
    return jute.frame(frame[4:20] + jute.encode_strings(shown) + cursor.rest())


def data(frame: bytes, node: Renamed, names: Names) -> bytes:
    """A getData reply of one of the app's nodes: the data as the app wrote it."""
    cursor = Cursor(frame, 20)
    found = cursor.buffer()
    back = names.read_back(node, found)
    if back == found:
        return frame
    return jute.frame(frame[4:20] + jute.encode_buffer(back) + cursor.rest())


def paths(frame: bytes, names: Names) -> bytes:
    """A getEphemerals reply: each of the app's published paths as its own."""
    cursor = Cursor(frame, 20)
    found = cursor.strings()
    if not found:
        return frame
    shown = [names.original_path(p) or p if p else p for p in found]
    if shown == found:
        return frame
    return jute.frame(frame[4:20] + jute.encode_strings(shown) + cursor.rest())


def multi_read(frame: bytes, reads: Sequence[Read], names: Names) -> bytes:
    """A multiRead's results: listings and data as the app would read them one by one."""

    def as_read(kind: int, cursor: Cursor, read: Read) -> bytes | None:
        if kind == jute.GET_CHILDREN and isinstance(read, str):
            shown = names.shown(read, children) if (children := cursor.strings()) else None
            return None if shown is None else jute.encode_strings(shown)
        if kind == jute.GET_DATA and isinstance(read, Renamed):
            found = cursor.buffer()
            stat = cursor.position
            cursor.skip(jute.STAT, "a stat")
            back = names.read_back(read, found)
            return (
                None
                if back == found
                else jute.encode_buffer(back) + cursor.frame[stat : stat + jute.STAT]
            )
        _RESULT_TAILS[kind](cursor)
        return None

    return _each_result(frame, reads, as_read)


def _each_result(
    frame: bytes,
    asked: Sequence[_Asked],
    edit: Callable[[int, Cursor, _Asked | None], bytes | None],
) -> bytes:
    """A multi's or multiRead's results, each passed to ``edit`` with what its operation
    asked (in request order): it reads the result after its header and returns what replaces
    that, or None to keep it. Results of a kind the proxy does not know pass, with the rest."""
    if len(frame) == 4 + jute.REPLY_HEADER:
        return frame  # refused as a whole (an error without results)
    cursor = Cursor(frame, 20)
    parts = [frame[4:20]]
    changed = False
    for operation in itertools.chain(asked, itertools.repeat(None)):
        start = cursor.position
        kind, done, _ = cursor.multi_header()
        if done or kind not in _RESULT_TAILS:
            parts.append(frame[start:])
            break
        body = cursor.position
        replaced = edit(kind, cursor, operation)
        if replaced is None:
            parts.append(frame[start : cursor.position])
        else:
            parts += [frame[start:body], replaced]
            changed = True
    return jute.frame(b"".join(parts)) if changed else frame


def event(frame: bytes, names: Names) -> bytes:
    """A watch event: on one of the app's published nodes, under the app's own name."""
    cursor = Cursor(frame, 20)
    cursor.skip(8, "event type and state")
    path = cursor.string()
    shown = names.original_path(path) if path else None
    if shown is None:
        return frame
    return jute.frame(frame[4:28] + jute.encode_string(shown) + cursor.rest())


def failed(frame: bytes, multiple: bool) -> bool:
    """Whether a reply says its request was not done: an error, or (``multiple``: a multi's
    results) an operation that failed."""
    if jute.reply_error(frame) != 0:
        return True
    if not multiple or len(frame) < 20 + 9:
        return False
    cursor = Cursor(frame, 20)
    kind, done, _ = cursor.multi_header()
    while not done:
        if kind == jute.ERROR:
            return True
        if kind not in _RESULT_TAILS:
            return False
        if kind in (jute.CREATE, jute.CREATE2):
            cursor.string()
        _RESULT_TAILS[kind](cursor)
        kind, done, _ = cursor.multi_header()
    return False


def asked_path(created: Renamed | None, path: str | None) -> str | None:
    """A created path as the app named it (a sequential node keeps its suffix)."""
    if created is None or path is None or not path.startswith(created.sent):
        return path
    return created.asked + path[len(created.sent) :]


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
