"""The registry module on a real ZooKeeper: what the periodic sweep re-reads."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient

from sidecar.model import Create, Transaction
from sidecar.registry.zookeeper import ZooKeeperRegistry
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_sweep_rereads_only_paths_whose_children_moved_unseen(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """After a read, a path whose children changed (as a missed watch would hide) is due for
    a re-read; an unchanged one, or one changed only by the sidecar's own write, is not; a
    path never read, or gone, is."""
    quiet, moved, written, unread = (f"{root}/{n}/providers" for n in ("a", "b", "c", "d"))
    for path in (quiet, moved, written, unread):
        registry.ensure_path(path)
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        sidecar.read_paths([quiet, moved, written])
        registry.create(f"{moved}/x", b"")
        sidecar.apply_all([Transaction((Create(f"{written}/y", b""),))])
        gone = f"{root}/gone/providers"
        assert sidecar.changed_since_read([quiet, moved, written, unread, gone]) == {
            moved,
            unread,
            gone,
        }
    finally:
        sidecar.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_client_whose_connection_thread_died_says_so(zookeeper: ZooKeeperServer) -> None:
    """A session id out of range kills kazoo's connection thread (nothing ever connects
    again, nothing is logged): the registry reports it, so /healthz can fail."""
    broken = ZooKeeperRegistry(
        zookeeper.connect_string, 10, lambda _: None, lambda _: None, resume=(2**64, b"p" * 16)
    )
    healthy = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    try:
        broken.connect_in_background()
        healthy.connect_in_background()
        wait_until(lambda: not broken.alive, 10, message="the dead thread went unnoticed")
        wait_until(lambda: healthy.connected, 10)
        assert healthy.alive
    finally:
        broken.close()
        healthy.close()
