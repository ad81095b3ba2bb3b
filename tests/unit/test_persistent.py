"""Persistent registrations (no session): a container's only when its label
``dubbo-nat-sidecar.persistent-application`` names their application, never when ambiguous;
their rewrites are persistent, survive the sidecar's restarts and go with the container."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import labels
from sidecar.mapping import ContainerIndex
from sidecar.model import Create, Delete, RegistryNode, SetData
from sidecar.ownership import read_marker
from sidecar.plan import Action, Mode, PathView
from sidecar.plan import plan_path as plan_scope
from tests.unit.scenarios import (
    ME,
    PROVIDERS,
    TRUSTING,
    apply,
    as_bytes,
    container,
    converge,
    instance_json,
    only,
    plan_providers,
    registration,
    url_name,
)

LABEL = "dubbo-nat-sidecar.persistent-application"
CLAIMED = ContainerIndex([container(persistent_application="demo")])


def persistent(**params: str) -> RegistryNode:
    """A persistent registration (``dynamic=false``) of the container endpoint."""
    return registration(url_name("172.17.0.5", 20880, "dubbo", dynamic="false", **params), owner=0)


def test_a_claimed_persistent_registration_is_rewritten_into_a_persistent_node() -> None:
    """With the label naming its application, a persistent registration is swapped for a
    persistent rewrite carrying the sidecar's marker; DECIDED BY names the label; a second
    pass keeps it."""
    decision = only(plan_providers([persistent()], CLAIMED, ME))

    assert decision.action is Action.REWRITE
    assert f"label {LABEL}" in decision.decided_by
    assert decision.transaction is not None
    delete, create = decision.transaction.ops
    assert delete == Delete(persistent().path, 0)
    assert isinstance(create, Create)
    assert create.persistent
    marker = read_marker(create.data)
    assert marker is not None
    assert marker.provider_session == 0
    [after] = converge([persistent()], CLAIMED)
    assert after.owner == 0


def test_unclaimed_other_application_and_ambiguous_registrations_are_left_alone() -> None:
    """Without the label a persistent node is refused as before; another application's
    (a replica elsewhere at the same container address) is refused; two persistent
    registrations of the same service at this endpoint are ambiguous and both refused, while
    one of another version is this container's."""
    unlabelled = only(plan_providers([persistent()], ContainerIndex([container()]), ME))
    assert (unlabelled.action, unlabelled.refused) == (Action.LEAVE, True)
    assert f"{LABEL}=<application>" in unlabelled.reason

    replica = persistent(application="billing")
    other = only(plan_providers([replica], CLAIMED, ME))
    assert (other.action, other.refused) == (Action.LEAVE, True)
    assert "application 'billing'" in other.reason
    assert f"label {LABEL}" in other.decided_by

    twins = [persistent(timestamp="1"), persistent(timestamp="2"), persistent(version="2.0")]
    decisions = {d.node.name: d for d in plan_providers(twins, CLAIMED, ME)}
    for twin in twins[:2]:
        assert decisions[twin.name].action is Action.LEAVE
        assert "2 persistent registrations of this service" in decisions[twin.name].reason
    assert decisions[twins[2].name].action is Action.REWRITE


def test_persistent_rewrites_survive_restarts_and_go_with_their_container() -> None:
    """A persistent rewrite is kept by a later run with another session (nothing to take
    over), removed when its container stops, and never touches ephemeral peers."""
    [rewritten] = converge([persistent()], CLAIMED)
    restarted = replace(ME, session=0x9999)
    kept = only(plan_providers([rewritten], CLAIMED, restarted))
    assert kept.action is Action.KEEP
    assert "persistent" in kept.reason

    removed = only(plan_providers([rewritten], ContainerIndex([]), restarted))
    assert removed.action is Action.REMOVE
    assert removed.transaction is not None
    assert removed.transaction.ops == (Delete(rewritten.path, 0),)


