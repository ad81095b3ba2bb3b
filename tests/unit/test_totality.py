"""Every parser and rewriter is total: for any bytes or JSON value it answers, or raises only
its own "malformed" error, whose message quotes at most about 200 characters of the input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar import instances, labels, urls
from sidecar.fleet.work import parse_part
from sidecar.model import Endpoint
from sidecar.ownership import TAG, marker_from_state, read_marker
from sidecar.registry.sessions import parse_admin_connections, parse_cons
from sidecar.scope import peers_from
from tests.unit.scenarios import instance_json
from tests.unit.strategies import (
    EXAMPLES,
    any_text,
    digits,
    dumped,
    instance_nodes,
    json_values,
    url_names,
)

# A malformed-input message quotes ~200 characters of the value, plus its own words.
MESSAGE_LIMIT = 600


def _assert_short(exc: Exception) -> None:
    assert len(str(exc)) <= MESSAGE_LIMIT, str(exc)[:300]


# -- provider URL names --------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(url_names)
@example("dubbo%3A%2F%2F10.0.0.1%3A" + "1" * 5000 + "%2Fx")
@example("dubbo://10.0.0.1:" + "1" * 5000)
@example("dubbo%3A%2F%2F10.0.0.1%3A%C2%B2%2Fx")
@example("dubbo://10.0.0.1:²/x")
@example("dubbo://h\ud800:1/x")
def test_url_parsers_are_total(name: str) -> None:
    """urls.parse and parse_slowly answer or raise MalformedName; a parsed name's path,
    parameters and rewrite never fail, and the rewrite parses back to the new endpoint."""
    for parser in (urls.parse, urls.parse_slowly):
        try:
            parsed = parser(name)
        except urls.MalformedName as exc:
            _assert_short(exc)
            continue
        assert isinstance(parsed.path, str)
        assert isinstance(parsed.parameters, tuple)
        for endpoint in (Endpoint("192.0.2.10", 32768), Endpoint("2001:db8::1", 1)):
            assert urls.parse(parsed.with_endpoint(endpoint)).endpoint == endpoint


def test_huge_names_are_quoted_short() -> None:
    """A megabyte of host name or port digits is refused with a message of a few hundred
    characters."""
    for name in (
        "dubbo%3A%2F%2F" + "a" * 1_000_000 + "%3A20880%2Fx",
        "dubbo://10.0.0.1:" + "9" * 1_000_000,
        "dubbo://[" + "f" * 1_000_000 + "]:1/x",
    ):
        with pytest.raises(urls.MalformedName) as raised:
            urls.parse(name)
        _assert_short(raised.value)


# -- application-level instances -------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance_nodes())
@example(("172.17.0.5:20880", dumped({**instance_json(), "port": "__BIG__"})))
@example(("172.17.0.5:20880", b'{"address":"172.17.0.5","port":Infinity}'))
@example(("172.17.0.5:20880", dumped({**instance_json(), "name": "\ud800"})))
@example(("172.17.0.5:20880", b"[" * 100_000))
def test_instance_parse_and_rewrite_are_total(node: tuple[str, bytes]) -> None:
    """instances.parse answers or raises MalformedInstance; the rewrite of anything it
    accepts succeeds, is JSON, and parses back to the advertised endpoint."""
    name, data = node
    try:
        parsed = instances.parse(name, data)
    except instances.MalformedInstance as exc:
        _assert_short(exc)
        return
    new_name, new_data, _ = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), _half)
    assert instances.parse(new_name, new_data).endpoint == Endpoint("192.0.2.10", 32768)


def _half(port: int) -> int | None:
    return port // 2 or None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (instances.ENDPOINTS, ""),
        (instances.ENDPOINTS, None),
        (instances.METADATA_SERVICE, ""),
        (instances.METADATA_SERVICE, None),
    ],
)
def test_empty_or_null_metadata_strings_are_left_as_they_are(key: str, value: Any) -> None:
    """``dubbo.endpoints`` or the metadata service parameters that are "" or null carry no
    port: the instance is rewritten and that value stays exactly as it was."""
    doc: Any = instance_json()
    doc["payload"]["metadata"][key] = value
    parsed = instances.parse("172.17.0.5:20880", json.dumps(doc).encode())
    _, data, _ = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), _half)
    assert json.loads(data)["payload"]["metadata"][key] == value


# -- markers, leases, session origins, labels -------------------------------------------------

marker_fields = st.fixed_dictionaries(
    {},
    optional={
        "original": json_values,
        "container_endpoint": json_values | st.just("172.17.0.5:20880"),
        "container": json_values,
        "engine": json_values,
        "provider_session": json_values | st.just("0x2002"),
        "original_data": json_values,
    },
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(marker_fields.map(lambda d: {TAG: 1, **d}), json_values), st.binary(max_size=40))
@example(
    {TAG: 1, "original": "x", "container_endpoint": "1.2.3.4:²", "container": "c", "engine": "e"},
    b"",
)
@example({}, b"[" * 100_000)
def test_markers_are_read_or_ignored(doc: Any, tail: bytes) -> None:
    """read_marker and marker_from_state give a marker or None for any data or JSON value."""
    for data in (dumped(doc), dumped(doc) + tail, b'{"' + TAG.encode() + b'":' + tail):
        read_marker(data)
    marker_from_state(doc)
    if isinstance(doc, dict):
        marker_from_state({k: v for k, v in doc.items() if k != TAG})


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.dictionaries(
        any_text | st.sampled_from(["host", "app-c1"]),
        st.tuples(st.integers(), st.binary(max_size=40) | json_values.map(dumped)),
        max_size=4,
    )
)
@example({"app-c1": (1, b"[" * 100_000)})
@example({"app-c1": (1, b'{"container_name": ' + b"[" * 900 + b"]" * 900 + b"}")})
def test_leases_are_read_whatever_their_data(leases: dict[str, tuple[int, bytes]]) -> None:
    """peers_from reads any lease data (unreadable data just says less about its holder)."""
    peers_from(leases, "host")


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    any_text
    | st.builds(
        lambda a, s: f" /{a}:5[1](queued=0,sid=0x{s},lop=x)\n",
        any_text,
        any_text | st.sampled_from(["1" * 40, "8000000000000001"]),
    ),
    json_values,
)
@example("", 5)
def test_session_origin_answers_are_total(cons: str, admin: Any) -> None:
    """parse_cons reads any text; parse_admin_connections any JSON or raises ValueError."""
    parse_cons(cons)
    for answer in (admin, {"connections": [admin], "secure_connections": admin}):
        try:
            parse_admin_connections(answer)
        except ValueError as exc:
            _assert_short(exc)


label_keys = st.sampled_from(
    [labels.ENABLE, labels.ADVERTISE_HOST, labels.MODE, f"{labels.PORT}20880", "other.key"]
) | st.builds(lambda s: f"{labels.PREFIX}{s}", any_text | st.builds(lambda d: f"port.{d}", digits))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(label_keys, any_text | digits), max_size=5))
@example([(f"{labels.PORT}20880", "²")])
@example([(f"{labels.PORT}20880", "1" * 5000)])
@example([(labels.ADVERTISE_HOST, "foo bar")])
def test_labels_parse_or_say_which_is_invalid(pairs: list[tuple[str, str]]) -> None:
    """labels.parse answers or raises InvalidLabels with a short message."""
    try:
        labels.parse(tuple(sorted(pairs)))
    except labels.InvalidLabels as exc:
        _assert_short(exc)


work_documents = st.fixed_dictionaries(
    {"paths": st.dictionaries(any_text, json_values, max_size=3) | json_values},
    optional={
        "origins": st.dictionaries(any_text | digits, json_values, max_size=3) | json_values,
        "parts": json_values,
    },
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(work_documents, json_values).map(dumped) | st.binary(max_size=60))
@example(b'{"paths": {"/p": ["d", 1e999]}}')
@example(b'{"paths": {}, "origins": {"' + b"f" * 5000 + b'": ["a", "s"]}}')
@example(b"[" * 100_000)
@example(b'{"paths": {}, "parts": 1e999}')
@example(b'{"paths": {}, "parts": 99999999999999999999}')
def test_work_nodes_are_read_or_refused(data: bytes) -> None:
    """A fleet work node (anyone can write there) is read or refused as not a work document,
    with a short message."""
    try:
        parse_part(data)
    except ValueError as exc:
        _assert_short(exc)
