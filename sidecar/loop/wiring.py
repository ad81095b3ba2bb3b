"""One assembly: every component built from the settings, for ``run`` (the loop, forever) and
for ``plan`` and ``status`` (one pass of that same loop against a registry that refuses
writes)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import structlog

from sidecar import natrules
from sidecar.config import ConfigError, Settings, tls_files
from sidecar.fleet.indexer import FLEET_ROOT, Indexer
from sidecar.fleet.member import FleetKeeper
from sidecar.hosts import servers
from sidecar.loop.acl_check import AclCheck
from sidecar.loop.apply import Applier
from sidecar.loop.components import Components
from sidecar.loop.dirty import Dirty, Work
from sidecar.loop.inventory import Inventory
from sidecar.loop.lease import LeaseKeeper
from sidecar.loop.liveness import Bounds
from sidecar.loop.loop import Loop, Runtime
from sidecar.loop.memory import Memory
from sidecar.loop.observe import Observer
from sidecar.loop.paths import PathIndex, Roots
from sidecar.loop.persistence import Persistence
from sidecar.loop.reconcile import Reconciler
from sidecar.loop.retries import Retries
from sidecar.loop.roles import InFleet, Observing, Proxying, Role, Watching
from sidecar.loop.status import fleet_now, managed_now
from sidecar.ops.metrics import Metrics
from sidecar.ops.server import OpsServer
from sidecar.plan import Decision, Mode
from sidecar.protocols import Engine, OriginSource, Registry, Source
from sidecar.proxy import InventoryMapper, ProxyServer, capture
from sidecar.registry.readonly import ReadOnlyRegistry
from sidecar.registry.sessions import SessionOrigins
from sidecar.registry.zookeeper import ZooKeeperRegistry
from sidecar.report.events import Events
from sidecar.report.tables import FleetMember, Managed
from sidecar.sources import static as static_source
from sidecar.sources.address import AddressWatch, AdvertiseHost, changes_over_time
from sidecar.sources.docker import DockerEngine, DockerUnavailable, DockerWatch
from sidecar.sources.host import interface_addresses
from sidecar.sources.nat import NatSnapshot, NatWatch
from sidecar.sources.probe import Prober
from sidecar.tls import ClientTls


class Unreachable(Exception):
    """A one-shot command could not reach what it needs (ZooKeeper, Docker, its app)."""


def assemble(
    settings: Settings, address: AdvertiseHost | None, events: Events, environ: Mapping[str, str]
) -> Loop:
    """The daemon. Raises StateFileBusy, OSError (the listen address), StaticMappingError and
    DockerConfigError."""
    static = static_source.at_start(settings.static_file, settings.static_ports)
    persistence = Persistence(settings.state_file, events)
    roots = Roots(settings)
    dirty = Dirty(roots.all, roots.source_of, FLEET_ROOT if settings.fleet else None)
    stopping = threading.Event()
    tls = _tls(settings)
    registry = ZooKeeperRegistry(
        settings.zookeeper, settings.session_timeout, on_change=dirty.path_changed,
        on_connection=dirty.connection_changed, resume=persistence.resume(), stopping=stopping,
        digest=_digest(settings), sasl=_sasl(settings), tls=tls,
        mark=capture.mark if settings.proxy_capture else None,
        jute_maxbuffer=settings.jute_maxbuffer,
    )  # fmt: skip
    engine = _engine(settings, environ)
    nat = NatWatch(dirty.nat_changed) if settings.nat_table else None
    metrics = Metrics()
    proxying = _proxying(settings, metrics, tls, persistence) if settings.proxy_listen else None
    prober = (
        Prober(settings.probe_seconds, dirty.endpoint_changed) if settings.probe_seconds else None
    )
    sources = _sources(settings, environ, address, engine, prober, dirty)
    if nat is not None:
        sources.append(nat)

    ops = _ops(settings, metrics, lambda: loop)
    origins = SessionOrigins(settings.zookeeper, settings.zookeeper_admin_port, tls=tls)

    def components_for(engine_id: str, stop: threading.Event) -> Components:
        components = build_components(
            settings, engine_id, registry, origins, engine, static, roots,
            persistence.earlier_session, events, metrics, prober, stop.is_set,
            nat=nat.latest if nat else None,
        )  # fmt: skip
        components.memory.restore(persistence.remembered(engine_id))
        return components

    role = choose_role(settings, registry, origins, events, metrics, roots, persistence, proxying)
    runtime = Runtime(
        registry, engine, dirty, events, sources, ops, settings.resync_seconds,
        settings.close_session_on_exit, persistence, stopping, components_for, role,
        Bounds.of(settings.resync_seconds, settings.session_timeout),
    )  # fmt: skip
    loop = Loop(runtime, address)
    metrics.oldest_pending.set_function(loop.liveness.oldest)
    return loop


def _ops(settings: Settings, metrics: Metrics, loop: Callable[[], Loop]) -> OpsServer | None:
    """The health, readiness and metrics server, when asked for; it asks the loop (made
    after it) at each request."""
    if not settings.listen:
        return None
    [(host, port)] = servers(settings.listen)
    try:
        return OpsServer(host.strip("[]"), port, metrics, lambda: loop().not_ready(),
                         lambda: loop().not_healthy())  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"{settings.name_of('listen')}: {exc}") from None


def _sources(
    settings: Settings,
    environ: Mapping[str, str],
    address: AdvertiseHost | None,
    engine: DockerEngine | None,
    prober: Prober | None,
    dirty: Dirty,
) -> list[Source]:
    """The threads that watch the world and mark work dirty."""
    sources: list[Source] = []
    if engine is not None:
        sources.append(DockerWatch(engine, dirty.container_changed, dirty.docker_subscribed,
                                   dirty.docker_lost))  # fmt: skip
    if settings.static_file is not None:
        sources.append(static_source.StaticWatch(settings.static_file, dirty.static_changed))
    if address is None or changes_over_time(settings):
        watch = AddressWatch(settings, environ, address, dirty.address_found,
                             dirty.address_unavailable)  # fmt: skip
        sources.append(watch)
    if prober is not None:
        sources.append(prober)
    return sources


def _proxying(
    settings: Settings, metrics: Metrics, tls: ClientTls | None, persistence: Persistence
) -> Proxying:
    """The app's ZooKeeper proxy, listening (and capturing) before anything else starts: the
    app may be starting too. Raises ConfigError (the address) and CaptureError."""
    [(host, port)] = servers(settings.proxy_listen)
    mapper = InventoryMapper()
    proxy = ProxyServer(
        (host.strip("[]"), port), mapper, structlog.get_logger("sidecar"),
        servers=servers(settings.zookeeper), services_roots=settings.services_root,
        capture_ports=settings.proxy_capture, jute_maxbuffer=settings.jute_maxbuffer,
        pass_unmapped=settings.proxy_pass_unmapped, counters=metrics.proxy, tls=tls,
    )  # fmt: skip
    try:
        proxy.start()
    except OSError as exc:
        raise ConfigError(
            f"{settings.name_of('proxy_listen')}: cannot listen on {settings.proxy_listen}: {exc}"
        ) from None
    return Proxying(persistence, mapper, proxy)


def plan_once(
    settings: Settings, address: AdvertiseHost, events: Events, environ: Mapping[str, str]
) -> tuple[list[Decision], set[str]]:
    """``plan``: the decisions one pass of the loop makes, written nowhere, and the paths it
    was not allowed to read. Raises Unreachable, StaticMappingError and DockerConfigError."""
    with _OnePass(settings, address, events, environ) as (reconciler, observing):
        return observing.decided, reconciler.unreadable


def status_once(
    settings: Settings, address: AdvertiseHost, events: Events, environ: Mapping[str, str]
) -> list[Managed]:
    """``status``: the registrations this engine's sidecars manage, from the live registry."""
    with _OnePass(settings, address, events, environ) as (reconciler, observing):
        return managed_now(reconciler, observing.decided)


