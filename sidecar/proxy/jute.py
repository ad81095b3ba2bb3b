"""ZooKeeper's wire format (jute): frames, and the few records the proxy reads and writes.

Every frame is a 4-byte big-endian length and a body. Strings and buffers are a 4-byte length
(-1: null) and bytes, vectors a 4-byte count and items. Only what the proxy rewrites is ever
decoded; everything else is relayed as the bytes that came in. A frame that cannot be split
or decoded raises :class:`CloseConnection`: the one connection it came on is closed, as the
server itself would close it.
"""

from __future__ import annotations

import struct

# jute.maxbuffer's default on servers and Java clients, and the slack servers allow beyond it
# for request headers: larger frames are rejected by ZooKeeper too.
MAXBUFFER = 0xFFFFF
SLACK = 1024
MAX_FRAME = MAXBUFFER + SLACK
# Replies are not bounded by jute.maxbuffer (a listing may be larger): any length a frame
# can say.
MAX_REPLY = 2**31 - 1

# Opcodes (org.apache.zookeeper.ZooDefs.OpCode)
CREATE = 1
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_ACL = 6
SET_ACL = 7
GET_CHILDREN = 8
GET_CHILDREN2 = 12
CHECK = 13
MULTI = 14
CREATE2 = 15
CHECK_WATCHES = 17
REMOVE_WATCHES = 18
CREATE_CONTAINER = 19
DELETE_CONTAINER = 20
CREATE_TTL = 21
MULTI_READ = 22
SET_WATCHES = 101
GET_EPHEMERALS = 103
GET_ALL_CHILDREN_NUMBER = 104
SET_WATCHES2 = 105
ADD_WATCH = 106
ERROR = -1  # a failed operation's result inside a multi reply

OPCODE_NAMES = {
    CREATE: "create", DELETE: "delete", EXISTS: "exists", GET_DATA: "getData",
    SET_DATA: "setData", GET_ACL: "getACL", SET_ACL: "setACL", GET_CHILDREN: "getChildren",
    GET_CHILDREN2: "getChildren2", CHECK: "check", MULTI: "multi", CREATE2: "create2",
    CHECK_WATCHES: "checkWatches", REMOVE_WATCHES: "removeWatches",
    CREATE_CONTAINER: "createContainer", DELETE_CONTAINER: "deleteContainer",
    CREATE_TTL: "createTTL", MULTI_READ: "multiRead", SET_WATCHES: "setWatches",
    GET_EPHEMERALS: "getEphemerals", GET_ALL_CHILDREN_NUMBER: "getAllChildrenNumber",
    SET_WATCHES2: "setWatches2", ADD_WATCH: "addWatch",
}  # fmt: skip
CREATES = frozenset({CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL})

# Special reply xids
WATCH_EVENT = -1

REQUEST_HEADER = 8  # xid, type
REPLY_HEADER = 16  # xid, zxid, err
STAT = 68  # org.apache.zookeeper.data.Stat: 6 longs, 5 ints

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_HEADER = struct.Struct(">ii")
_MULTI_HEADER = struct.Struct(">i?i")


class CloseConnection(Exception):
    """The stream cannot be relayed any further; the message says why, in one line."""


class FrameReader:
    """Splits one direction of a connection into frames, each with its length prefix. The
    start of a frame not yet complete is kept in one buffer that grows in place."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.pending = bytearray()  # the start of a frame not yet complete

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data``; raise CloseConnection on an impossible length."""
        if self.pending:
            self.pending += data
            buffer: bytes | bytearray = self.pending
        else:
            buffer = data
        frames = []
        position, end = 0, len(buffer)
        while end - position >= 4:
            length = _INT.unpack_from(buffer, position)[0]
            if not 0 <= length <= self.max_frame:
                raise CloseConnection(
                    f"frame length {length} outside 0..{self.max_frame} (jute.maxbuffer)"
                )
            stop = position + 4 + length
            if stop > end:
                break
            frames.append(bytes(buffer[position:stop]))
            position = stop
        if buffer is self.pending:
            del self.pending[:position]
        else:
            self.pending = bytearray(buffer[position:])
        return frames


