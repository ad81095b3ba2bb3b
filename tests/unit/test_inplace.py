"""Replace mode for application-level instances: each instance is rewritten in place (its node
stays its provider's), follows its provider's updates and re-registrations, and instances an
earlier version renamed are migrated without a gap."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import instances
from sidecar.mapping import ContainerIndex
from sidecar.model import (
    Check,
    Container,
    Create,
    Delete,
    Endpoint,
    Origin,
    Origins,
    PublishedPort,
    RegistryNode,
    SetData,
)
from sidecar.ownership import LocalAddresses, Marker, Ownership
from sidecar.plan import Action, Decision, Identity, Mode, PathView, Remembered, claims_in
from sidecar.plan import plan_path as plan_scope
from sidecar.scope import Lease, Scope
from tests.unit.scenarios import ENGINE, ME, TRUSTING, apply, as_bytes, instance_json, only

APP = "/services/shop-provider"
NAME = "172.17.0.5:20880"
PROVIDER = 0x2002
PUBLISHED = "192.0.2.10:32768"


def shop(**labels: str) -> Container:
    bindings = (PublishedPort(20880, "0.0.0.0", 32768), PublishedPort(50051, "0.0.0.0", 40051))
    found = tuple(sorted((f"dubbo-nat-sidecar.{k}", v) for k, v in labels.items()))
    return Container("c" * 64, "shop-1", "bridge", ("172.17.0.5",), bindings, labels=found)


INDEX = ContainerIndex([shop()], subnets=["172.17.0.0/16"])


def provided(revision: str = "a1b2c3d4e5", owner: int = PROVIDER, version: int = 0) -> RegistryNode:
    """The provider's own instance node, as Curator writes it."""
    return RegistryNode(APP, NAME, as_bytes(instance_json(revision=revision)), owner, version)


def plan(
    nodes: list[RegistryNode],
    index: ContainerIndex = INDEX,
    me: Identity = ME,
    remembered: list[Remembered] | None = None,
    owners: Ownership = TRUSTING,
) -> list[Decision]:
    return plan_scope(PathView(APP, nodes, remembered or [], instances=True), index, me, owners)


def rewritten_for(node: RegistryNode, host: str = "192.0.2.10") -> bytes:
    """How the provider's data reads at the published address (each port by its binding)."""
    instance = instances.parse(node.name, node.data)
    ports = {50051: 40051}
    return instances.rewrite(instance, Endpoint(host, 32768), ports.get)[1]


def remember(decisions: list[Decision], nodes: list[RegistryNode]) -> list[Remembered]:
    """What the loop's memory holds after these decisions: the sidecar's own nodes."""
    by_path = {n.path: n for n in nodes}
    found = []
    for d in decisions:
        path = d.rewritten_path
        if path is not None and path in by_path and d.marker is not None:
            found.append(Remembered(by_path[path], d.marker))
    return found


def test_instance_is_rewritten_in_its_own_node_which_stays_the_providers() -> None:
    """The provider's instance gets one version-checked setData of its own path: its name,
    owner and every non-address field stay; the data names the published endpoint; the
    reason warns about Dubbo 3.1+ ports; the next pass keeps it, saying it is the
    provider's."""
    original = provided(version=3)
    decision = only(plan([original]))

    assert decision.action is Action.REWRITE_IN_PLACE
    assert decision.transaction is not None
    assert decision.transaction.ops == (SetData(original.path, rewritten_for(original), 3),)
    assert "Dubbo 3.1+ consumers may take the port from the provider's metadata" in decision.reason
    assert decision.rewritten_path is None  # not the sidecar's: nothing to remember
    [after] = apply([original], [decision], ME.session or 0)
    assert (after.name, after.owner) == (NAME, PROVIDER)
    doc = json.loads(after.data)
    assert (doc["id"], doc["address"], doc["port"]) == (PUBLISHED, "192.0.2.10", 32768)

    again = only(plan([after]))
    assert again.action is Action.KEEP
    assert (
        again.reason
        == f"rewritten in place; the node stays its provider's (session 0x{PROVIDER:x})"
    )
    assert again.transaction is None


