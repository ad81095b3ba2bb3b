"""In-flight rewriting: the app's own names travel published, and come back as the app named
them; everything else travels byte for byte."""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from sidecar import urls
from sidecar.model import Endpoint, PublishedPort
from sidecar.proxy import jute
from sidecar.proxy.jute import CloseConnection, Cursor
from sidecar.proxy.mapper import InventoryMapper
from sidecar.proxy.names import Names, NotReady, Renamed
from sidecar.proxy.requests import Refused, Rewriter
from tests.unit.proxy_frames import (
    ADVERTISED,
    APP_ADDRESS,
    MINE,
    OPEN_ACL,
    OTHERS,
    PROVIDERS,
    PUBLISHED,
    STAT,
    app_container,
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
from tests.unit.scenarios import as_bytes, instance_json, url_name

APP = "/services/shop-provider"


def rewriter(found: InventoryMapper | None = None) -> Rewriter:
    return Rewriter(Names(found or mapper(), ["/services"]), structlog.get_logger())


def test_create_travels_published_and_its_reply_comes_back_as_asked() -> None:
    """A create of the app's provider node: only host:port in the name changes, the data
    (Curator's default, the IP) reads the advertised host, ACL and flags are untouched; the
    created path in the reply is the app's own."""
    proxy = rewriter()
    sent = proxy.request(request(5, jute.CREATE2, create_body(MINE, APP_ADDRESS.encode())), True)

    cursor = Cursor(sent, 12)
    assert cursor.string() == PUBLISHED
    assert cursor.buffer() == ADVERTISED.encode()
    assert cursor.rest() == OPEN_ACL + struct.pack(">i", 1)
    assert sent[4:12] == struct.pack(">ii", 5, jute.CREATE2)
    back = proxy.reply(reply(5, jute.encode_string(PUBLISHED) + STAT))
    assert back == reply(5, jute.encode_string(MINE) + STAT)


def test_only_host_and_port_bytes_differ() -> None:
    """The published name is the registered one with host:port swapped, nothing else."""
    sent = rewriter().request(request(1, jute.CREATE, create_body(MINE, b"")), True)
    name = Cursor(sent, 12).string()
    assert name is not None
    assert name == PROVIDERS + "/" + urls.parse(MINE.rsplit("/", 1)[1]).with_endpoint(
        Endpoint(ADVERTISED, 32768)
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"172.17.0.5", b"192.0.2.10"),
        (b"172.17.0.5:20880", b"192.0.2.10:32768"),
        (b"", b""),
        (b"hello", b"hello"),
        (b"10.1.4.2", b"10.1.4.2"),
        (b"\xff\x00", b"\xff\x00"),
    ],
)
def test_data_that_spells_the_container_address_is_published(data: bytes, expected: bytes) -> None:
    """Node data that is just the container's address (or address:port) reads the published
    one; any other data stays."""
    sent = rewriter().request(request(1, jute.CREATE, create_body(MINE, data)), True)
    cursor = Cursor(sent, 12)
    cursor.string()
    assert cursor.buffer() == expected


def test_create_ttl_keeps_its_ttl_and_sequential_suffix_comes_back() -> None:
    """createTTL's trailing ttl survives; a sequential create's suffix is kept on the way
    back."""
    proxy = rewriter()
    sent = proxy.request(request(9, jute.CREATE_TTL, create_body(MINE, b"", 2, ttl=60000)), True)
    assert sent.endswith(struct.pack(">iq", 2, 60000))
    back = proxy.reply(reply(9, jute.encode_string(PUBLISHED + "0000000007") + STAT))
    assert Cursor(back, 20).string() == MINE + "0000000007"


@pytest.mark.parametrize(
    "opcode",
    [jute.DELETE, jute.EXISTS, jute.GET_DATA, jute.CHECK, jute.GET_CHILDREN, jute.ADD_WATCH,
     jute.GET_ACL, jute.REMOVE_WATCHES],
)  # fmt: skip
def test_path_requests_name_the_published_node(opcode: int) -> None:
    """Requests that start with a path address the published node, the rest unchanged."""
    sent = rewriter().request(request(3, opcode, path_body(MINE, b"\x00\x00\x00\x04")), True)
    assert sent == request(3, opcode, path_body(PUBLISHED, b"\x00\x00\x00\x04"))


@pytest.mark.parametrize(
    "path",
    [
        OTHERS,
        PROVIDERS,
        f"/dubbo/com.example.DemoService/consumers/{url_name(APP_ADDRESS, 20880)}",
        f"{PROVIDERS}/not-a-url",
        f"{PROVIDERS}/{url_name(APP_ADDRESS, 20880, protocol='empty')}",
        f"{APP}/10.1.4.2:20880",
        "/zookeeper/quota",
    ],
)
def test_other_paths_travel_byte_for_byte(path: str) -> None:
    """Another host's provider, consumers, directories, names that are not URLs and unknown
    protocols pass exactly as they came."""
    frame = request(3, jute.CREATE, create_body(path, APP_ADDRESS.encode()))
    assert rewriter().request(frame, True) is frame


