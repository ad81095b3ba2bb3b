"""One view for the app: every connection of the app reads its own registrations as it wrote
them, names and data alike, in events, getEphemerals, getAllChildrenNumber, multiRead and
getData, whichever connection wrote them. No I/O: frames in, frames out."""

from __future__ import annotations

import struct

import structlog

from sidecar.proxy import jute
from sidecar.proxy.jute import Cursor
from sidecar.proxy.names import Names
from sidecar.proxy.requests import Rewriter
from tests.unit.proxy_frames import (
    ADVERTISED,
    APP_ADDRESS,
    MINE,
    OTHERS,
    PROVIDERS,
    PUBLISHED,
    STAT,
    body_strings,
    create_body,
    event,
    mapper,
    multi_body,
    path_body,
    reply,
    request,
    set_data_body,
)
from tests.unit.scenarios import as_bytes, instance_json

APP = "/services/shop-provider"


def two_connections() -> tuple[Rewriter, Rewriter]:
    """Two connections of one app through one proxy (one set of names)."""
    names = Names(mapper(), ["/services"])
    return Rewriter(names, structlog.get_logger()), Rewriter(names, structlog.get_logger())


def test_events_come_back_under_the_apps_name_on_every_connection() -> None:
    """A connection that never named the app's node gets an event on its published node
    under the app's name, as the one that created it would; a sequential node keeps its
    suffix; other hosts' nodes stay as they are."""
    first, second = two_connections()
    first.request(request(1, jute.CREATE, create_body(MINE, b"")), True)
    assert second.reply(event(PUBLISHED)) == event(MINE)
    assert second.reply(event(PUBLISHED + "0000000007")) == event(MINE + "0000000007")
    other = event(OTHERS)
    assert second.reply(other) is other


def test_get_ephemerals_names_the_apps_nodes_as_it_wrote_them() -> None:
    """getEphemerals lists the app's published node under its own name, the rest as is."""
    _, connection = two_connections()
    connection.request(request(2, jute.GET_EPHEMERALS, jute.encode_string("/dubbo")), True)
    back = connection.reply(reply(2, jute.encode_strings([PUBLISHED, "/dubbo/lock"])))
    assert body_strings(back, 20) == [MINE, "/dubbo/lock"]


def test_get_all_children_number_asks_for_the_published_node() -> None:
    """getAllChildrenNumber of the app's node names its published node (it exists)."""
    _, connection = two_connections()
    sent = connection.request(request(3, jute.GET_ALL_CHILDREN_NUMBER, path_body(MINE, b"")), True)
    assert Cursor(sent, 12).string() == PUBLISHED


def test_data_reads_back_as_the_app_wrote_it() -> None:
    """The app wrote its container address as data (Curator's default); the registry holds
    the published one; any connection reading it back gets the bytes the app wrote, while
    what others read is the published data."""
    first, second = two_connections()
    sent = first.request(request(4, jute.CREATE, create_body(MINE, APP_ADDRESS.encode())), True)
    assert Cursor(sent, 12).string() == PUBLISHED
    second.request(request(5, jute.GET_DATA, path_body(MINE)), True)
    back = second.reply(reply(5, jute.encode_buffer(ADVERTISED.encode()) + STAT))
    assert back == reply(5, jute.encode_buffer(APP_ADDRESS.encode()) + STAT)


def test_data_someone_else_set_on_the_apps_node_still_reads_as_the_apps_address() -> None:
    """Data set on the published node by someone else, spelling the published address: the
    app reads its own address; other data as it is."""
    _, connection = two_connections()
    connection.request(request(6, jute.GET_DATA, path_body(MINE)), True)
    back = connection.reply(reply(6, jute.encode_buffer(f"{ADVERTISED}:32768".encode()) + STAT))
    assert back == reply(6, jute.encode_buffer(f"{APP_ADDRESS}:20880".encode()) + STAT)
    connection.request(request(7, jute.GET_DATA, path_body(MINE)), True)
    other = reply(7, jute.encode_buffer(b"weight=100") + STAT)
    assert connection.reply(other) is other


def test_multi_read_reads_the_apps_node_and_lists_its_directory_as_it_wrote_them() -> None:
    """A multiRead of the app's node and of its providers directory: the request names the
    published node; the data and the listing come back as the app wrote them."""
    first, second = two_connections()
    first.request(request(8, jute.SET_DATA, set_data_body(MINE, APP_ADDRESS.encode())), True)
    body = multi_body((jute.GET_DATA, path_body(MINE, b"\x00")),
                      (jute.GET_CHILDREN, path_body(PROVIDERS, b"\x00")))  # fmt: skip
    sent = second.request(request(9, jute.MULTI_READ, body), True)
    cursor = Cursor(sent, 12)
    cursor.multi_header()
    assert cursor.string() == PUBLISHED
    results = (
        jute.encode_multi_header(jute.GET_DATA, False, 0) + jute.encode_buffer(ADVERTISED.encode())
        + STAT + jute.encode_multi_header(jute.GET_CHILDREN, False, 0)
        + jute.encode_strings([PUBLISHED.rsplit("/", 1)[1]])
        + jute.encode_multi_header(-1, True, -1)
    )  # fmt: skip
    back = Cursor(second.reply(reply(9, results)), 20)
    back.multi_header()
    assert back.buffer() == APP_ADDRESS.encode()
    back.skip(jute.STAT, "a stat")
    back.multi_header()
    assert back.strings() == [MINE.rsplit("/", 1)[1]]


def test_an_instance_reads_back_as_written_until_the_app_deletes_it() -> None:
    """The app's instance JSON is stored rewritten; the app reads back the JSON it wrote.
    Once it deleted the node, what is stored there reads as it is."""
    original = as_bytes(instance_json())
    mine = f"{APP}/172.17.0.5:20880"
    first, second = two_connections()
    sent = Cursor(first.request(request(10, jute.CREATE, create_body(mine, original)), True), 12)
    sent.string()
    stored = sent.buffer()
    assert stored is not None
    assert stored != original
    second.request(request(11, jute.GET_DATA, path_body(mine)), True)
    assert second.reply(reply(11, jute.encode_buffer(stored) + STAT)) == reply(
        11, jute.encode_buffer(original) + STAT
    )
    first.request(request(12, jute.DELETE, path_body(mine, struct.pack(">i", -1))), True)
    second.request(request(13, jute.GET_DATA, path_body(mine)), True)
    again = reply(13, jute.encode_buffer(stored) + STAT)
    assert second.reply(again) is again
