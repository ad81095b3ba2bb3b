"""The record of each taken-over registration, kept in ZooKeeper: written in the same
transaction as the rewrite, removed with it, and enough for any restart (or the per-host
sidecar, once a per-app one is gone for good) to restore every rewrite whose container still
serves. On in-memory twins; tests/integration/test_crashes.py does it on a real ZooKeeper."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar import records
from sidecar.loop.dirty import Work
from sidecar.model import Create, Endpoint, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan import Remembered
from tests.unit.harness import ORIGINAL, PROVIDERS, SHOP, Harness, rewritten

RECORDS = records.records_parent("TWIN@host")


def started(**options: object) -> Harness:
    twin = Harness(options=dict(options))
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    return twin


def recorded_paths(twin: Harness) -> list[str]:
    found = []
    for name in twin.registry.children(RECORDS):
        decoded = records.decode(twin.registry.nodes[f"{RECORDS}/{name}"].data)
        assert decoded is not None
        found.append(decoded[0].path)
    return found


def test_the_rewrite_and_its_record_are_one_transaction() -> None:
    """The multi that swaps the registration also creates its persistent record."""
    twin = started()
    [swap] = [t for t in twin.registry.tree.transactions if len(t.ops) > 1]
    creates = [op for op in swap.ops if isinstance(op, Create)]
    assert [(op.path.startswith(RECORDS), op.persistent) for op in creates] == [
        (False, False),
        (True, True),
    ]
    assert recorded_paths(twin) == [f"{PROVIDERS}/{rewritten()}"]
    assert twin.registry.nodes[creates[1].path].owner == 0  # persistent


def test_a_restart_past_the_session_timeout_restores_from_the_records() -> None:
    """Killed right after a rewrite and back after its session expired, with nothing on disk:
    the original is gone, the rewrite died with the session, and the record brings it back."""
    first = started()
    first.registry.expire(first.registry.session)
    assert first.providers() == []
    second = Harness(registry=first.registry.another(0x5001))
    second.start()
    assert second.providers() == [rewritten()]
    assert second.registry.nodes[f"{PROVIDERS}/{rewritten()}"].owner == 0x5001
    assert recorded_paths(second) == [f"{PROVIDERS}/{rewritten()}"]


def test_a_removed_rewrite_takes_its_record_with_it() -> None:
    """The container stops: one transaction removes the rewrite and its record."""
    twin = started()
    del twin.engine.containers[SHOP.id]
    twin.run(Work(all_containers=True))
    assert twin.providers() == []
    assert twin.registry.children(RECORDS) == []


def test_a_record_whose_container_is_gone_is_dropped_at_the_next_start() -> None:
    """Restarted after its container stopped: nothing to restore, and the record goes."""
    first = started()
    first.registry.expire(first.registry.session)
    second = Harness(registry=first.registry.another(0x5001))
    del second.engine.containers[SHOP.id]
    second.start()
    assert second.providers() == []
    assert second.registry.children(RECORDS) == []


def test_the_per_host_sidecar_adopts_a_per_app_sidecar_gone_for_good() -> None:
    """A per-app sidecar's session ends and does not come back: the per-host sidecar of the
    engine restores its app's registration as soon as the per-app lease is gone, and until
    then leaves the records alone."""
    app = started(scope="app", container="shop-1")
    assert app.providers() == [rewritten()]
    host = Harness(registry=app.registry.another(0x5002), options={"scope": "host"})
    host.start()
    assert app.registry.nodes[f"{PROVIDERS}/{rewritten()}"].owner == app.registry.session
    assert len(host.registry.children(RECORDS)) == 1
    app.registry.expire(app.registry.session)  # its lease and rewrite go with it
    host.run(Work(lease=True))
    assert host.providers() == [rewritten()]
    assert host.registry.nodes[f"{PROVIDERS}/{rewritten()}"].owner == 0x5002


def test_rewrites_an_earlier_version_kept_on_disk_get_their_record() -> None:
    """A rewrite known only from an earlier version's state file is recorded at once."""
    first = started()
    for name in first.registry.children(RECORDS):
        first.registry.remove(f"{RECORDS}/{name}")
    node = first.registry.nodes[f"{PROVIDERS}/{rewritten()}"]
    marker = first.components.memory.managed[PROVIDERS][rewritten()].marker
    second = Harness(registry=first.registry.another(first.registry.session))
    second.components.memory.restore(
        [Remembered(RegistryNode(PROVIDERS, rewritten(), node.data, 0, 0), marker)]
    )
    second.start()
    assert recorded_paths(second) == [f"{PROVIDERS}/{rewritten()}"]


@given(
    path=st.text(min_size=1),
    data=st.binary(),
    original=st.text(),
    original_data=st.binary(),
    port=st.integers(1, 65535),
)
def test_a_record_reads_back_as_written(
    path: str, data: bytes, original: str, original_data: bytes, port: int
) -> None:
    """Whatever a rewrite's name and data, its record decodes to the same node and marker."""
    node = RegistryNode("/dubbo/x/providers", path.replace("/", "%2F"), data, 0, 0)
    marker = Marker(original, Endpoint("10.0.0.1", port), "c" * 64, "E@h", 7, original_data)
    assert records.decode(records.encode(node, marker)) == (node, marker)


@given(st.binary())
def test_anything_else_in_the_records_path_is_not_a_record(data: bytes) -> None:
    """Garbage a client wrote under the records path decodes to nothing (and never raises)."""
    decoded = records.decode(data)
    assert decoded is None or decoded[0].parent.startswith("/")


def test_records_under_another_root_are_left_alone() -> None:
    """A sidecar of the same engine serving another root (another registry) has records
    too: this one neither restores nor deletes them."""
    other = Harness(options={"root": "/other"})
    other.registry.add(f"/other/com.example.DemoService/providers/{ORIGINAL}")
    other.start()
    other.registry.expire(other.registry.session)  # its rewrite goes; its record stays
    [theirs] = other.registry.children(RECORDS)
    twin = Harness(registry=other.registry.another(0x5001))
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    assert twin.providers() == [rewritten()]
    assert theirs in twin.registry.children(RECORDS)
    assert twin.registry.children("/other/com.example.DemoService/providers") == []


def test_a_provider_registering_again_keeps_the_record_of_its_rewrite() -> None:
    """The sidecar comes back after its session expired and finds the provider registered
    again (same name) where its record says a rewrite was: it rewrites the registration
    again, and the record stays (the vanished rewrite's record is the new one's), so a later
    restart past this session too still restores it."""
    first = started()
    first.registry.expire(first.registry.session)
    first.registry.add(f"{PROVIDERS}/{ORIGINAL}")  # the provider registers again
    second = Harness(registry=first.registry.another(0x5001))
    second.start()
    assert second.providers() == [rewritten()]
    second.registry.expire(0x5001)
    third = Harness(registry=first.registry.another(0x5002))
    third.start()
    assert third.providers() == [rewritten()]