@pytest.mark.parametrize(
    ("xid", "opcode", "body"),
    [
        (-4, 100, struct.pack(">i", 0) + jute.encode_string("digest") + jute.encode_buffer(b"u:p")),
        (4, 102, jute.encode_buffer(b"\x60\x82sasl-token")),
        (-2, 11, b""),
        (6, 999, path_body(MINE)),
        (7, 22, path_body(MINE)),
        (8, 9, jute.encode_string(MINE)),
    ],
)
def test_unknown_opcodes_auth_sasl_and_pings_pass_untouched(
    xid: int, opcode: int, body: bytes
) -> None:
    """What the proxy does not rewrite is never decoded: the same bytes go out."""
    frame = request(xid, opcode, body)
    assert rewriter().request(frame, True) is frame


def test_instance_json_is_rewritten_like_replace_mode() -> None:
    """Dubbo 3's instance create under the services root: the name is the published
    endpoint, the JSON exactly what replace mode writes (instances.rewrite)."""
    original = as_bytes(instance_json())
    proxy = rewriter()
    sent = proxy.request(
        request(2, jute.CREATE2, create_body(f"{APP}/172.17.0.5:20880", original)), True
    )
    cursor = Cursor(sent, 12)
    assert cursor.string() == f"{APP}/192.0.2.10:32768"
    data = cursor.buffer()
    assert data is not None
    doc = json.loads(data)
    assert list(doc) == list(instance_json())
    assert (doc["id"], doc["address"], doc["port"]) == ("192.0.2.10:32768", ADVERTISED, 32768)
    assert doc["payload"]["id"] == "192.0.2.10:32768"
    endpoints = json.loads(doc["payload"]["metadata"]["dubbo.endpoints"])
    assert endpoints == [{"port": 32768, "protocol": "dubbo"}, {"port": 40051, "protocol": "tri"}]
    assert doc["payload"]["metadata"]["dubbo.metadata.revision"] == "a1b2c3d4e5"


def test_instance_update_is_a_set_data_of_the_published_node() -> None:
    """Curator's updateService (setData of its own path, any version) updates the published
    instance, with the JSON rewritten again."""
    changed = instance_json()
    changed["payload"]["metadata"]["dubbo.metadata.revision"] = "ffff"  # type: ignore[index]
    frame = request(4, jute.SET_DATA, set_data_body(f"{APP}/172.17.0.5:20880", as_bytes(changed)))
    sent = rewriter().request(frame, True)
    cursor = Cursor(sent, 12)
    assert cursor.string() == f"{APP}/192.0.2.10:32768"
    data = cursor.buffer()
    assert data is not None
    assert json.loads(data)["payload"]["metadata"]["dubbo.metadata.revision"] == "ffff"
    assert cursor.rest() == struct.pack(">i", -1)


def test_malformed_instance_json_keeps_its_data_but_the_name_is_published() -> None:
    """Data the sidecar cannot read stays as it is (and the log says so); the node is still
    the published one, so that later requests find it."""
    with capture_logs() as logs:
        sent = rewriter().request(
            request(2, jute.CREATE, create_body(f"{APP}/172.17.0.5:20880", b"{nope")), True
        )
    cursor = Cursor(sent, 12)
    assert cursor.string() == f"{APP}/192.0.2.10:32768"
    assert cursor.buffer() == b"{nope"
    [line] = [entry for entry in logs if entry["event"] == "proxy_rewrite"]
    assert line["note"].startswith("instance data left as it is")


