"""The NAT table read as port mappings: the rules Docker, Podman's netavark and the CNI
``portmap`` plugin really wrote (dumps saved from the real programs here), through both
iptables back ends; anything else is ignored, and no text makes the parser fail."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import natrules
from sidecar.mapping import ContainerIndex, Mapped
from sidecar.model import Endpoint, PublishedPort
from sidecar.natrules import NatMapping

DUMPS = Path(__file__).parent / "nat_dumps"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))

CNI_NFT_A = "df5a2f2f69564fefb0e221cb506ae6c47d00eb1c62294fafbe89f9e468fbdf4c"
CNI_NFT_B = "a8bd8a436fc24893bb5aa03edf126a231222f25dce1b42f2ba41265f5086fa12"
CNI_LEGACY_A = "ba20c0f5c8464183b408f4d3d2e13ae4a3ce33fdf3e241d4aae3b93d5a003cb3"
CNI_LEGACY_B = "552f2db12a7f466498034738f54f41cf871fe6940ac44066b7eae2fa867bf6ad"
PODMAN_1 = "652ca7e0ec59be761155fd4b90d0236c88b4dbe8f025e29a5d251ab4cbc8f2ba"
PODMAN_2 = "b283b9d51a4e46d51715aa02a743338c8bda9f8c235471fbb2ce878c509b57f8"


def _seen(name: str) -> set[tuple[str, int, int, str, str, str]]:
    """What the parser reads in a dump: (container IP, port, host port, host IP, flavour, id)."""
    found = natrules.parse((DUMPS / name).read_text())
    return {(m.container_ip, m.container_port, m.host_port, m.host_ip, m.flavour,
             m.container_id) for m in found}  # fmt: skip


def test_cni_portmap_pods_through_nf_tables() -> None:
    """Two pods with hostPorts (one bound to 127.0.0.1), as portmap wrote them through
    iptables-nft: each port maps to its pod's address, with the pod's container id."""
    assert _seen("cni-portmap-nft.txt") == {
        ("10.251.9.2", 20880, 30880, "", "cni", CNI_NFT_A),
        ("10.251.9.2", 8080, 30881, "127.0.0.1", "cni", CNI_NFT_A),
        ("10.251.9.3", 20880, 31000, "", "cni", CNI_NFT_B),
    }


def test_cni_portmap_pods_through_legacy_iptables() -> None:
    """The same pods as portmap wrote them through iptables-legacy read the same."""
    assert _seen("cni-portmap-legacy.txt") == {
        ("10.251.9.2", 20880, 30880, "", "cni", CNI_LEGACY_A),
        ("10.251.9.2", 8080, 30881, "127.0.0.1", "cni", CNI_LEGACY_A),
        ("10.251.9.3", 20880, 31000, "", "cni", CNI_LEGACY_B),
    }


def test_podman_containers_share_one_netavark_chain() -> None:
    """netavark puts every container of a network in one chain: each port still goes to its
    own container (the id is on the port's jump rule), `-P` ports included."""
    assert _seen("netavark-podman-p-nft.txt") == {
        ("10.88.0.3", 20880, 30990, "", "netavark", PODMAN_1),
        ("10.88.0.3", 20881, 43711, "", "netavark", PODMAN_1),
        ("10.88.0.3", 8080, 30991, "127.0.0.1", "netavark", PODMAN_1),
        ("10.88.0.4", 20880, 30992, "", "netavark", PODMAN_2),
    }


def test_docker_published_ports() -> None:
    """`docker run -P` and `-p 127.0.0.1::8080`: Docker's rules name no container, so the
    mapping has the address only."""
    assert _seen("docker-P-nft.txt") == {
        ("172.17.0.2", 20880, 32811, "", "docker", ""),
        ("172.17.0.2", 8080, 32768, "127.0.0.1", "docker", ""),
    }


def test_a_dual_stack_pod_is_published_in_each_family() -> None:
    """A pod with an IPv4 and an IPv6 address (portmap writing both ip6tables and iptables
    rules) is one container with both addresses, its port published in each family."""
    [pod] = natrules.containers(
        natrules.parse((DUMPS / "cni-portmap-dual-stack-nft.txt").read_text())
    )
    assert pod.addresses == ("10.251.9.2", "fd00:251:9::2")
    assert set(pod.published) == {PublishedPort(20880, "", 30880),
                                  PublishedPort(20880, "::", 30880)}  # fmt: skip
    index = ContainerIndex([pod])
    for host in ("192.0.2.10", "2001:db8::10"):
        mapped = index.resolve(Endpoint.of("fd00:251:9::2", 20880), host)
        assert isinstance(mapped, Mapped)
        assert mapped.advertised == Endpoint.of(host, 30880)


def test_each_pod_is_one_pseudo_container_named_after_its_rules() -> None:
    """The planner sees one container per pod, whose name says where its mappings come from
    (what `plan` shows)."""
    found = natrules.containers(natrules.parse((DUMPS / "cni-portmap-nft.txt").read_text()))
    pod = next(c for c in found if c.id == f"nat-{CNI_NFT_A}")
    assert pod.name.startswith("nat: CNI-DN-")
    assert pod.name.endswith(f"for container {CNI_NFT_A[:12]}")
    assert pod.addresses == ("10.251.9.2",)
    assert set(pod.published) == {PublishedPort(20880, "", 30880),
                                  PublishedPort(8080, "127.0.0.1", 30881)}  # fmt: skip


def test_docker_rules_are_one_pseudo_container_per_address() -> None:
    """A rule naming no container gives a pseudo-container per destination address."""
    found = natrules.containers(natrules.parse((DUMPS / "docker-P-nft.txt").read_text()))
    assert [(c.id, c.name, c.addresses) for c in found] == [
        ("nat-172.17.0.2", "nat: DOCKER for 172.17.0.2", ("172.17.0.2",))
    ]


def test_rules_of_other_chains_tables_and_kinds_are_ignored() -> None:
    """kube-proxy's service rules, UDP, port ranges, rules limited to some sources or
    negated, and the filter table's rules publish nothing the sidecar can follow."""
    text = "\n".join([
        "*filter",
        "-A DOCKER -d 172.17.0.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 1.2.3.4:80",
        "*nat",
        "-A KUBE-SEP-X -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:80",
        "-A DOCKER -p udp -m udp --dport 53 -j DNAT --to-destination 172.17.0.3:53",
        "-A DOCKER -p tcp -m tcp --dport 8000:8010 -j DNAT --to-destination 172.17.0.3:80",
        "-A DOCKER -p tcp -m tcp --dport 81 -j DNAT --to-destination 172.17.0.3:80-90",
        "-A DOCKER -s 10.0.0.0/8 -p tcp -m tcp --dport 82 -j DNAT --to-destination 172.17.0.3:80",
        "-A DOCKER -p tcp -m tcp ! --dport 83 -j DNAT --to-destination 172.17.0.3:80",
        "-A DOCKER -d 10.0.0.0/8 -p tcp -m tcp --dport 84 -j DNAT --to-destination 172.17.0.3:80",
        '-A CNI-DN-1 -p tcp -m comment --comment "id: \\"x -m tcp --dport 85 -j DNAT',
        "-A DOCKER -p tcp -m tcp --dport 86 -j DNAT --to-destination 172.17.0.3:80",
    ])  # fmt: skip
    assert natrules.parse(text) == (NatMapping("172.17.0.3", 80, 86, "", "DOCKER"),)


def test_ipv6_rules() -> None:
    """ip6tables-save writes the destination in brackets; a destination without a port keeps
    the published port."""
    text = "*nat\n" + "\n".join([
        "-A DOCKER -d ::1/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80",
        "-A DOCKER -p tcp -m tcp --dport 9090 -j DNAT --to-destination fd00:0::3",
    ])  # fmt: skip
    assert set(natrules.parse(text)) == {
        NatMapping("fd00::2", 80, 8080, "::1", "DOCKER"),
        NatMapping("fd00::3", 9090, 9090, "", "DOCKER"),
    }


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        ("10.88.0.3", {("10.88.0.4", 20880)}),
        ("10.88.0.0/16:20880", {("10.88.0.3", 20881), ("10.88.0.3", 8080)}),
        (":8080", {("10.88.0.3", 20880), ("10.88.0.3", 20881), ("10.88.0.4", 20880)}),
        (
            "[fd00::/8]:20880",
            {("10.88.0.3", 20880), ("10.88.0.3", 20881), ("10.88.0.3", 8080), ("10.88.0.4", 20880)},
        ),
    ],
)
def test_nat_ignore_leaves_addresses_and_ports_alone(entry: str, kept: set[object]) -> None:
    """`--nat-ignore` takes out the container endpoints it names: an address, a network with
    a port, a port on any address (an IPv6 network concerns only IPv6 addresses)."""
    found = natrules.parse((DUMPS / "netavark-podman-p-nft.txt").read_text())
    left = natrules.kept(found, [natrules.parse_ignore(entry)])
    assert {(m.container_ip, m.container_port) for m in left} == kept