class Cursor:
    """Reads jute fields from a frame, front to back."""

    def __init__(self, frame: bytes, position: int) -> None:
        self.frame = frame
        self.position = position

    def _take(self, size: int, what: str) -> int:
        start = self.position
        if size < 0 or start + size > len(self.frame):
            raise CloseConnection(f"{what} runs past the end of its frame")
        self.position = start + size
        return start

    def integer(self) -> int:
        value: int = _INT.unpack_from(self.frame, self._take(4, "an int"))[0]
        return value

    def multi_header(self) -> tuple[int, bool, int]:
        """``MultiHeader{int type, boolean done, int err}``."""
        found: tuple[int, bool, int] = _MULTI_HEADER.unpack_from(
            self.frame, self._take(9, "a multi header")
        )
        return found

    def skip(self, size: int, what: str) -> None:
        self._take(size, what)

    def buffer(self) -> bytes | None:
        length = self.integer()
        if length == -1:
            return None
        start = self._take(length, "a buffer")
        return self.frame[start : start + length]

    def string(self) -> str | None:
        """A ``ustring``; bytes that are not UTF-8 survive a round trip unchanged."""
        raw = self.buffer()
        return None if raw is None else raw.decode("utf-8", "surrogateescape")

    def strings(self) -> list[str | None] | None:
        """A ``vector<ustring>``."""
        count = self.integer()
        if count == -1:
            return None
        if count < 0 or count * 4 > len(self.frame) - self.position:
            raise CloseConnection(f"vector of {count} strings does not fit its frame")
        return [self.string() for _ in range(count)]

    def rest(self) -> bytes:
        return self.frame[self.position :]


def request_header(frame: bytes) -> tuple[int, int]:
    """``(xid, opcode)`` of a request frame."""
    if len(frame) < 4 + REQUEST_HEADER:
        raise CloseConnection("request shorter than its header")
    header: tuple[int, int] = _HEADER.unpack_from(frame, 4)
    return header


def reply_xid(frame: bytes) -> int:
    """The xid of a reply frame."""
    if len(frame) < 4 + REPLY_HEADER:
        raise CloseConnection("reply shorter than its header")
    xid: int = _INT.unpack_from(frame, 4)[0]
    return xid


def reply_zxid(frame: bytes) -> int:
    """The zxid of a reply frame."""
    zxid: int = _LONG.unpack_from(frame, 8)[0]
    return zxid


def reply_error(frame: bytes) -> int:
    """The err field of a reply frame (0: the body follows)."""
    err: int = _INT.unpack_from(frame, 16)[0]
    return err


def encode_int(value: int) -> bytes:
    return _INT.pack(value)


def encode_multi_header(kind: int, done: bool, err: int) -> bytes:
    return _MULTI_HEADER.pack(kind, done, err)


def encode_buffer(value: bytes | None) -> bytes:
    return _INT.pack(-1) if value is None else _INT.pack(len(value)) + value


def encode_string(value: str | None) -> bytes:
    return encode_buffer(None if value is None else value.encode("utf-8", "surrogateescape"))


def encode_strings(values: list[str | None] | None) -> bytes:
    if values is None:
        return _INT.pack(-1)
    return _INT.pack(len(values)) + b"".join(encode_string(v) for v in values)


def frame(body: bytes) -> bytes:
    """A frame: the length prefix, then ``body``."""
    return _INT.pack(len(body)) + body


def granted_timeout_ms(frame: bytes) -> int | None:
    """The session timeout a ``ConnectResponse`` grants (``None`` if the frame is too
    short)."""
    # ConnectResponse{int protocolVersion, int timeOut, long sessionId, buffer passwd}
    if len(frame) < 4 + 8:
        return None
    timeout: int = _INT.unpack_from(frame, 4 + 4)[0]
    return timeout


def granted_session(frame: bytes) -> int | None:
    """The session id a ``ConnectResponse`` gives (``None`` if the frame is too short)."""
    if len(frame) < 4 + 16:
        return None
    session: int = _LONG.unpack_from(frame, 4 + 8)[0]
    return session


def connect_timeout_ms(frame: bytes) -> int | None:
    """The session timeout a ``ConnectRequest`` asks for (``None`` if the frame is too short)."""
    # ConnectRequest{int protocolVersion, long lastZxidSeen, int timeOut, ...}
    if len(frame) < 4 + 16:
        return None
    timeout: int = _INT.unpack_from(frame, 4 + 12)[0]
    return timeout
