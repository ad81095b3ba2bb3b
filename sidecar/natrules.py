"""Port mappings read from the NAT table (``iptables-save -t nat``, ``ip6tables-save -t nat``):
the DNAT rules Docker (chain ``DOCKER``), Podman's netavark (``NETAVARK-DN-…``) and the CNI
``portmap`` plugin of Kubernetes runtimes (``CNI-DN-…``) write to publish a container's TCP
port, as pseudo-containers for the planner. Pure: text in, values out; any text is read
without failing, and what is not such a rule is ignored."""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.hosts import endpoint_pattern, parse_port
from sidecar.model import Container, PublishedPort

# The pseudo-containers' ids start so: they never meet an engine's container ids.
NAT_PREFIX = "nat-"
DOCKER_CHAIN = "DOCKER"
_FLAVOURS = (("NETAVARK-DN-", "netavark"), ("CNI-DN-", "cni"))
# A container id as the runtimes write it in their comments (64 hex digits; any name-like
# word is taken, at most 128 characters).
# A word of a rule: quoted (with backslash escapes, as iptables-save quotes a comment) or not.
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_ESCAPED = re.compile(r"\\(.)")
_ID = re.compile(r'\bid: "?([A-Za-z0-9][A-Za-z0-9_.-]{0,127})"?')


@dataclass(frozen=True, order=True)
class NatMapping:
    """One published port: the container's ``IP:port`` (TCP) reached at ``host_port`` on
    every host address, or on ``host_ip`` alone; where the rule was and whose it is."""

    container_ip: str
    container_port: int
    host_port: int
    host_ip: str = ""
    chain: str = ""
    container_id: str = ""  # from the rule's comment ("" when it names none: Docker's)

    @property
    def flavour(self) -> str:
        """Who writes such rules: ``docker``, ``netavark`` or ``cni``."""
        return flavour_of(self.chain)


def flavour_of(chain: str) -> str:
    """``docker``, ``netavark``, ``cni``, or "" for a chain no known program publishes in."""
    if chain == DOCKER_CHAIN:
        return "docker"
    return next((name for prefix, name in _FLAVOURS if chain.startswith(prefix)), "")


def parse(text: str) -> tuple[NatMapping, ...]:
    """Every TCP port published by a DNAT rule of a known chain in ``text`` (one or more
    ``iptables-save``/``ip6tables-save`` dumps, either back end), sorted, without repeats."""
    rules: list[tuple[str, list[str]]] = []
    # (chain, host port or None) -> the container id a jump rule's comment names: CNI jumps
    # to a chain per pod, netavark to a chain per network, one jump rule per port.
    owners: dict[tuple[str, int | None], str] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith("-A ") and ("DNAT" in line or "id: " in line):
            tokens = _tokens(line)
            if len(tokens) < 2:
                continue
            rules.append((tokens[1], tokens))
            _note_owner(tokens, owners)
    mappings = set()
    for chain, tokens in rules:
        if flavour_of(chain):
            mapping = _mapping(chain, tokens, owners)
            if mapping is not None:
                mappings.add(mapping)
    return tuple(sorted(mappings))


def networks(text: str) -> tuple[str, ...]:
    """The container networks the rules name (sorted): the sources of the rules in the
    publishing chains (CNI, netavark: the pods' network) and of the rules that masquerade
    what leaves a container network (Docker's ``POSTROUTING``). An address in one of them may
    become a container's: the loop remembers which registrations name such addresses."""
    found = set()
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith("-A ") and " -s " in line:
            tokens = [*_tokens(line), ""]
            chain, target = tokens[1], _option(tokens, "-j")
            source = _option(tokens, "-s")
            wanted = flavour_of(chain) or (chain == "POSTROUTING" and target == "MASQUERADE")
            if wanted and source and (network := _container_network(source)):
                found.add(network)
    return tuple(sorted(found))


def _container_network(text: str) -> str | None:
    """A network of more than one address, not loopback, as ``ADDRESS/BITS``."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if network.num_addresses == 1 or network.prefixlen == 0 or network.is_loopback:
        return None
    return network.compressed


def _note_owner(tokens: list[str], owners: dict[tuple[str, int | None], str]) -> None:
    """Remember the container id a jump rule's comment gives the chain it jumps to."""
    found = _ID.search(_option(tokens, "--comment") or "")
    target = _option(tokens, "-j")
    if not found or not target or not flavour_of(target):
        return
    ports = (_option(tokens, "--dport") or _option(tokens, "--dports") or "").split(",")
    for text in ports:
        try:
            port: int | None = parse_port(text)
        except ValueError:
            port = None
        owners.setdefault((target, port), found.group(1))


def _tokens(line: str) -> list[str]:
    """A rule's words, quotes undone as iptables-save writes them (``"a \\"b\\""``)."""
    return [
        _ESCAPED.sub(r"\1", found.group(1)) if found.group(1) is not None else found.group(2)
        for found in _TOKEN.finditer(line)
    ]


