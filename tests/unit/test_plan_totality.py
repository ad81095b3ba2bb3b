"""The planner is total: whatever nodes a registry holds (any names, any data, markers with
any fields, remembered rewrites of anything), every path through plan_providers returns a
decision for each node and never raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import labels
from sidecar.mapping import ContainerIndex
from sidecar.model import Container, Endpoint, Origin, Origins, PublishedPort, RegistryNode
from sidecar.ownership import LocalAddresses, Marker, Ownership
from sidecar.plan import Identity, Mode, PathView, Remembered, claims_in
from sidecar.plan import plan_path as plan_providers
from sidecar.report.tables import render_table
from sidecar.scope import Lease, Scope

from .scenarios import url_name
from .strategies import EXAMPLES, any_text, dumped, instance_nodes, json_values, url_names

ENGINE = "ENGINE-A"
SESSIONS = st.sampled_from([0, 0x1001, 0x2002, 0x3003, -5]) | st.integers(-(2**63), 2**63 - 1)
PROVIDERS = "/dubbo/com.example.DemoService/providers"
INSTANCES = "/services/shop"

local_names = st.sampled_from(
    [
        url_name("172.17.0.5"),
        url_name("172.17.0.5", 50051, "tri"),
        url_name("fd00::5"),
        url_name("192.0.2.10", 32768),
        url_name("172.17.0.9"),
        "172.17.0.5:20880",
        "192.0.2.10:32768",
        "[fd00::5]:20880",
    ]
)
names = local_names | url_names
markers = st.builds(
    Marker,
    original=names,
    container_endpoint=st.sampled_from(
        [Endpoint("172.17.0.5", 20880), Endpoint("fd00::5", 20880), Endpoint("10.9.9.9", 1)]
    ),
    container=st.sampled_from(["c1" * 32, "c2" * 32, "", "gone"]),
    engine=st.sampled_from([ENGINE, "ENGINE-B"]),
    provider_session=SESSIONS,
    original_data=st.binary(max_size=60) | instance_nodes().map(lambda node: node[1]),
)
node_data = (
    st.binary(max_size=80)
    | markers.map(Marker.encode)
    | instance_nodes().map(lambda node: node[1])
    | json_values.map(dumped)
)
label_pairs = st.lists(
    st.tuples(
        st.sampled_from(
            [
                labels.ENABLE,
                labels.ADVERTISE_HOST,
                labels.MODE,
                f"{labels.PORT}20880",
                f"{labels.PORT}50051",
            ]
        ),
        st.sampled_from(["true", "false", "mirror", "replace", "443", "²", "host.example", ""])
        | any_text,
    ),
    max_size=3,
).map(lambda pairs: tuple(sorted(dict(pairs).items())))


def nodes(parent: str) -> st.SearchStrategy[RegistryNode]:
    return st.builds(RegistryNode, st.just(parent), names, node_data, SESSIONS, st.integers(0, 3))


@st.composite
def hosts(draw: st.DrawFn) -> ContainerIndex:
    """A host with two containers carrying random labels, one maybe paused or unreachable."""
    bindings = (
        PublishedPort(20880, "0.0.0.0", 32768),
        PublishedPort(20880, "::", 32769),
        PublishedPort(50051, "10.0.0.7", 40051),
    )
    return ContainerIndex(
        [
            Container(
                "c1" * 32,
                "one",
                "bridge",
                ("172.17.0.5", "fd00::5"),
                bindings,
                draw(st.sampled_from(["", "paused"])),
                draw(label_pairs),
            ),
            Container(
                "c2" * 32, "two", "bridge", ("172.17.0.6",), bindings[:1], labels=draw(label_pairs)
            ),
        ],
        unreachable=draw(st.sampled_from([{}, {Endpoint("172.17.0.5", 20880): "probes failed"}])),
        host_addresses=["192.0.2.10"],
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[PathView, ContainerIndex, Identity, Ownership]:
    """A path of random nodes, a host (see hosts), a random identity and a random state of
    knowledge about sessions."""
    instances = draw(st.booleans())
    parent = INSTANCES if instances else PROVIDERS
    mirror_parent = draw(st.sampled_from([None, f"{parent}-mirror"]))
    scope = PathView(
        parent,
        draw(st.lists(nodes(parent), max_size=6, unique_by=lambda n: n.name)),
        draw(st.lists(st.builds(Remembered, nodes(parent), markers), max_size=3)),
        mirror_parent,
        draw(st.lists(nodes(mirror_parent), max_size=3)) if mirror_parent else [],
        instances,
    )
    containers = draw(hosts())
    peers = {0x3003: Lease(draw(st.sampled_from(["host", "app-" + "c1" * 32])), 0x3003)}
    app = draw(st.sampled_from(["", "c1" * 32, "c2" * 32]))
    me = Identity(
        draw(st.sampled_from([None, 0x1001])),
        ENGINE,
        draw(st.sampled_from(["192.0.2.10", "2001:db8::1", "host.example"])),
        draw(st.sampled_from(list(Mode))),
        Scope(app, "app", peers, draw(st.booleans())),
    )
    origins = draw(
        st.none()
        | st.builds(
            Origins,
            st.dictionaries(
                SESSIONS,
                st.builds(
                    Origin,
                    st.sampled_from(
                        ["192.0.2.10", "172.17.0.5", "172.17.0.6", "127.0.0.1", "203.0.113.1"]
                    ),
                    st.sampled_from(["127.0.0.1", "10.1.1.1"]),
                ),
            ),
            st.sampled_from([(), ("10.1.1.2:2181 did not answer: timed out",)]),
        )
    )
    local = LocalAddresses(
        frozenset({"192.0.2.10"}), frozenset({"127.0.0.1"}), frozenset({"172.17.0.5", "172.17.0.6"})
    )
    return scope, containers, me, Ownership(origins, local, claims_in(scope))


@settings(
    max_examples=EXAMPLES // 5,  # a situation is large: a fifth as many examples
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(situations())
def test_planning_any_registry_never_raises(
    situation: tuple[PathView, ContainerIndex, Identity, Ownership],
) -> None:
    """Every node of the path, remembered rewrite and mirror gets exactly one decision, and
    the plan table renders."""
    scope, containers, me, owners = situation
    decisions = plan_providers(scope, containers, me, owners)
    expected = [
        *scope.nodes,
        *(r.node for r in scope.remembered if r.node.name not in {n.name for n in scope.nodes}),
        *scope.mirror,
    ]
    assert sorted(id(d.node) for d in decisions) == sorted(id(n) for n in expected)
    render_table(decisions)