def fleet_once(settings: Settings) -> tuple[list[FleetMember], dict[str, str]]:
    """``status --fleet``: the fleet's live members, from the registry alone."""
    registry = ReadOnlyRegistry(
        settings.zookeeper, settings.session_timeout, lambda _: None, lambda _: None,
        digest=_digest(settings), sasl=_sasl(settings), tls=_tls(settings),
    )  # fmt: skip
    try:
        registry.connect(settings.connect_timeout)
    except ConnectionError as exc:
        raise Unreachable(str(exc)) from None
    try:
        return fleet_now(registry)
    finally:
        registry.close()


class _OnePass:
    """One full pass of the loop as an observer: connected, read, planned, nothing written."""

    def __init__(
        self,
        settings: Settings,
        address: AdvertiseHost,
        events: Events,
        environ: Mapping[str, str],
    ) -> None:
        self._static = static_source.at_start(settings.static_file, settings.static_ports)
        self._registry = ReadOnlyRegistry(
            settings.zookeeper, settings.session_timeout, lambda _: None, lambda _: None,
            digest=_digest(settings), sasl=_sasl(settings), tls=_tls(settings),
        )  # fmt: skip
        self._engine = _engine(settings, environ)
        self._settings = settings
        self._address = address
        self._events = events

    def __enter__(self) -> tuple[Reconciler, Observing]:
        engine = self._engine
        try:
            engine_id = engine.engine_id() if engine else static_source.identity()
            self._registry.connect(self._settings.connect_timeout)
        except (DockerUnavailable, ConnectionError) as exc:
            self.__exit__()
            raise Unreachable(str(exc)) from None
        settings = self._settings
        origins = SessionOrigins(
            settings.zookeeper, settings.zookeeper_admin_port, tls=_tls(settings)
        )
        nat = None
        if settings.nat_table:
            snapshot = NatWatch(lambda: None).read_now()
            if snapshot.problem:
                self.__exit__()
                raise Unreachable(f"NAT table not readable: {snapshot.problem}")
            nat = lambda: snapshot  # noqa: E731 - read once, as the listing is
        # No earlier session (0): an observer holds no lease.
        components = build_components(
            settings, engine_id, self._registry, origins, engine, self._static, Roots(settings),
            0, self._events, Metrics(), None, lambda: False, nat=nat,
        )  # fmt: skip
        components.inventory.subscribed = True  # no event stream: the listing is all there is
        observing = Observing()
        reconciler = Reconciler(components, observing, self._address)
        try:
            reconciler.run_pass(Work(full=True, lease=True, all_containers=True))
        except DockerUnavailable as exc:
            self.__exit__()
            raise Unreachable(str(exc)) from None
        if components.lease.waiting:
            self.__exit__()
            raise Unreachable(f"per-app sidecar: {components.lease.waiting}")
        return reconciler, observing

    def __exit__(self, *_: object) -> None:
        self._registry.close()
        if self._engine is not None:
            self._engine.close()