def test_multi_rewrites_each_operation_and_maps_created_paths_back() -> None:
    """Every operation of a multi is rewritten; the create results come back as the app
    asked, other results untouched."""
    ops = multi_body(
        (jute.CHECK, jute.encode_string(MINE) + struct.pack(">i", 3)),
        (jute.DELETE, jute.encode_string(MINE) + struct.pack(">i", 3)),
        (jute.CREATE, create_body(MINE, APP_ADDRESS.encode())),
        (jute.CREATE2, create_body(OTHERS, b"")),
        (jute.SET_DATA, set_data_body(MINE, b"x")),
    )
    proxy = rewriter()
    sent = proxy.request(request(11, jute.MULTI, ops), True)
    assert sent == request(11, jute.MULTI, multi_body(
        (jute.CHECK, jute.encode_string(PUBLISHED) + struct.pack(">i", 3)),
        (jute.DELETE, jute.encode_string(PUBLISHED) + struct.pack(">i", 3)),
        (jute.CREATE, create_body(PUBLISHED, ADVERTISED.encode())),
        (jute.CREATE2, create_body(OTHERS, b"")),
        (jute.SET_DATA, set_data_body(PUBLISHED, b"x")),
    ))  # fmt: skip
    results = [
        jute.encode_multi_header(jute.CHECK, False, 0),
        jute.encode_multi_header(jute.DELETE, False, 0),
        jute.encode_multi_header(jute.CREATE, False, 0) + jute.encode_string(PUBLISHED),
        jute.encode_multi_header(jute.CREATE2, False, 0) + jute.encode_string(OTHERS) + STAT,
        jute.encode_multi_header(jute.SET_DATA, False, 0) + STAT,
        jute.encode_multi_header(-1, True, -1),
    ]
    back = proxy.reply(reply(11, b"".join(results)))
    results[2] = jute.encode_multi_header(jute.CREATE, False, 0) + jute.encode_string(MINE)
    assert back == reply(11, b"".join(results))


def test_multi_with_an_unknown_operation_rewrites_up_to_it_and_passes_the_rest() -> None:
    """An operation the proxy does not know ends its decoding: the operations before it are
    rewritten, the rest travels as it came."""
    unknown = jute.encode_multi_header(77, False, -1) + b"\x00\x01\x02"
    body = multi_body((jute.DELETE, jute.encode_string(MINE) + struct.pack(">i", -1)))
    body = body.removesuffix(jute.encode_multi_header(-1, True, -1)) + unknown
    sent = rewriter().request(request(12, jute.MULTI, body), True)
    assert sent.endswith(unknown)
    assert Cursor(sent, 12 + 9).string() == PUBLISHED


def test_failed_multi_without_results_passes() -> None:
    """A multi refused as a whole (an error reply without a body) reaches the client as is."""
    proxy = rewriter()
    proxy.request(request(13, jute.MULTI, multi_body((jute.CREATE, create_body(MINE, b"")))), True)
    refused = reply(13, b"", err=-102)
    assert proxy.reply(refused) is refused


def test_set_watches_are_renamed_and_events_come_back_under_the_watched_name() -> None:
    """A reconnecting client's setWatches2 names the published nodes; an event on a
    published node reaches the app under the name it watched; other events pass."""
    proxy = rewriter()
    vectors = [[MINE, OTHERS], [], [PROVIDERS], [MINE], []]
    body = struct.pack(">q", 0x55) + b"".join(jute.encode_strings(list(v)) for v in vectors)
    sent = proxy.request(request(-8, jute.SET_WATCHES2, body), True)
    assert body_strings(sent, 20) == [PUBLISHED, OTHERS]
    assert sent[12:20] == struct.pack(">q", 0x55)
    assert proxy.reply(event(PUBLISHED)) == event(MINE)
    other = event(OTHERS)
    assert proxy.reply(other) is other


def test_listing_shows_the_apps_own_registration_under_its_name() -> None:
    """In a providers listing the app's published name reads as the app registered it;
    other hosts' names stay, and a listing that already holds the app's name is left."""
    proxy = rewriter()
    proxy.request(request(20, jute.GET_CHILDREN2, path_body(PROVIDERS)), True)
    proxy.request(request(21, jute.GET_CHILDREN, path_body(PROVIDERS)), True)
    children = [PUBLISHED.rsplit("/", 1)[1], OTHERS.rsplit("/", 1)[1]]
    back = proxy.reply(reply(20, jute.encode_strings(list(children)) + STAT))
    assert body_strings(back, 20) == [MINE.rsplit("/", 1)[1], OTHERS.rsplit("/", 1)[1]]
    assert back.endswith(STAT)
    both = [PUBLISHED.rsplit("/", 1)[1], MINE.rsplit("/", 1)[1]]
    unchanged = reply(21, jute.encode_strings(list(both)))
    assert proxy.reply(unchanged) is unchanged


def test_instance_listing_shows_the_apps_instance_under_its_name() -> None:
    """Children of an application's instance directory: the app's published instance reads
    as its container endpoint."""
    proxy = rewriter()
    proxy.request(request(30, jute.GET_CHILDREN, path_body(APP)), True)
    back = proxy.reply(reply(30, jute.encode_strings(["192.0.2.10:32768", "10.1.4.2:20880"])))
    assert body_strings(back, 20) == ["172.17.0.5:20880", "10.1.4.2:20880"]


def test_error_replies_and_other_xids_pass() -> None:
    """A failed create's reply (no body) and replies nobody waits for are relayed as is."""
    proxy = rewriter()
    proxy.request(request(40, jute.CREATE, create_body(MINE, b"")), True)
    exists = reply(40, b"", err=-110)
    assert proxy.reply(exists) is exists
    ping = reply(-2, b"")
    assert proxy.reply(ping) is ping