def test_a_vanished_persistent_rewrite_is_restored_persistent() -> None:
    """A persistent rewrite the sidecar remembers, deleted by someone else, is re-created
    persistent while its container serves."""
    [rewritten] = converge([persistent()], CLAIMED)
    [restore] = plan_providers([], CLAIMED, ME, remembered=[rewritten])
    assert restore.action is Action.RESTORE
    assert restore.transaction is not None
    [create] = restore.transaction.ops
    assert isinstance(create, Create)
    assert create.persistent


def test_mirror_mode_mirrors_a_claimed_persistent_registration() -> None:
    """In mirror mode the claimed persistent original stays and is mirrored (an ephemeral
    mirror of the sidecar's, as every mirror)."""
    view = PathView(PROVIDERS, [persistent()], mirror_parent="/mirror/x/providers")
    decision = only(plan_scope(view, CLAIMED, replace(ME, mode=Mode.MIRROR), TRUSTING))
    assert decision.action is Action.REWRITE
    assert decision.transaction is not None
    [create] = decision.transaction.ops
    assert isinstance(create, Create)
    assert create.path.startswith("/mirror/x/providers/")
    assert not create.persistent


def test_a_claimed_persistent_instance_is_rewritten_in_place_and_removed_with_its_container() -> (
    None
):
    """A persistent instance whose name (the application) the label claims is rewritten in
    place (still persistent); once its container has stopped, the per-host sidecar removes
    it (no session would), a per-app sidecar leaves it."""
    app = "/services/shop-provider"
    index = ContainerIndex([container(persistent_application="shop-provider")],
                           subnets=["172.17.0.0/16"])  # fmt: skip
    node = RegistryNode(app, "172.17.0.5:20880", as_bytes(instance_json()), 0, 0)
    decision = only(plan_scope(PathView(app, [node], instances=True), index, ME, TRUSTING))
    assert decision.action is Action.REWRITE_IN_PLACE
    assert decision.transaction is not None
    [set_data] = decision.transaction.ops
    assert isinstance(set_data, SetData)
    [after] = apply([node], [decision], 1)
    assert after.owner == 0

    gone = ContainerIndex([], subnets=["172.17.0.0/16"])
    removal = only(plan_scope(PathView(app, [after], instances=True), gone, ME, TRUSTING))
    assert removal.action is Action.REMOVE
    per_app = replace(ME, scope=replace(ME.scope, app="d" * 64))
    left = only(plan_scope(PathView(app, [after], instances=True), gone, per_app, TRUSTING))
    assert left.action is Action.LEAVE


@pytest.mark.parametrize("value", ["", " shop", "shop\n", "a\x00b"])
def test_a_label_that_is_no_application_name_is_refused(value: str) -> None:
    """Empty values, surrounding blanks and control characters are refused with the label's
    name (the container is then left alone, as for any label it cannot follow)."""
    with pytest.raises(labels.InvalidLabels, match=LABEL):
        labels.parse(((LABEL, value),))


@settings(max_examples=100, deadline=None)
@given(
    applications=st.lists(st.sampled_from(["demo", "billing", "shop"]), min_size=1, max_size=5),
    versions=st.lists(st.sampled_from(["1", "2"]), min_size=5, max_size=5),
)
def test_only_a_single_claimed_registration_per_service_is_ever_rewritten(
    applications: list[str], versions: list[str]
) -> None:
    """For any mix of persistent registrations of the endpoint: exactly those of the claimed
    application whose service no other one of that application registers are rewritten,
    and nothing else is written."""
    nodes = [
        persistent(application=a, version=v, timestamp=str(i))
        for i, (a, v) in enumerate(zip(applications, versions, strict=False))
    ]
    decisions = plan_providers(nodes, CLAIMED, ME)
    rewritten = {d.node.name for d in decisions if d.action.writes}
    claimed = [(n, v) for n, a, v in zip(nodes, applications, versions, strict=False)
               if a == "demo"]  # fmt: skip
    expected = {n.name for n, v in claimed if [w for _, w in claimed].count(v) == 1}
    assert rewritten == expected
    assert all(d.action in (Action.REWRITE, Action.LEAVE) for d in decisions)
