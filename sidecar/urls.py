"""Where provider URLs are parsed and rewritten: a node name in, host:port replaced byte-exactly.

A provider node name is the URL-encoded full URL. Encoders differ (Java's URLEncoder,
Python's quote, lower-case hex, literal colons), and consumers compare raw names, so the
rewrite never re-encodes the URL: it swaps the encoded bytes of host:port and spells the new
host:port the way the original name spelled those characters.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from itertools import chain
from urllib.parse import unquote_plus

from sidecar.hosts import is_host_name, parse_port
from sidecar.model import Endpoint
from sidecar.quoting import quote

_HEX = frozenset("0123456789abcdefABCDEF")
_PROTOCOL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_LOWER_HEX_ESCAPE = re.compile(r"%(?:[0-9a-f][a-f]|[a-f][0-9a-f])")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_COMMON_FORM = re.compile(
    r"(?P<protocol>[A-Za-z][A-Za-z0-9+.\-]*)%3A%2F%2F"
    r"(?P<hostport>(?P<host>[A-Za-z0-9.\-]+)%3A(?P<port>[0-9]{1,5}))(?=%2F|%3F|$)"
)
# Every URL encoder in use leaves these alone, so they are written literally when unseen.
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


class MalformedName(ValueError):
    """The node name is not an encoded ``protocol://host:port...`` URL."""


@dataclass(frozen=True, slots=True)
class ProviderUrl:
    """A parsed provider node name that remembers where host:port sits in the raw name."""

    raw: str
    protocol: str
    endpoint: Endpoint
    host_port_span: tuple[int, int]

    @property
    def path(self) -> str:
        start = self.host_port_span[1]
        return unquote_plus(self.raw[start:]).partition("?")[0].removeprefix("/")

    @property
    def parameters(self) -> tuple[tuple[str, str], ...]:
        """The query parameters in their original order, decoded."""
        query = unquote_plus(self.raw[self.host_port_span[1] :]).partition("?")[2]
        return tuple(_split_parameter(p) for p in query.split("&") if p)

    def with_endpoint(self, endpoint: Endpoint) -> str:
        """The raw node name with only the bytes of host:port replaced."""
        start, end = self.host_port_span
        if not endpoint.is_ipv6 and _COMMON_FORM.match(self.raw):
            # The common spelling writes every character of an IPv4 or host name endpoint
            # literally but ':', which it shows as %3A: what the general way below finds too.
            return f"{self.raw[:start]}{endpoint.host}%3A{endpoint.port}{self.raw[end:]}"
        spellings = _spellings(self.raw, self.host_port_span)
        upper = not _LOWER_HEX_ESCAPE.search(self.raw)
        encoded = "".join(_spell(ch, spellings, upper) for ch in str(endpoint))
        return self.raw[:start] + encoded + self.raw[end:]


def parse(raw: str) -> ProviderUrl:
    """Parse a provider node name; raise MalformedName instead of guessing."""
    fast = _COMMON_FORM.match(raw)
    if fast is not None:
        # The common spelling (Java's or Python's encoder, an IPv4 address or a host name):
        # no need to decode character by character.
        host, port_text = fast["host"], fast["port"]
        if _CANONICAL_IPV4.fullmatch(host) and 0 < int(port_text) < 65536:
            endpoint = Endpoint(host, int(port_text))  # already in Endpoint.of's form
        else:
            endpoint = Endpoint.of(*_split_host_port(f"{host}:{port_text}"))
        return ProviderUrl(raw, fast["protocol"], endpoint, fast.span("hostport"))
    return parse_slowly(raw)


def parse_slowly(raw: str) -> ProviderUrl:
    """parse() for any encoding: decodes the head character by character."""
    head, origins = _decode_head(raw)
    scheme_end = head.find("://")
    if scheme_end <= 0 or not _PROTOCOL.fullmatch(head[:scheme_end]):
        raise MalformedName("does not start with protocol://")
    at = head.rfind("@", scheme_end + 3)
    host_port_start = at + 1 if at >= 0 else scheme_end + 3
    host, port = _split_host_port(head[host_port_start:])
    return ProviderUrl(
        raw=raw,
        protocol=head[:scheme_end],
        endpoint=Endpoint.of(host, port),
        host_port_span=(origins[host_port_start], origins[len(head)]),
    )


def _spellings(raw: str, span: tuple[int, int]) -> dict[str, str]:
    """How this name spells each ASCII character of its head, preferring what host:port
    itself shows (it shows best how the encoder spells ':' and digits)."""
    head, origins = _decode_head(raw)
    host_port_start = origins.index(span[0])
    spellings: dict[str, str] = {}
    for i in chain(range(host_port_start, len(head)), range(host_port_start)):
        spellings.setdefault(head[i], raw[origins[i] : origins[i + 1]])
    return spellings


def _decode_head(raw: str) -> tuple[str, list[int]]:
    """Percent-decode ``protocol://authority`` as Java's URLDecoder would, stopping before the path.

    Returns the decoded head and, for each of its characters (and one past the end), the
    offset in ``raw`` where its encoding starts. Only the head is decoded: names can be long
    and registries large, and nothing past the authority is needed to plan.
    """
    out: list[str] = []
    origins: list[int] = []
    past_scheme = False
    i = 0
    while i < len(raw):
        start = i
        if raw[i] == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise MalformedName(f"bad percent-escape at offset {i}")
            code = int(pair, 16)
            i += 3
        else:
            code = 0x20 if raw[i] == "+" else ord(raw[i])
            i += 1
        if code > 0x7F:
            raise MalformedName("non-ASCII byte in protocol or address")
        ch = chr(code)
        if past_scheme and ch in "/?":
            origins.append(start)
            return "".join(out), origins
        out.append(ch)
        origins.append(start)
        if not past_scheme and len(out) >= 3 and out[-3:] == [":", "/", "/"]:
            past_scheme = True
    origins.append(len(raw))
    return "".join(out), origins


def _split_host_port(host_port: str) -> tuple[str, int]:
    if host_port.startswith("["):
        close = host_port.find("]")
        if close < 0 or host_port[close + 1 : close + 2] != ":":
            raise MalformedName("bracketed IPv6 host without ]:port")
        host, port_text = host_port[1:close], host_port[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise MalformedName(f"invalid IPv6 address {quote(host)}") from exc
    else:
        host, sep, port_text = host_port.rpartition(":")
        if not sep:
            raise MalformedName("no port")
        if not _is_ipv4(host) and not is_host_name(host):
            raise MalformedName(f"invalid host {quote(host)}")
    try:
        return host, parse_port(port_text)
    except ValueError as exc:
        raise MalformedName(f"invalid port: {exc}") from None


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _split_parameter(pair: str) -> tuple[str, str]:
    key, _, value = pair.partition("=")
    return key, value


def _spell(ch: str, spellings: dict[str, str], upper_hex: bool) -> str:
    if ch in spellings:
        return spellings[ch]
    if ch in _UNRESERVED:
        return ch
    escape = f"%{ord(ch):02X}"
    return escape if upper_hex else escape.lower()