def test_providers_update_and_reregistration_are_rewritten_again() -> None:
    """Curator's updateService (a setData of its own path with its container address and a
    new revision) and a re-registration (a new node) are each rewritten in place again,
    keeping the new revision."""
    [rewritten] = apply([provided()], plan([provided()]), ME.session or 0)
    updated = replace(provided(revision="rev-2"), version=rewritten.version + 1)
    decision = only(plan([updated]))
    assert decision.action is Action.REWRITE_IN_PLACE
    assert decision.transaction is not None
    assert decision.transaction.ops == (SetData(NAME and updated.path, rewritten_for(updated),
                                                updated.version),)  # fmt: skip
    [after] = apply([updated], [decision], ME.session or 0)
    assert json.loads(after.data)["payload"]["metadata"]["dubbo.metadata.revision"] == "rev-2"

    reregistered = provided(revision="rev-2", owner=0x3003)
    assert only(plan([reregistered])).action is Action.REWRITE_IN_PLACE


def test_a_changed_advertised_address_rewrites_the_instance_again() -> None:
    """An instance rewritten in place for an earlier advertised host is recognised from its
    data alone and rewritten for the new one, exactly as its original would be."""
    [rewritten] = apply([provided()], plan([provided()]), ME.session or 0)
    moved = replace(ME, advertise_host="198.51.100.7")

    decision = only(plan([rewritten], me=moved))

    assert decision.action is Action.REWRITE_IN_PLACE
    assert decision.reason.startswith("advertised address changed from 192.0.2.10:32768")
    assert decision.transaction is not None
    assert decision.transaction.ops == (
        SetData(rewritten.path, rewritten_for(provided(), "198.51.100.7"), rewritten.version),
    )


def test_instances_rewritten_elsewhere_are_left_as_they_are() -> None:
    """Data that is not this sidecar's rewrite of the node's container endpoint (another
    host's sidecar with other ports), or an in-place instance whose session connects from
    another host, is left alone, byte for byte."""
    other_ports = instances.rewrite(
        instances.parse(NAME, provided().data), Endpoint("203.0.113.9", 31000), lambda p: p + 1
    )[1]
    foreign = RegistryNode(APP, NAME, other_ports, PROVIDER, 0)
    left = only(plan([foreign]))
    assert (left.action, left.transaction) == (Action.LEAVE, None)
    assert "not 172.17.0.5:20880 nor this sidecar's rewrite of it" in left.reason

    [ours] = apply([provided()], plan([provided()]), ME.session or 0)
    proof = Ownership(
        Origins({PROVIDER: Origin("203.0.113.9", "zk")}), LocalAddresses(frozenset()), {}
    )
    refused = only(plan([ours], owners=proof))
    assert (refused.action, refused.refused) == (Action.LEAVE, True)


def test_a_stopped_containers_instance_is_its_providers_business() -> None:
    """When its container stops, an instance rewritten in place is left to its provider's
    session (which ends with it): no write, no probe."""
    [rewritten] = apply([provided()], plan([provided()]), ME.session or 0)
    decision = only(plan([rewritten], index=ContainerIndex([], subnets=["172.17.0.0/16"])))
    assert (decision.action, decision.transaction) == (Action.LEAVE, None)
    assert "the node is its provider's (session" in decision.reason


def test_in_place_instances_claim_their_container_endpoint() -> None:
    """An instance rewritten in place still claims its name's endpoint for its session (the
    fallback ownership proof counts sessions per endpoint)."""
    [rewritten] = apply([provided()], plan([provided()]), ME.session or 0)
    assert claims_in(PathView(APP, [rewritten], instances=True)) == {
        Endpoint("172.17.0.5", 20880): {PROVIDER}
    }


def test_mirror_mode_still_mirrors_instances() -> None:
    """A container labelled for mirror mode has its instance mirrored as before: the
    original untouched, the rewrite under the mirror path under the advertised name."""
    index = ContainerIndex([shop(mode="mirror")])
    view = PathView(APP, [provided()], mirror_parent="/mirror/shop-provider", instances=True)
    decision = only(plan_scope(view, index, ME, TRUSTING))
    assert decision.action is Action.REWRITE
    assert decision.transaction is not None
    assert decision.transaction.ops == (
        Create(f"/mirror/shop-provider/{PUBLISHED}", rewritten_for(provided())),
    )


# -- instances an earlier version renamed, and the sidecar's own nodes -------------------------


