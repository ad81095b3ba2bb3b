"""Planner scenarios for per-container labels, the deployment scope (several sidecars on one
engine) and a change of the advertised address."""

from __future__ import annotations

from dataclasses import replace

from sidecar.mapping import ContainerIndex
from sidecar.model import Create, Delete, PublishedPort, RegistryNode
from sidecar.plan import Action, Mode, PathView
from sidecar.plan import plan_path as plan_scope
from sidecar.scope import Lease, Scope
from tests.unit.scenarios import (
    ME,
    PROVIDERS,
    TRUSTING,
    apply,
    container,
    converge,
    only,
    plan_providers,
    registration,
    url_name,
)

ORIGINAL = url_name("172.17.0.5")
REWRITTEN = url_name("192.0.2.10", 32768)
APP = "c1" * 32
HOST_PEER = Lease("host", 0x5005)
APP_PEER = Lease(f"app-{APP}", 0x6006, "provider")


def rewritten_by(session: int) -> list[RegistryNode]:
    """The registry after a sidecar with ``session`` rewrote the provider."""
    me = replace(ME, session=session)
    return converge([registration(ORIGINAL)], ContainerIndex([container()]), me)


def test_labels_choose_the_advertised_host_and_port() -> None:
    """advertise-host and port.<n> labels override the sidecar's host and the bound host
    port (a NAT or balancer in front); the decision says which labels decided it."""
    labelled = container(advertise_host="203.0.113.7", port_20880="30000")
    decision = only(plan_providers([registration(ORIGINAL)], ContainerIndex([labelled]), ME))
    assert decision.action is Action.REWRITE
    assert str(decision.advertised) == "203.0.113.7:30000"
    assert decision.decided_by == (
        "per-host, label dubbo-nat-sidecar.advertise-host, label dubbo-nat-sidecar.port.20880"
    )
    assert converge([registration(ORIGINAL)], ContainerIndex([labelled]))[0].name == url_name(
        "203.0.113.7", 30000
    )


def test_default_decisions_name_the_address_source() -> None:
    """Without labels, a binding on all addresses is advertised at the sidecar's address,
    and the decision names where that address came from."""
    me = replace(ME, advertise_source="url:http://100.100.100.200/latest/meta-data/eipv4")
    decision = only(plan_providers([registration(ORIGINAL)], ContainerIndex([container()]), me))
    assert decision.decided_by == (
        "per-host, address from url:http://100.100.100.200/latest/meta-data/eipv4"
    )


def test_opted_out_container_is_left_alone() -> None:
    """enable=false: the registration stays exactly as it is."""
    index = ContainerIndex([container(enable="false")])
    decision = only(plan_providers([registration(ORIGINAL)], index, ME))
    assert decision.action is Action.LEAVE
    assert decision.reason == "opted out by label dubbo-nat-sidecar.enable=false"
    assert decision.transaction is None


def test_invalid_label_leaves_the_container_alone_and_says_why() -> None:
    """A label the sidecar cannot follow is reported and nothing is changed."""
    index = ContainerIndex([container(port_20880="0")])
    decision = only(plan_providers([registration(ORIGINAL)], index, ME))
    assert decision.action is Action.LEAVE
    assert decision.reason == (
        "label dubbo-nat-sidecar.port.20880: '0' is not a port (1-65535): left alone"
    )


def test_opting_out_after_a_rewrite_never_unregisters_the_provider() -> None:
    """An existing rewrite of a container that now opts out stays while the original is
    gone (removing it would unregister the provider) and goes once the original is back."""
    after = rewritten_by(ME.session or 0)
    opted_out = ContainerIndex([container(enable="false")])
    kept = only(plan_providers(after, opted_out, ME))
    assert kept.action is Action.KEEP
    assert "the rewrite stays until its container stops" in kept.reason

    back = [*after, registration(ORIGINAL)]
    decisions = {d.node.name: d for d in plan_providers(back, opted_out, ME)}
    assert decisions[ORIGINAL].action is Action.LEAVE
    assert decisions[REWRITTEN].action is Action.REMOVE
    assert apply(back, list(decisions.values()), 0) == [registration(ORIGINAL)]


def test_per_host_sidecar_leaves_containers_a_per_app_sidecar_claims() -> None:
    """A container claimed by a per-app sidecar's lease: its original and its rewrite (owned
    by that sidecar) are left alone by the per-host sidecar."""
    me = replace(ME, scope=Scope(peers={APP_PEER.session: APP_PEER}))
    index = ContainerIndex([container()])
    original = only(plan_providers([registration(ORIGINAL)], index, me))
    assert (original.action, original.reason) == (
        Action.LEAVE,
        "managed by the per-app sidecar of provider (session 0x6006)",
    )
    rewrite = only(plan_providers(rewritten_by(APP_PEER.session), index, me))
    assert rewrite.action is Action.LEAVE
    assert rewrite.transaction is None


