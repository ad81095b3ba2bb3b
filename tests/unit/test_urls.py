"""Provider node names: parsing, and rewrites that touch only the bytes of host:port."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), java_url_encode(text))


ENCODERS: dict[str, Callable[[str], str]] = {
    "java URLEncoder": java_url_encode,
    "python quote": lambda s: quote(s, safe=""),
    "python quote_plus": lambda s: quote_plus(s, safe=""),
    "lower-case hex": _lower_hex,
    "literal colons and slashes": lambda s: quote(s, safe=":/"),
}

hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).compressed),
    st.from_regex(r"[a-z][a-z0-9\-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True),
)
endpoints = st.builds(Endpoint.of, hosts, st.integers(1, 65535))
identifiers = st.from_regex(
    r"[a-z][a-zA-Z0-9_]{0,8}(\.[a-zA-Z][a-zA-Z0-9_]{0,8}){0,3}", fullmatch=True
)
# Dubbo does not encode values, so a value never holds '&' or '='; anything else can appear.
values = st.text(st.characters(exclude_characters="&=", exclude_categories=["Cs"]), max_size=20)
parameters = st.dictionaries(identifiers, values, max_size=8)


def full_url(protocol: str, endpoint: Endpoint, path: str, params: dict[str, str]) -> str:
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{protocol}://{endpoint}/{path}" + (f"?{query}" if query else "")


@given(
    encoder=st.sampled_from(sorted(ENCODERS)),
    protocol=st.sampled_from(["dubbo", "tri", "rest", "grpc", "hessian", "x-custom.v2"]),
    original=endpoints,
    rewritten=endpoints,
    path=identifiers,
    params=parameters,
)
def test_rewrite_changes_only_host_and_port(
    encoder: str,
    protocol: str,
    original: Endpoint,
    rewritten: Endpoint,
    path: str,
    params: dict[str, str],
) -> None:
    """For every encoder, the rewritten name equals that encoder's output for the new URL,
    shares every byte before and after host:port, and decodes to the same parameters."""
    encode = ENCODERS[encoder]
    raw = encode(full_url(protocol, original, path, params))
    parsed = urls.parse(raw)
    assert parsed.endpoint == original

    new_name = parsed.with_endpoint(rewritten)

    start, end = parsed.host_port_span
    assert new_name.startswith(raw[:start])
    assert new_name.endswith(raw[end:])
    assert new_name == encode(full_url(protocol, rewritten, path, params))
    again = urls.parse(new_name)
    assert again.endpoint == rewritten
    assert (again.protocol, again.path, again.parameters) == (
        parsed.protocol,
        parsed.path,
        parsed.parameters,
    )
    assert dict(again.parameters) == params


@given(st.sampled_from(sorted(ENCODERS)), endpoints, identifiers, parameters)
def test_fast_path_agrees_with_the_general_parser(
    encoder: str, endpoint: Endpoint, path: str, params: dict[str, str]
) -> None:
    """The shortcut for the common encoding gives exactly what decoding every character
    gives, for every encoder."""
    raw = ENCODERS[encoder](full_url("dubbo", endpoint, path, params))
    assert urls.parse(raw) == urls.parse_slowly(raw)


@given(st.sampled_from(sorted(ENCODERS)), endpoints, parameters)
def test_rewriting_back_restores_the_original_name(
    encoder: str, endpoint: Endpoint, params: dict[str, str]
) -> None:
    """Rewriting to another address and back yields the original name byte for byte."""
    raw = ENCODERS[encoder](full_url("dubbo", endpoint, "com.example.Svc", params))
    there = urls.parse(raw).with_endpoint(Endpoint.of("10.0.0.1", 1))
    assert urls.parse(there).with_endpoint(endpoint) == raw


def test_ipv6_literal_is_parsed_and_written_bracketed() -> None:
    """An IPv6 provider URL parses to the bare address and is rewritten with brackets kept."""
    raw = java_url_encode("dubbo://[fd00::5]:20880/com.x.Svc?anyhost=true&side=provider")
    parsed = urls.parse(raw)
    assert parsed.endpoint == Endpoint("fd00::5", 20880)
    assert parsed.with_endpoint(Endpoint.of("2001:db8::1", 32768)) == java_url_encode(
        "dubbo://[2001:db8::1]:32768/com.x.Svc?anyhost=true&side=provider"
    )
    assert parsed.with_endpoint(Endpoint.of("192.0.2.7", 32768)) == java_url_encode(
        "dubbo://192.0.2.7:32768/com.x.Svc?anyhost=true&side=provider"
    )


def test_url_without_path_and_userinfo_is_understood() -> None:
    """Lenient parsing: no path (some non-Java clients) and user:password@ before the host."""
    no_path = urls.parse(java_url_encode("tri://10.0.0.5:50051?service=com.x.Svc"))
    assert no_path.endpoint == Endpoint("10.0.0.5", 50051)
    assert no_path.parameters == (("service", "com.x.Svc"),)
    with_user = urls.parse(java_url_encode("dubbo://admin:secret@10.0.0.5:20880/com.x.Svc"))
    assert with_user.endpoint == Endpoint("10.0.0.5", 20880)
    assert with_user.with_endpoint(Endpoint("1.2.3.4", 5)) == java_url_encode(
        "dubbo://admin:secret@1.2.3.4:5/com.x.Svc"
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "garbage",
        "dubbo%3A%2F%2F10.0.0.5",  # no port
        "dubbo%3A%2F%2F10.0.0.5%3A%2Fcom.x",  # empty port
        "dubbo%3A%2F%2F10.0.0.5%3A0%2Fcom.x",  # port 0
        "dubbo%3A%2F%2F10.0.0.5%3A70000%2Fcom.x",  # port out of range
        "dubbo%3A%2F%2F%3A20880%2Fcom.x",  # empty host
        "dubbo%3A%2F%2F%5Bfd00%3A%3Az%5D%3A20880",  # bad IPv6
        "dubbo%3A%2F%2F%5Bfd00%3A%3A1%3A20880",  # unclosed bracket
        "dubbo%3A%2F%2F10.0.0.5%3A2088%ZZ",  # bad escape
        "dubbo%3A%2F%2Fh%C3%A9st%3A20880",  # non-ASCII host
        "%3A%2F%2F10.0.0.5%3A20880",  # no protocol
        "1dubbo%3A%2F%2F10.0.0.5%3A20880",  # protocol not starting with a letter
        "dubbo%3A%2F%2Fbad_host%3A20880",  # underscore is not a host name character
    ],
)
def test_malformed_names_are_rejected(name: str) -> None:
    """A name that is not an encoded protocol://host:port URL raises MalformedName."""
    with pytest.raises(urls.MalformedName):
        urls.parse(name)


@given(st.text(max_size=60))
@example("dubbo%3A%2F%2F%")
@example("dubbo://[::1]:")
def test_parse_never_fails_any_other_way(name: str) -> None:
    """Any string either parses, or is rejected with MalformedName; nothing else escapes."""
    try:
        parsed = urls.parse(name)
    except urls.MalformedName:
        return
    assert urls.parse(parsed.with_endpoint(parsed.endpoint)).endpoint == parsed.endpoint