def test_replies_to_deletes_and_data_set_on_the_apps_node_pass() -> None:
    """A delete and a setData of the app's node are followed for what they change, and
    their replies (no path in them) reach the app as the server sent them."""
    proxy = rewriter()
    proxy.request(request(41, jute.DELETE, path_body(MINE, struct.pack(">i", -1))), True)
    deleted = reply(41, b"")
    assert proxy.reply(deleted) is deleted
    proxy.request(request(42, jute.SET_DATA, set_data_body(MINE, b"weight=1")), True)
    stat = reply(42, STAT)
    assert proxy.reply(stat) is stat


def test_a_write_of_an_unpublished_port_of_the_app_is_refused() -> None:
    """The app's address on a port without a binding: a create would store the container's
    address, so it is refused, with one log line saying why; a read of it passes; with
    pass_unmapped (the opt-in) the create goes as it came."""
    only = mapper(app_container(PublishedPort(50051, "0.0.0.0", 40051)))
    frame = request(1, jute.CREATE, create_body(MINE, b""))
    with capture_logs() as logs, pytest.raises(Refused, match="is not published"):
        rewriter(only).request(frame, True)
    [line] = logs
    assert line["event"] == "proxy_request_refused"
    assert line["original"] == f"{APP_ADDRESS}:20880"
    read = request(2, jute.GET_DATA, path_body(MINE))
    assert rewriter(only).request(read, True) is read
    passing = Rewriter(Names(only, ["/services"]), structlog.get_logger(), pass_unmapped=True)
    with capture_logs() as logs:
        assert passing.request(frame, True) is frame
    assert [e["event"] for e in logs] == ["proxy_rewrite_skipped"]


def test_unknown_mapping_waits_then_is_refused_with_a_reason() -> None:
    """Before the mapping is known, a request that may be the app's raises NotReady and
    changes nothing; told not to wait, a write is refused and logged; other requests never
    wait."""
    proxy = rewriter(InventoryMapper())
    frame = request(1, jute.CREATE, create_body(MINE, b""))
    with pytest.raises(NotReady):
        proxy.request(frame, True)
    other = request(2, jute.CREATE, create_body("/app/config", b""))
    assert proxy.request(other, True) is other
    with capture_logs() as logs, pytest.raises(Refused):
        proxy.request(frame, False)
    assert logs[0]["event"] == "proxy_request_refused"
    assert logs[0]["reason"] == "the app's port bindings were not known in time"


def test_truncated_request_closes_the_connection() -> None:
    """A create whose path runs past its frame is malformed: the connection closes."""
    frame = request(1, jute.CREATE, struct.pack(">i", 500) + b"/dubbo")
    with pytest.raises(CloseConnection):
        rewriter().request(frame, True)


@given(st.sampled_from(["172.17.0.5", "fd00::5"]), st.integers(1, 65535), st.integers(1, 65535),
       st.sampled_from(["dubbo", "tri", "rest"]))  # fmt: skip
def test_published_names_map_back_exactly(
    host: str, port: int, published: int, protocol: str
) -> None:
    """For any app endpoint, the listing shows back exactly the name the app registered."""
    container = replace(app_container(PublishedPort(port, "0.0.0.0", published)), addresses=(host,))
    names = Names(mapper(container), ["/services"])
    mine = f"{PROVIDERS}/{url_name(host, port, protocol)}"
    renamed = names.rename(mine, True)
    assert isinstance(renamed, Renamed)
    assert names.shown(PROVIDERS, [renamed.sent.rsplit("/", 1)[1]]) == [mine.rsplit("/", 1)[1]]


def test_mapper_maps_the_app_as_replace_mode_does_even_when_paused() -> None:
    """The inventory mapper follows labels (an advertised host of its own), maps a paused or
    unhealthy app anyway (it is registering, so it runs), and knows nothing of other
    addresses; before its first update it is not ready."""
    labelled = replace(app_container(), not_serving="unhealthy",
                       labels=(("dubbo-nat-sidecar.advertise-host", "203.0.113.7"),))  # fmt: skip
    found = mapper(labelled)
    assert found.advertised(Endpoint(APP_ADDRESS, 20880)) == Endpoint("203.0.113.7", 32768)
    assert found.container(Endpoint("203.0.113.7", 40051)) == Endpoint(APP_ADDRESS, 50051)
    assert found.advertised(Endpoint("10.1.4.2", 20880)) is None
    assert found.container(Endpoint(ADVERTISED, 32768)) is None
    assert not InventoryMapper().ready()
    assert InventoryMapper().advertised(Endpoint(APP_ADDRESS, 20880)) is None
