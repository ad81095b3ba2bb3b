"""The loop itself, on in-memory twins of the registry and the engine: retries and backoff,
lease stand-by and takeover, the sweep, address changes, a Docker outage, and plan == run."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from sidecar import instances, records
from sidecar.loop import reconcile
from sidecar.loop.dirty import Work
from sidecar.loop.retries import FIRST, Whole
from sidecar.model import Endpoint, Origin, RegistryNode
from sidecar.ownership import Marker
from sidecar.periodic_sweep import SWEEP_RESYNCS
from sidecar.plan import Remembered, plan_path
from sidecar.sources.address import AdvertiseHost
from tests.twins import FixedOrigins
from tests.unit.harness import ORIGINAL, PROVIDERS, SHOP, Harness, rewritten
from tests.unit.scenarios import as_bytes, instance_json, url_name


@pytest.fixture
def twin() -> Harness:
    harness = Harness()
    harness.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    return harness


def test_a_pass_rewrites_and_the_next_changes_nothing(twin: Harness) -> None:
    """The first pass swaps the registration; a second full pass writes nothing."""
    twin.start()
    assert twin.providers() == [rewritten()]
    writes = twin.registry.requests
    with capture_logs() as logs:
        twin.run(Work(full=True, lease=True, all_containers=True))
    assert not [e for e in logs if e["event"] in ("rewrite", "update", "remove", "restore")]
    assert twin.providers() == [rewritten()]
    assert twin.registry.requests > writes  # it did read


def test_a_failed_read_is_retried_later_each_time_then_cleared(twin: Harness) -> None:
    """A pass that fails is retried after 0.05 s, then 0.1 s, ...; once it succeeds the
    backoff is forgotten and the work is done."""
    twin.registry.failing_reads = 3
    with capture_logs() as logs:
        twin.start()
    assert [e["event"] for e in logs if e["event"] == "zookeeper_pass_failed"]
    retries = twin.components.retries
    assert retries.delay(Whole.CARRIED) == FIRST
    twin.due()  # not due yet: nothing happens
    assert retries.delay(Whole.CARRIED) == FIRST
    twin.clock.now += FIRST
    twin.due()  # due: fails again, waits twice as long
    assert retries.delay(Whole.CARRIED) == 2 * FIRST
    assert twin.providers() == [ORIGINAL]
    twin.clock.now += 2 * FIRST
    twin.due()
    assert twin.providers() == [rewritten()]
    assert retries.delay(Whole.CARRIED) is None


def test_a_held_lease_means_stand_by_until_its_session_is_gone(twin: Harness) -> None:
    """Another live sidecar holds the lease: nothing is written; once its session ends the
    lease is taken and the registration rewritten."""
    lease = f"{twin.components.lease.lease_parent}/host"
    twin.registry.add(lease, b'{"scope":"per-host"}', owner=0x7777)
    with capture_logs() as logs:
        twin.start()
    [standing] = [e for e in logs if e["event"] == "lease_standing_by"]
    assert standing["lease"] == lease
    assert twin.providers() == [ORIGINAL]
    assert not twin.components.lease.holding
    twin.registry.expire(0x7777)
    twin.run(Work(lease=True))
    assert twin.components.lease.holding
    assert twin.registry.nodes[lease].owner == twin.registry.session
    assert twin.providers() == [rewritten()]


def test_a_lease_whose_session_the_servers_call_gone_is_taken_at_once() -> None:
    """A sidecar killed without a state file leaves its lease to its session timeout; when
    the servers say that session is not connected, the lease is taken over at once."""
    twin = Harness(origins=FixedOrigins({}))
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2002)
    twin.origins.origins = {0x2002: _origin("192.0.2.10")}
    lease = f"{twin.components.lease.lease_parent}/host"
    twin.registry.add(lease, b"{}", owner=0x7777)
    twin.start()
    assert twin.registry.nodes[lease].owner == twin.registry.session
    assert twin.providers() == [rewritten()]


def test_the_periodic_sweep_checks_a_slice_of_all_paths_each_time() -> None:
    """Each local resync checks 1/SWEEP_RESYNCS of the known paths; after SWEEP_RESYNCS of
    them every path was checked exactly once."""
    twin = Harness()
    interfaces = [f"/dubbo/com.example.S{i:03}/providers" for i in range(120)]
    for path in interfaces:
        twin.registry.add(f"{path}/{url_name('10.9.9.9')}")
    twin.start()
    checked: list[str] = []
    original = twin.registry.changed_since_read

    def counting(parents: object) -> set[str]:
        paths = list(parents)  # type: ignore[call-overload]
        checked.extend(paths)
        return original(paths)

    twin.registry.changed_since_read = counting  # type: ignore[method-assign]
    for _ in range(SWEEP_RESYNCS):
        twin.run(Work(local=True))
    assert sorted(checked) == sorted(interfaces)


def test_an_address_change_repoints_every_rewrite(twin: Harness) -> None:
    """A new advertised address re-points the managed registration, and is logged once."""
    twin.start()
    moved = AdvertiseHost("198.51.100.7", "--advertise-host")
    with capture_logs() as logs:
        twin.run(Work(new_address=moved))
    [changed] = [e for e in logs if e["event"] == "address_changed"]
    assert (changed["before"], changed["address"]) == ("192.0.2.10", "198.51.100.7")
    assert twin.providers() == [rewritten("198.51.100.7")]


def test_during_a_docker_outage_nothing_changes_then_it_catches_up(twin: Harness) -> None:
    """While Docker does not answer, a container gone meanwhile is not acted on (its listing
    cannot be trusted); the listing is retried with backoff, and once Docker answers the
    stale rewrite is removed."""
    twin.start()
    twin.engine.down = True
    del twin.engine.containers[SHOP.id]
    twin.run(Work(all_containers=True))
    assert twin.providers() == [rewritten()]
    assert not twin.components.inventory.fresh
    assert twin.components.retries.delay(Whole.CONTAINERS) == FIRST
    twin.engine.down = False
    twin.clock.now += FIRST
    twin.due()
    assert twin.providers() == []


def test_plan_reports_exactly_the_decisions_run_then_makes() -> None:
    """One observing pass (plan) and one running pass over the same registry decide the same
    writes on the same nodes."""
    decided = []
    for observing in (True, False):
        twin = Harness(observing=observing)
        twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
        twin.registry.add(f"{PROVIDERS}/{url_name('10.1.1.1')}")
        with capture_logs() as logs:
            twin.start()
        if observing:
            decided.append(
                sorted((str(d.action), d.node.path) for d in twin.decided if d.action.writes)
            )
        else:
            decided.append(
                sorted(
                    (e["event"], e["node"])
                    for e in logs
                    if e["event"] in ("rewrite", "update", "remove", "restore")
                )
            )
    assert decided[0] == decided[1] == [("rewrite", f"{PROVIDERS}/{ORIGINAL}")]


def test_a_path_whose_planning_fails_holds_back_no_other(
    twin: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error planning one path is logged with its traceback and retried; the
    other paths are still rewritten in the same pass."""
    other = "/dubbo/com.example.Other/providers"
    twin.registry.add(f"{other}/{ORIGINAL}")
    real = plan_path

    def failing(view, *args):  # type: ignore[no-untyped-def]
        if view.parent == other:
            raise RuntimeError("a bug")
        return real(view, *args)

    monkeypatch.setattr(reconcile, "plan_path", failing)
    with capture_logs() as logs:
        twin.start()
    assert twin.providers() == [rewritten()]
    [failed] = [e for e in logs if e["event"] == "plan_failed"]
    assert failed["node"] == other
    assert twin.components.retries.delay(other) == FIRST