def test_per_host_sidecar_never_takes_over_from_a_live_peer() -> None:
    """A rewrite owned by another live sidecar of the engine is left to it, even for a
    container no lease claims (a per-app sidecar whose container was replaced)."""
    me = replace(ME, scope=Scope(peers={APP_PEER.session: APP_PEER}))
    other = container(cid="d4" * 32)
    after = rewritten_by(APP_PEER.session)
    moved = [replace(n, data=n.data.replace(APP.encode(), other.id.encode())) for n in after]
    decision = only(plan_providers(moved, ContainerIndex([other]), me))
    assert decision.action is Action.LEAVE
    assert decision.reason == "managed by the per-app sidecar of provider (session 0x6006)"


def test_per_app_sidecar_manages_only_its_container() -> None:
    """Registrations of other containers are outside a per-app sidecar's scope."""
    me = replace(ME, scope=Scope(app="d4" * 32, app_name="other"))
    decision = only(plan_providers([registration(ORIGINAL)], ContainerIndex([container()]), me))
    assert decision.action is Action.LEAVE
    assert decision.reason == "outside this sidecar's scope (it serves other)"
    assert not decision.local


def test_per_app_sidecar_takes_its_container_over_from_the_per_host_one_once_settled() -> None:
    """The per-host sidecar's rewrite of the app's container moves to the per-app sidecar's
    session in one transaction, but only after the per-host one had time to see the claim."""
    after = rewritten_by(HOST_PEER.session)
    index = ContainerIndex([container()])
    app = Scope(app=APP, app_name="provider", peers={HOST_PEER.session: HOST_PEER})
    waiting = only(plan_providers(after, index, replace(ME, scope=replace(app, settled=False))))
    assert waiting.action is Action.LEAVE
    settled = only(plan_providers(after, index, replace(ME, scope=app)))
    assert settled.action is Action.UPDATE
    assert settled.reason == "taking over from the per-host sidecar (session 0x5005)"
    assert settled.transaction is not None
    assert [type(op) for op in settled.transaction.ops] == [Delete, Create]


def test_mirror_label_mirrors_one_container_while_others_are_replaced() -> None:
    """mode=mirror on one container: its registration is mirrored and left in place, the
    other container's is replaced, in one pass over the same path."""
    mirror_path = "/dubbo-external/com.example.DemoService/providers"
    mirrored = container(mode="mirror")
    replaced = container(cid="d4" * 32, address="172.17.0.6", name="other",
                         bindings=(PublishedPort(20880, "0.0.0.0", 32769),))  # fmt: skip
    nodes = [registration(ORIGINAL), registration(url_name("172.17.0.6"))]
    decisions = plan_scope(
        PathView(PROVIDERS, nodes, (), mirror_path, ()),
        ContainerIndex([mirrored, replaced]),
        ME,
        TRUSTING,
    )
    by_host = {str(d.original): d for d in decisions}
    mirror = by_host["172.17.0.5:20880"]
    assert mirror.action is Action.REWRITE
    assert mirror.transaction is not None
    assert mirror.transaction.ops == (Create(f"{mirror_path}/{REWRITTEN}", mirror.marker.encode()),)  # type: ignore[union-attr]
    assert "label dubbo-nat-sidecar.mode=mirror" in mirror.decided_by
    replace_ops = by_host["172.17.0.6:20880"].transaction
    assert replace_ops is not None
    assert [type(op) for op in replace_ops.ops] == [Delete, Create]
    assert Mode(ME.mode) is Mode.REPLACE


def test_mirror_label_without_a_mirror_root_is_left_alone() -> None:
    """With several registry roots there is no mirror counterpart: the container asking for
    mirror mode is left alone, with the reason."""
    decision = only(
        plan_providers([registration(ORIGINAL)], ContainerIndex([container(mode="mirror")]), ME)
    )
    assert decision.action is Action.LEAVE
    assert decision.reason.startswith("label dubbo-nat-sidecar.mode=mirror: no mirror root")


def test_a_new_advertised_address_re_points_every_rewrite_atomically() -> None:
    """When the advertised address changes, each managed rewrite is replaced by one at the
    new address in a single transaction; a second pass is idle."""
    after = rewritten_by(ME.session or 0)
    moved = replace(ME, advertise_host="198.51.100.4", advertise_source="url:http://md/ip")
    decision = only(plan_providers(after, ContainerIndex([container()]), moved))
    assert decision.action is Action.UPDATE
    assert decision.reason == "advertised address changed from 192.0.2.10:32768"
    assert decision.transaction is not None
    assert [type(op) for op in decision.transaction.ops] == [Delete, Create]
    final = converge(after, ContainerIndex([container()]), moved)
    assert [n.name for n in final] == [url_name("198.51.100.4", 32768)]