def renamed_by_an_earlier_version(owner: int = ME.session or 0) -> Remembered:
    """The old way: the provider's node deleted, one named after the advertised endpoint in
    the sidecar's session, remembered with its original's data."""
    original = provided()
    node = RegistryNode(APP, PUBLISHED, rewritten_for(original), owner, 0)
    marker = Marker(NAME, Endpoint("172.17.0.5", 20880), "c" * 64, ENGINE, PROVIDER,
                    original_data=original.data)  # fmt: skip
    return Remembered(node, marker)


def test_a_renamed_instance_is_migrated_in_place_in_one_transaction() -> None:
    """One transaction deletes the renamed node and creates the instance under its original
    name with the rewritten data: consumers never see it missing. It stays in the sidecar's
    session and is remembered; the next pass keeps it."""
    old = renamed_by_an_earlier_version()
    decision = only(plan([old.node], remembered=[old]))

    assert decision.action is Action.UPDATE
    assert decision.transaction is not None
    assert decision.transaction.ops == (
        Delete(old.node.path, 0), Create(f"{APP}/{NAME}", rewritten_for(provided())),
    )  # fmt: skip
    assert decision.rewritten_path == f"{APP}/{NAME}"
    after = apply([old.node], [decision], ME.session or 0)
    assert [(n.name, n.owner) for n in after] == [(NAME, ME.session)]

    kept = only(plan(after, remembered=remember([decision], after)))
    assert (kept.action, kept.rewritten_path) == (Action.KEEP, f"{APP}/{NAME}")
    assert "until its provider registers again" in kept.reason


def test_a_migrated_instance_follows_its_provider_and_its_container() -> None:
    """Once migrated: the provider re-registering makes it the provider's again (rewritten in
    place); deleted while the sidecar's session lives (Curator registering again deletes it
    first) it is forgotten, not raced; lost with the sidecar's session, it is re-created in
    place; a container that does not serve keeps it; one that stopped removes it."""
    old = renamed_by_an_earlier_version()
    migration = plan([old.node], remembered=[old])
    migrated = apply([old.node], migration, ME.session or 0)
    memory = remember(migration, migrated)

    reregistered = provided(owner=0x3003, version=0)
    decision = only(plan([reregistered], remembered=memory))
    assert decision.action is Action.REWRITE_IN_PLACE

    assert only(plan([], remembered=memory)).action is Action.FORGET
    restore = only(plan([], me=replace(ME, session=0x1002), remembered=memory))
    assert restore.action is Action.RESTORE
    assert restore.transaction is not None
    assert restore.transaction.ops == (Create(f"{APP}/{NAME}", rewritten_for(provided())),)

    paused = ContainerIndex([replace(shop(), not_serving="paused")])
    assert only(plan(migrated, index=paused, remembered=memory)).action is Action.KEEP
    stopped = only(plan(migrated, index=ContainerIndex([]), remembered=memory))
    assert stopped.action is Action.REMOVE
    assert stopped.transaction is not None
    assert stopped.transaction.ops == (Delete(f"{APP}/{NAME}", 0),)


def test_a_renamed_instance_whose_original_is_back_goes_once_the_original_is_rewritten() -> None:
    """The provider registered its node again next to the renamed one: the original is
    rewritten in place, and the renamed node deleted only after that setData (checked)."""
    old = renamed_by_an_earlier_version()
    original = provided(owner=0x3003, version=4)
    decisions = {d.node.name: d for d in plan([old.node, original], remembered=[old])}

    assert decisions[NAME].action is Action.REWRITE_IN_PLACE
    removal = decisions[PUBLISHED]
    assert removal.action is Action.REMOVE
    assert removal.transaction is not None
    assert removal.transaction.ops == (Check(original.path, 5), Delete(old.node.path, 0))
    after = apply([old.node, original], list(decisions.values()), ME.session or 0)
    assert [(n.name, n.owner, n.data) for n in after] == [(NAME, 0x3003, rewritten_for(original))]


def test_an_instance_in_a_live_peers_session_is_the_peers() -> None:
    """An instance migrated into the per-host sidecar's session is left to it by a per-app
    sidecar of another container, and kept by an observer (plan, which reads the per-host
    lease as its own)."""
    [migrated] = apply([provided()], plan([provided()]), ME.session or 0)
    peer_session = 0x7007
    in_peer = replace(migrated, owner=peer_session)
    peers = {peer_session: Lease("host", peer_session)}
    other_app = replace(ME, scope=Scope(app="d" * 64, app_name="other", peers=peers))
    assert only(plan([in_peer], me=other_app)).action is Action.LEAVE
    observer = replace(ME, session=None)
    assert only(plan([in_peer], me=observer)).action is Action.KEEP