@pytest.mark.parametrize("entry", ["", ":", "10.0.0.1:0", "10.0.0.256", "[fd00::1", "x:80"])
def test_nat_ignore_refuses_what_names_nothing(entry: str) -> None:
    """An entry that is neither an address, a network nor a port is refused."""
    with pytest.raises(ValueError, match=r"\S"):
        natrules.parse_ignore(entry)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(st.characters(exclude_categories=()), max_size=400))
def test_any_text_is_read_without_failing(text: str) -> None:
    """Whatever a program prints, the parser answers (at worst: no mappings)."""
    for mapping in natrules.parse(text):
        assert 0 < mapping.host_port < 65536
        assert 0 < mapping.container_port < 65536


_WORDS = st.sampled_from([
    "*nat", "*filter", "COMMIT", "-A", "DOCKER", "CNI-DN-ab", "NETAVARK-DN-cd", "!", "-p", "tcp",
    "-d", "10.0.0.1/32", "--dport", "80", "-j", "DNAT", "--to-destination", "10.1.1.1:81",
    "[fd00::1]:82", "-m", "comment", "--comment", '"id: \\"ab\\""', '"', "\\", "\n", "-s",
    "--dports", "80,81", "CNI-HOSTPORT-DNAT", "0.0.0.0/0", "65536", "0",
])  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_WORDS, max_size=60))
def test_rule_like_word_salad_is_read_without_failing(words: list[str]) -> None:
    """Text made of the rules' own words, in any order, never makes the parser fail."""
    natrules.parse(" ".join(words))
    natrules.containers(natrules.parse("*nat\n-A " + " ".join(words)))