def build_components(
    settings: Settings,
    engine_id: str,
    registry: Registry,
    origins: OriginSource,
    engine: Engine | None,
    static: static_source.StaticMapping,
    roots: Roots,
    earlier_session: int,
    events: Events,
    metrics: Metrics,
    prober: Prober | None,
    stopping: Callable[[], bool],
    host_addresses: Callable[[], set[str]] = interface_addresses,
    nat: Callable[[], NatSnapshot] | None = None,
) -> Components:
    """The components of a pass, from the settings and the protocols (real or in-memory twins);
    ``earlier_session``: the session the state file names (its lease is this sidecar's);
    ``nat``: the NAT table's latest snapshot, when that source is on."""
    ignore = tuple(natrules.parse_ignore(entry) for entry in settings.nat_ignore)
    inventory = Inventory(engine, static, settings.static_file, settings.static_ports, prober,
                          host_addresses, events, nat, ignore)  # fmt: skip
    lease = LeaseKeeper(settings.scope, settings.container, engine_id, registry, events, metrics,
                        earlier_session)  # fmt: skip
    observer = Observer(registry, origins, roots, settings.host_address,
                        member=settings.fleet)  # fmt: skip
    acl_check = AclCheck(registry, events, metrics.coordination_open.set, engine_id,
                         settings.fleet, _digest(settings), _sasl(settings))  # fmt: skip
    return Components(
        engine_id, Mode(settings.mode), registry, roots, PathIndex(roots.all), Memory(),
        inventory, lease, observer, Applier(registry, events, metrics), Retries(), events,
        metrics, prober, stopping, acl_check,
    )  # fmt: skip


def choose_role(
    settings: Settings,
    registry: Registry,
    origins: OriginSource,
    events: Events,
    metrics: Metrics,
    roots: Roots,
    persistence: Persistence,
    proxying: Proxying | None,
) -> Role:
    """The part the daemon plays in every pass: an app's proxy (``proxying``: already
    listening), a fleet member, or watching its own paths; ``persistence``: its state
    file."""
    if proxying is not None:
        return proxying  # the app writes its own registrations: not the fleet's work
    if not settings.fleet:
        return Watching(persistence)
    fleet = FleetKeeper(
        registry,
        lambda junk, unwritable: Indexer(
            registry, settings.root, settings.services_root, origins, junk, unwritable,
            settings.jute_maxbuffer,
        ),
        events, metrics.fleet, roots,
    )  # fmt: skip
    return InFleet(persistence, fleet)


def _engine(settings: Settings, environ: Mapping[str, str]) -> DockerEngine | None:
    return DockerEngine(settings.docker_url, environ) if settings.docker_url != "none" else None


def _digest(settings: Settings) -> str | None:
    return settings.zookeeper_auth.get_secret_value() if settings.zookeeper_auth else None


def _tls(settings: Settings) -> ClientTls | None:
    files = tls_files(settings)
    return ClientTls(files) if files else None


def _sasl(settings: Settings) -> str | None:
    return settings.zookeeper_sasl.get_secret_value() if settings.zookeeper_sasl else None