def _origin(address: str) -> Origin:
    return Origin(address, "127.0.0.1")


def test_a_providers_update_of_its_instance_is_rewritten_again_in_place() -> None:
    """An instance is rewritten in its own node (same owner); the provider's own setData of
    it (a new revision, its container address) fires the data watch the read set, and the
    pass over that path rewrites it again, keeping the new revision."""
    twin = Harness()
    path = "/services/shop-provider/172.17.0.5:20880"
    twin.registry.add(path, as_bytes(instance_json()), owner=0x2002)
    changed: list[str] = []
    twin.registry.on_change = changed.append
    twin.start()

    def seen() -> tuple[str, int, str]:
        node = twin.registry.nodes[path]
        doc = instances.parse_data(path.rpartition("/")[2], node.data).doc
        return (
            f"{doc['address']}:{doc['port']}",
            node.owner,
            doc["payload"]["metadata"]["dubbo.metadata.revision"],
        )

    assert seen() == ("192.0.2.10:32768", 0x2002, "a1b2c3d4e5")
    # The sidecar's own write fired the watch too: the loop reads the path again (and keeps
    # it), which sets the next watch.
    assert "/services/shop-provider" in changed
    twin.run(Work(paths={"/services/shop-provider"}))
    changed.clear()
    twin.registry.set_data(path, as_bytes(instance_json(revision="rev-2")))
    assert changed == ["/services/shop-provider"]
    twin.run(Work(paths=set(changed)))
    assert seen() == ("192.0.2.10:32768", 0x2002, "rev-2")


def test_a_migrated_instance_is_recorded_until_its_provider_registers_again() -> None:
    """An instance an earlier version renamed (remembered from its state file) is migrated
    back under its own name in the sidecar's session, with a record; when the provider
    registers it again it is rewritten in place and the record goes with that write, so
    a later full pass (records read again) leaves the provider's node in its session."""
    twin = Harness()
    app, name = "/services/shop-provider", "172.17.0.5:20880"
    original = as_bytes(instance_json())
    parsed = instances.parse(name, original)
    renamed = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), lambda p: None)[1]
    twin.registry.add(f"{app}/192.0.2.10:32768", renamed, owner=twin.registry.session)
    marker = Marker(name, parsed.endpoint, SHOP.id, "TWIN@host", 0x2002, original_data=original)
    node = RegistryNode(app, "192.0.2.10:32768", renamed, 0, 0)
    twin.components.memory.restore([Remembered(node, marker)])
    twin.start()
    assert twin.registry.children(app) == [name]
    assert twin.registry.nodes[f"{app}/{name}"].owner == twin.registry.session
    records_parent = records.records_parent("TWIN@host")
    assert len(twin.registry.children(records_parent)) == 1

    twin.registry.remove(f"{app}/{name}")  # Curator registers again: delete, then create
    twin.registry.add(f"{app}/{name}", original, owner=0x3003)
    twin.run(Work(paths={app}))
    assert twin.registry.children(records_parent) == []
    twin.run(Work(full=True))
    assert twin.registry.nodes[f"{app}/{name}"].owner == 0x3003
    assert instances.parse_data(name, twin.registry.nodes[f"{app}/{name}"].data).endpoint == (
        Endpoint("192.0.2.10", 32768)
    )