_IP = st.builds(lambda n: str(ipaddress.IPv4Address(0x0A000000 + n)), st.integers(1, 2**16))
_PORT = st.integers(1, 65535)
_ID = st.text("0123456789abcdef", min_size=64, max_size=64)


def _render(flavour: str, m: NatMapping, index: int) -> list[str]:
    """The rules a program writes to publish ``m`` (as the dumps above show)."""
    bound = f"-d {m.host_ip}/32 " if m.host_ip else ""
    dnat = (f"-p tcp -m tcp --dport {m.host_port} -j DNAT "
            f"--to-destination {m.container_ip}:{m.container_port}")  # fmt: skip
    if flavour == "docker":
        return [f"-A DOCKER {bound}! -i docker0 {dnat}"]
    chain = f"{'CNI' if flavour == 'cni' else 'NETAVARK'}-DN-{index:x}"
    comment = f'-m comment --comment "dnat name: \\"net\\" id: \\"{m.container_id}\\""'
    return [
        f"-A {chain} -s 10.0.0.0/8 {bound}-p tcp -m tcp --dport {m.host_port} -j X-SETMARK",
        f"-A {chain} {bound}{dnat}",
        f"-A {flavour.upper()}-HOSTPORT-DNAT -p tcp {comment} -m multiport --dports "
        f"{m.host_port} -j {chain}",
    ]


@settings(max_examples=EXAMPLES // 4, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["docker", "cni", "netavark"]), _IP, _PORT, _PORT,
                          st.sampled_from(["", "192.0.2.10"]), _ID), max_size=30))  # fmt: skip
def test_generated_rule_sets_read_back_exactly(
    rules: list[tuple[str, str, int, int, str, str]],
) -> None:
    """Any set of ports published the way the three programs publish them reads back as
    exactly those mappings, with their containers, among the rules around them."""
    lines, wanted = (
        ["*nat", ":PREROUTING ACCEPT [0:0]", "-A PREROUTING -j CNI-HOSTPORT-DNAT"],
        set(),
    )
    for index, (flavour, ip, port, host_port, host_ip, cid) in enumerate(rules):
        owner = "" if flavour == "docker" else cid
        chain = "DOCKER" if flavour == "docker" else f"{flavour.upper()}-DN-{index:x}"
        mapping = NatMapping(ip, port, host_port, host_ip, chain, owner)
        lines += _render(flavour, mapping, index)
        wanted.add(mapping)
    lines.append("COMMIT")
    assert set(natrules.parse("\n".join(lines))) == wanted


@pytest.mark.parametrize(
    ("dump", "wanted"),
    [
        ("cni-portmap-nft.txt", ("10.251.9.0/24",)),
        ("cni-portmap-legacy.txt", ("10.251.9.0/24",)),
        ("netavark-podman-p-nft.txt", ("10.88.0.0/16",)),
        ("docker-P-nft.txt", ("172.17.0.0/16",)),
    ],
)
def test_the_container_networks_the_rules_name(dump: str, wanted: tuple[str, ...]) -> None:
    """The pods' and containers' networks are read from the same rules (where an address
    may become a container's), loopback and single addresses left out."""
    assert natrules.networks((DUMPS / dump).read_text()) == wanted


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_WORDS, max_size=60))
def test_networks_of_word_salad_never_fail(words: list[str]) -> None:
    """Any rule-like text gives networks or none, never an error."""
    natrules.networks("*nat\n-A " + " ".join(words))