def _option(tokens: list[str], name: str) -> str | None:
    """The value of ``name`` in ``tokens`` (not negated), or None."""
    for i, token in enumerate(tokens[:-1]):
        if token == name and (i == 0 or tokens[i - 1] != "!"):
            return tokens[i + 1]
    return None


def _mapping(
    chain: str, tokens: list[str], owners: dict[tuple[str, int | None], str]
) -> NatMapping | None:
    """The published port of one rule, or None if it publishes none the sidecar can follow:
    not a TCP DNAT to one address and port, or limited to some sources."""
    options: dict[str, str] = {}
    for i, token in enumerate(tokens[2:-1], start=2):
        if token.startswith("-"):
            if tokens[i - 1] == "!":
                if token in ("-p", "-d", "--dport", "--dports", "-j"):
                    return None  # "every port but": not one published port
                continue
            options.setdefault(token, tokens[i + 1])
    if options.get("-j") != "DNAT" or options.get("-p") not in ("tcp", "6") or "-s" in options:
        return None
    to = _destination(options.get("--to-destination", ""))
    port_text = options.get("--dport") or options.get("--dports") or ""
    host_ip = _host_address(options.get("-d"))
    if to is None or host_ip is None:
        return None
    try:
        host_port = parse_port(port_text)
    except ValueError:
        return None  # a range or a list: none of the programs publishes one port so
    address, container_port = to
    comment = _ID.search(options.get("--comment", ""))
    owner = owners.get((chain, host_port)) or owners.get((chain, None), "")
    container_id = comment.group(1) if comment else owner
    return NatMapping(address, container_port or host_port, host_port, host_ip, chain,
                      container_id)  # fmt: skip


def _destination(text: str) -> tuple[str, int] | None:
    """``10.0.0.2:80``, ``[fd00::2]:80`` or an address alone (port 0: the same port)."""
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host).compressed
        return address, parse_port(port) if port else 0
    except ValueError:
        return None  # a range of addresses or ports: no one endpoint


def _host_address(text: str | None) -> str | None:
    """The host address a rule is bound to ("" for every one), or None for a rule bound to
    more than one address but not all (a network)."""
    if text is None:
        return ""
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None
    if network.prefixlen == 0:
        return ""
    if network.num_addresses != 1:
        return None
    return network.network_address.compressed


@dataclass(frozen=True)
class Ignore:
    """Container endpoints the NAT source leaves alone (``--nat-ignore``): an address or a
    network, a port, or both."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None

    def matches(self, address: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.network is None:
            return True
        ip = ipaddress.ip_address(address)
        return ip.version == self.network.version and ip in self.network


def parse_ignore(entry: str) -> Ignore:
    """One ``--nat-ignore`` entry (see ``hosts.endpoint_pattern``); raise ValueError."""
    return Ignore(*endpoint_pattern(entry))


def kept(mappings: Iterable[NatMapping], ignore: Iterable[Ignore]) -> tuple[NatMapping, ...]:
    """The mappings no ``--nat-ignore`` entry matches."""
    rules = tuple(ignore)
    return tuple(
        m for m in mappings if not any(r.matches(m.container_ip, m.container_port) for r in rules)
    )


def containers(mappings: Iterable[NatMapping]) -> tuple[Container, ...]:
    """The pseudo-containers the planner maps through: one per container id the rules name,
    else one per destination address; named after where their rules are."""
    groups: dict[str, list[NatMapping]] = defaultdict(list)
    for mapping in mappings:
        groups[mapping.container_id or mapping.container_ip].append(mapping)
    found = []
    for key, group in sorted(groups.items()):
        chains = sorted({m.chain for m in group})
        addresses = tuple(sorted({m.container_ip for m in group}))
        published = tuple(sorted(
            {PublishedPort(m.container_port, _bound(m), m.host_port) for m in group},
            key=lambda p: (p.container_port, p.host_ip, p.host_port),
        ))  # fmt: skip
        whose = group[0].container_id
        about = f"container {whose[:12]}" if whose else ", ".join(addresses)
        name = f"nat: {', '.join(_short(c) for c in chains)} for {about}"
        found.append(Container(f"{NAT_PREFIX}{key}", name, "nat", addresses, published))
    return tuple(found)


def _bound(mapping: NatMapping) -> str:
    """The host address of a mapping as Docker says it: every IPv6 address is ``::``, so
    that a port published on every address counts in its own family only (Docker, netavark
    and portmap choose the IPv4 and IPv6 host ports apart)."""
    if mapping.host_ip or ":" not in mapping.container_ip:
        return mapping.host_ip
    return "::"


def _short(chain: str) -> str:
    """A chain's name as people recognise it (the runtimes' hashes cut to 12 digits)."""
    for prefix, _ in _FLAVOURS:
        if chain.startswith(prefix):
            return chain[: len(prefix) + 12]
    return chain
