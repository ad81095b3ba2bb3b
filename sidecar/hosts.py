"""How ports, host names, addresses, connect strings and endpoint patterns are read: strictly,
and the same way everywhere.

Pure and at the bottom of the layers: configuration, labels, the static mapping and the
parsers of registry data all read ports and hosts through here.
"""

from __future__ import annotations

import ipaddress
import re

from sidecar.quoting import quote

# RFC 1123 host names: labels of letters, digits and hyphens, neither starting nor ending
# with a hyphen; at most 253 characters in all.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ASCII_DIGITS = re.compile(r"[0-9]{1,5}")


def parse_port(text: object) -> int:
    """A TCP port written in ASCII digits, 1-65535; raise ValueError saying why not.

    ``str.isdigit`` accepts "²" and other digits ``int`` refuses or reads differently, and
    ``int`` accepts signs, spaces and underscores: neither is a port a person meant.
    """
    value = str(text)
    if not _ASCII_DIGITS.fullmatch(value) or not 0 < int(value) < 65536:
        raise ValueError(f"{quote(value)} is not a port (1-65535)")
    return int(value)


def is_host_name(text: str) -> bool:
    """Whether ``text`` is an RFC 1123 host name."""
    return len(text) <= 253 and _HOST_NAME.fullmatch(text) is not None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def valid_host(host: str) -> bool:
    """An IP literal (without brackets) or an RFC 1123 host name."""
    return is_ip(host) or is_host_name(host)


def normal_host(text: str) -> str:
    """An advertised host as consumers will see it: an IP literal in its compressed form, or a
    lower-case host name; raise ValueError for anything else (spaces, commas, ports...)."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    if not is_host_name(host):
        raise ValueError(f"{quote(text)} is neither an IP address nor a host name")
    return host.lower()


def servers(connect_string: str) -> list[tuple[str, int]]:
    """The (host, port) of each server in a ZooKeeper connect string; port -1 if it is not
    ASCII digits (the range is the caller's to check: a listen address may use 0)."""
    found = []
    for host_port in connect_string.partition("/")[0].split(","):
        if host_port.startswith("["):
            host, _, rest = host_port[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif host_port.count(":") == 1:
            host, _, port_text = host_port.partition(":")
        else:
            host, port_text = host_port, ""
        if not port_text:
            port = 2181
        else:
            port = int(port_text) if _ASCII_DIGITS.fullmatch(port_text) else -1
        found.append((host, port))
    return found


def endpoint_pattern(
    entry: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | None, int | None]:
    """Endpoints named by an address or a network, a port, or both: ``10.88.0.5``,
    ``10.88.0.0/16``, ``10.88.0.0/16:20880``, ``:8080``, ``fd00::5``, ``[fd00::/64]:20880``;
    raise ValueError saying why not."""
    text = entry.strip()
    where, port = text, ""
    if text.startswith("["):
        where, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{quote(entry)} is not [ADDRESS]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        where, _, port = text.partition(":")
    try:
        network = ipaddress.ip_network(where, strict=False) if where else None
        number = parse_port(port) if port else None
    except ValueError as exc:
        raise ValueError(f"{quote(entry)}: {exc}") from None
    if network is None and number is None:
        raise ValueError(f"{quote(entry)} names neither an address nor a port")
    return network, number
