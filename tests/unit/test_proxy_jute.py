"""The proxy's frame codec: frames split however bytes arrive; anything else closes the one
connection, never raises anything else, never hangs."""

from __future__ import annotations

import contextlib
import struct

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.proxy import jute
from sidecar.proxy.jute import CloseConnection, FrameReader
from sidecar.proxy.names import Names
from sidecar.proxy.requests import Rewriter
from tests.unit.proxy_frames import MINE, PROVIDERS, create_body, mapper, request

bodies = st.lists(st.binary(max_size=64), max_size=8)


@given(bodies, st.lists(st.integers(min_value=1, max_value=40), min_size=1))
def test_frames_come_out_whole_however_the_bytes_are_cut(
    payloads: list[bytes], cuts: list[int]
) -> None:
    """Feeding a stream in any chunks yields exactly its frames, in order, prefix included."""
    stream = b"".join(jute.frame(p) for p in payloads)
    reader = FrameReader()
    frames: list[bytes] = []
    position = 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        frames += reader.feed(stream[position : position + cut])
        position += cut
    frames += reader.feed(stream[position:])
    assert frames == [jute.frame(p) for p in payloads]
    assert reader.pending == b""


@pytest.mark.parametrize("length", [-1, -(2**31), jute.MAX_FRAME + 1, 0x72756F6B])
def test_impossible_frame_length_closes_the_connection(length: int) -> None:
    """A negative length or one over jute.maxbuffer (plus its slack) is refused at once,
    before its body arrives."""
    with pytest.raises(CloseConnection, match=r"jute\.maxbuffer"):
        FrameReader().feed(struct.pack(">i", length))


def test_largest_frame_passes() -> None:
    """A frame of exactly the limit is a frame."""
    body = bytes(jute.MAX_FRAME)
    assert FrameReader().feed(jute.frame(body)) == [jute.frame(body)]


def test_strings_that_are_not_utf8_survive_a_round_trip() -> None:
    """Path bytes are kept exactly, whatever they are."""
    raw = b"/dubbo/\xff\xfe/providers"
    value = jute.Cursor(jute.encode_buffer(raw), 0).string()
    assert value is not None
    assert jute.encode_string(value) == jute.encode_buffer(raw)


def _rewriter() -> Rewriter:
    return Rewriter(Names(mapper(), ["/services"]), structlog.get_logger())


@settings(max_examples=400, deadline=1000)
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_give_frames_or_close_nothing_else(data: bytes, wait: bool) -> None:
    """Arbitrary bytes through the decoder, as requests and as replies: either frames come
    out or CloseConnection is raised (NotReady never: the mapping is known)."""
    for as_request in (True, False):
        rewriter = _rewriter()
        try:
            for frame in FrameReader(4096).feed(data):
                out = rewriter.request(frame, wait) if as_request else rewriter.reply(frame)
                assert isinstance(out, bytes)
        except CloseConnection:
            pass


opcodes = st.sampled_from([1, 2, 3, 4, 5, 8, 12, 13, 14, 15, 19, 21, 101, 105, 106, 999])
# Requests whose replies the proxy decodes: a create, a multi and a listing of the app's.
awaited = st.sampled_from([
    (jute.CREATE2, create_body(MINE, b"")),
    (jute.MULTI, jute.encode_multi_header(1, False, -1) + create_body(MINE, b"")
     + jute.encode_multi_header(-1, True, -1)),
    (jute.GET_CHILDREN2, jute.encode_string(PROVIDERS) + b"\x00"),
])  # fmt: skip


@settings(max_examples=500, deadline=1000)
@given(opcodes, st.binary(max_size=300), awaited, st.binary(max_size=300))
def test_arbitrary_bodies_of_decoded_frames_give_a_frame_or_close(
    opcode: int, body: bytes, request_awaited: tuple[int, bytes], reply_body: bytes
) -> None:
    """Random bodies behind every opcode the proxy decodes, behind the replies it decodes
    (create, multi, listing) and behind a watch event never raise anything but
    CloseConnection."""
    rewriter = _rewriter()
    rewriter.request(request(7, *request_awaited), wait=False)
    with contextlib.suppress(CloseConnection):
        rewriter.request(request(8, opcode, body), wait=False)
    for frame in (
        jute.frame(struct.pack(">iqi", 7, 1, 0) + reply_body),
        jute.frame(struct.pack(">iqi", jute.WATCH_EVENT, -1, 0) + reply_body),
    ):
        with contextlib.suppress(CloseConnection):
            assert isinstance(rewriter.reply(frame), bytes)


@settings(max_examples=200, deadline=1000)
@given(st.binary(min_size=1, max_size=200))
def test_garbage_inside_a_multi_closes_or_passes(tail: bytes) -> None:
    """A multi whose operations are garbage after one real operation: a frame or a close."""
    body = jute.encode_multi_header(1, False, -1) + create_body(MINE, b"x") + tail
    try:
        out = _rewriter().request(request(7, jute.MULTI, body), wait=False)
    except CloseConnection:
        return
    assert out.endswith(tail)
