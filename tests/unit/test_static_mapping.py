"""The static mapping file changes under a running sidecar: a half-written file is never
acted on, a finished change is."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sidecar.loop.inventory import Inventory
from sidecar.report.events import Events
from sidecar.sources import static
from testbed.polling import wait_until

FULL = 'addresses = ["10.0.0.5"]\n[ports]\n20880 = 30880\n20881 = 30881\n'


def _inventory(mapping: Path) -> Inventory:
    return Inventory(None, static.load(mapping), mapping, (), None, set, Events())


def _ports(inventory: Inventory) -> tuple[tuple[int, int], ...]:
    container = inventory.static_container()
    return tuple((p.container_port, p.host_port) for p in container.published) if container else ()


def _changes(logs: Sequence[Mapping[str, object]]) -> list[object]:
    return [e["ports"] for e in logs if e["event"] == "static_mapping_changed"]


def test_a_file_read_half_written_changes_nothing(tmp_path: Path) -> None:
    """The file read while an editor rewrites it in place (empty, then cut after a line)
    keeps the mapping in force: no port is dropped, so no rewrite is removed."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(FULL)
    inventory = _inventory(mapping)
    with capture_logs() as logs:
        for partial in ("", FULL[: FULL.index("20881")], FULL):
            mapping.write_text(partial)
            inventory.refresh(all_containers=False, changed=set(), static=True)
            assert _ports(inventory) == ((20880, 30880), (20881, 30881))
    assert _changes(logs) == []


def test_a_change_read_twice_is_acted_on(tmp_path: Path) -> None:
    """A finished change, emptying the file included, takes effect at the second read that
    finds it (the watch reads again a second later)."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(FULL)
    inventory = _inventory(mapping)
    with capture_logs() as logs:
        mapping.write_text(FULL.replace("30881", "31881"))
        inventory.refresh(all_containers=False, changed=set(), static=True)
        inventory.refresh(all_containers=False, changed=set(), static=True)
        assert _ports(inventory) == ((20880, 30880), (20881, 31881))
        mapping.write_text("")
        inventory.refresh(all_containers=False, changed=set(), static=True)
        inventory.refresh(all_containers=False, changed=set(), static=True)
        assert _ports(inventory) == ()
    assert _changes(logs) == [{20880: 30880, 20881: 31881}, {}]


def test_the_watch_reports_a_change_and_again_a_second_later(tmp_path: Path) -> None:
    """One write to the file is reported twice, so that the second read can confirm it."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(FULL)
    reported: list[int] = []
    watch = static.StaticWatch(mapping, lambda: reported.append(1))
    watch.start()
    try:
        mapping.write_text(FULL + "20882 = 30882\n")
        wait_until(lambda: len(reported) >= 2, 5)
    finally:
        watch.stop()


def test_start_waits_until_a_file_being_written_is_whole(tmp_path: Path) -> None:
    """A sidecar started while its mapping file is being written (empty, then whole a moment
    later) starts with the whole mapping, not an empty one."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text("")
    writer = threading.Timer(0.3, lambda: mapping.write_text(FULL))
    writer.start()
    try:
        found = static.at_start(mapping, ())
    finally:
        writer.cancel()
    assert found.ports == ((20880, 30880), (20881, 30881))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "oversized"])
def test_anything_but_a_regular_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    """The mapping file is replaced by a FIFO nobody writes (as a hung mount behaves), a
    directory, a device or a file too large to be one: the loop is not held, the earlier
    mapping stays, and the reason names the file."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(FULL)
    inventory = _inventory(mapping)
    mapping.unlink()
    if kind == "fifo":
        os.mkfifo(mapping)
    elif kind == "directory":
        mapping.mkdir()
    elif kind == "device":
        mapping.symlink_to("/dev/zero")
    else:
        mapping.write_bytes(b"#" * (33 << 20))
    with capture_logs() as logs:
        inventory.refresh(False, set(), static=True)
    [unchanged] = [e for e in logs if e["event"] == "static_mapping_unchanged"]
    assert str(mapping) in unchanged["problem"]
    assert _ports(inventory) == ((20880, 30880), (20881, 30881))
