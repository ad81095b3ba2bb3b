"""Deployment scope: which containers a per-host or per-app sidecar manages."""

from __future__ import annotations

from sidecar.model import Container
from sidecar.scope import Lease, Scope, choose, lease_data, peers_from

APP = Container("a" * 64, "shop", "bridge", ("172.17.0.5",))
JOINED = Container("b" * 64, "shop-sidecar", f"container:{'a' * 64}")
OTHER = Container("c" * 64, "stock", "bridge", ("172.17.0.6",))
RUNNING = [APP, JOINED, OTHER]


def test_a_sidecar_sharing_a_containers_namespace_serves_that_container() -> None:
    """Auto: this namespace's addresses are a container's that another container joined
    (the sidecar's own, network_mode service:app), so the sidecar is that app's."""
    chosen = choose("auto", None, RUNNING, {"127.0.0.1", "172.17.0.5"})
    assert chosen == Scope(app=APP.id, app_name="shop")


def test_a_sidecar_on_the_host_serves_the_host() -> None:
    """Auto: no container holds this namespace's addresses: per-host."""
    assert choose("auto", None, RUNNING, {"192.0.2.10", "172.17.0.1"}) == Scope()


def test_a_sidecar_that_owns_its_namespace_is_not_its_own_app() -> None:
    """Auto: a per-host sidecar in its own bridge container finds its own addresses on a
    container nobody joined (itself), and stays per-host."""
    assert choose("auto", None, RUNNING, {"172.17.0.6"}) == Scope()


def test_named_container_and_namespace_sharing_containers() -> None:
    """--container names the app; naming a container that joined another's namespace serves
    the namespace's owner; a container not running is waited for."""
    for mode, container in (("auto", "shop"), ("app", "b" * 12)):
        chosen = choose(mode, container, RUNNING, set())
        assert isinstance(chosen, Scope)
        assert chosen.app == APP.id
    assert choose("app", "nope", RUNNING, set()) == "container nope is not running"
    assert isinstance(choose("app", None, RUNNING, {"10.9.9.9"}), str)


def test_per_host_leaves_claimed_containers_and_per_app_everything_else() -> None:
    """A container claimed by a per-app sidecar's lease is not the per-host sidecar's; a
    per-app sidecar manages its own container only."""
    claimed = Lease(f"app-{APP.id}", 0x77, "shop")
    host = Scope(peers={0x77: claimed})
    assert host.excludes(APP.id) == "managed by the per-app sidecar of shop (session 0x77)"
    assert host.excludes(OTHER.id) is None
    app = Scope(app=APP.id, app_name="shop")
    assert app.excludes(APP.id) is None
    assert app.excludes(OTHER.id) == "outside this sidecar's scope (it serves shop)"
    assert app.excludes("static") is None


def test_only_a_settled_per_app_sidecar_takes_over_from_the_per_host_one() -> None:
    """Nothing is taken from a live sidecar, except a per-app one's container from the
    per-host one, and only once the per-host one has had time to see the claim."""
    host, other_app = Lease("host", 0x1), Lease(f"app-{OTHER.id}", 0x2)
    app = Scope(app=APP.id, settled=True)
    assert app.may_take_from(host)
    assert not app.may_take_from(other_app)
    assert not Scope(app=APP.id, settled=False).may_take_from(host)
    assert not Scope().may_take_from(other_app)


def test_peers_are_the_leases_other_than_ones_own() -> None:
    """Reading the leases: every other sidecar, by session, with the container it claims."""
    app = Scope(app=APP.id, app_name="shop")
    leases = {
        "host": (0x1, b"{}"),
        app.lease_name: (0x2, lease_data(app, pid="1")),
        f"app-{OTHER.id}": (0x3, b"not json"),
        "unrelated": (0x4, b""),
    }
    peers = peers_from(leases, own_lease="host")
    assert sorted(peers) == [0x2, 0x3]
    assert peers[0x2].container == APP.id
    assert peers[0x2].describe() == "the per-app sidecar of shop (session 0x2)"
    assert peers[0x3].describe() == f"the per-app sidecar of {OTHER.id[:12]} (session 0x3)"