def test_a_per_app_sidecar_takes_its_instance_over_from_the_per_host_one() -> None:
    """A settled per-app sidecar takes its container's migrated instance over from the live
    per-host sidecar in one transaction, with the same name and data."""
    [node] = apply([provided()], plan([provided()]), ME.session or 0)
    in_host = replace(node, owner=0x7007)
    me = replace(ME, scope=Scope(app="c" * 64, app_name="shop-1",
                                 peers={0x7007: Lease("host", 0x7007)}))  # fmt: skip
    decision = only(plan([in_host], me=me))
    assert decision.action is Action.UPDATE
    assert decision.transaction is not None
    assert decision.transaction.ops == (
        Delete(in_host.path, in_host.version), Create(in_host.path, node.data),
    )  # fmt: skip


# -- the planner's promises, for any instance and any mapping ----------------------------------


@settings(max_examples=100, deadline=None)
@given(
    first=st.ip_addresses(v=4).map(str),
    second=st.ip_addresses(v=4).map(str),
    host_port=st.integers(1024, 65535),
    extra_port=st.one_of(st.none(), st.integers(1024, 65535)),
    version=st.integers(0, 1000),
)
def test_any_instance_converges_in_place_and_follows_an_address_change(
    first: str, second: str, host_port: int, extra_port: int | None, version: int
) -> None:
    """For any bindings and advertised hosts: one pass rewrites the instance in place, the
    next keeps it; after the advertised host changes, one setData makes it exactly what
    rewriting the provider's data for the new host gives, and a further pass keeps it."""
    bindings = [PublishedPort(20880, "0.0.0.0", host_port)]
    if extra_port is not None and extra_port != host_port:
        bindings.append(PublishedPort(50051, "0.0.0.0", extra_port))
    index = ContainerIndex([Container("c" * 64, "shop-1", "bridge", ("172.17.0.5",),
                                      tuple(bindings))])  # fmt: skip
    original = provided(version=version)
    here, moved = replace(ME, advertise_host=first), replace(ME, advertise_host=second)

    nodes = apply([original], plan([original], index, here), 1)
    assert only(plan(nodes, index, here)).action is Action.KEEP
    after = apply(nodes, plan(nodes, index, moved), 1)
    direct = apply([original], plan([original], index, moved), 1)
    assert [(n.name, n.owner, n.data) for n in after] == [(n.name, n.owner, n.data) for n in direct]
    assert [d for d in plan(after, index, moved) if d.action.writes] == []


def test_mode_label_replace_overrides_a_mirror_default() -> None:
    """A container labelled replace under a mirror-mode sidecar is rewritten in place."""
    index = ContainerIndex([shop(mode="replace")])
    mirror_me = replace(ME, mode=Mode.MIRROR)
    view = PathView(APP, [provided()], mirror_parent="/mirror/shop-provider", instances=True)
    assert only(plan_scope(view, index, mirror_me, TRUSTING)).action is Action.REWRITE_IN_PLACE


def test_a_migrated_instance_updated_by_its_provider_stays_the_sidecars() -> None:
    """The provider's update of a migrated instance (a setData of the node in the sidecar's
    session) is rewritten in place; the node, still in the sidecar's session, is then known
    as the sidecar's own again from its data alone (kept and remembered), so it is still
    re-created once that session is lost."""
    old = renamed_by_an_earlier_version()
    migrated = apply([old.node], plan([old.node], remembered=[old]), ME.session or 0)
    updated = replace(migrated[0], data=provided(revision="rev-2").data, version=1)

    decision = only(plan([updated]))
    assert decision.action is Action.REWRITE_IN_PLACE
    after = apply([updated], [decision], ME.session or 0)
    kept = only(plan(after))
    assert (kept.action, kept.rewritten_path) == (Action.KEEP, f"{APP}/{NAME}")
    assert kept.marker is not None
    lost = replace(ME, session=0x1002)
    restore = only(plan([], me=lost, remembered=remember([kept], after)))
    assert restore.action is Action.RESTORE
    assert restore.transaction is not None
    assert restore.transaction.ops == (Create(f"{APP}/{NAME}", after[0].data),)
