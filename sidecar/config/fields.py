"""Every setting, grouped by concern. Each field knows its flag group, its metavar, the
subcommands that use it and how to say its default: the command line (and the configuration
reference) are built from these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue, SecretStr
from pydantic_settings import NoDecode

# The subcommands that read settings (``uncapture`` reads none). One pass of the loop (what
# ``plan`` and ``status`` run once) needs the registry, the containers and the address; the
# daemon alone keeps a session, a state file, a listener, a proxy and periods.
COMMANDS = ("run", "plan", "status", "health")
ONE_PASS = ("run", "plan", "status")
RUN = ("run",)


def setting(
    default: Any,
    group: str,
    description: str,
    *,
    commands: tuple[str, ...] = ONE_PASS,
    metavar: str | None = None,
    unit: str | None = None,
    default_text: str | None = None,
    **limits: Any,
) -> Any:
    """A field that also knows its flag's group and metavar, the subcommands that read it, its
    unit and, when the default is no plain value, what it means (the CLI is built from these)."""
    extra: dict[str, JsonValue] = {"group": group, "commands": list(commands)}
    for key, value in (("metavar", metavar), ("unit", unit), ("default_text", default_text)):
        if value:
            extra[key] = value
    return Field(default, description=description, json_schema_extra=extra, **limits)


class RegistryFields(BaseModel):
    """Where the registry is and how to reach it."""

    # ZooKeeper
    zookeeper: str = setting(
        "127.0.0.1:2181",
        "ZooKeeper",
        "Connect string `host:port[,host:port…][/chroot]`.",
        metavar="HOST:PORT[,…][/CHROOT]",
    )
    root: Annotated[tuple[str, ...], NoDecode] = setting(
        ("/dubbo",),
        "ZooKeeper",
        "Registry root to reconcile, one per registry `group`.",
        metavar="PATH",
    )
    services_root: Annotated[tuple[str, ...], NoDecode] = setting(
        ("/services",),
        "ZooKeeper",
        "Root of Dubbo 3 application-level instances (`/<root>/<application>/<host>:<port>`).",
        metavar="PATH",
    )
    session_timeout: float = setting(
        30.0,
        "ZooKeeper",
        "Session timeout, seconds. Rewritten nodes live in this session.",
        unit="seconds",
        ge=2,
        le=600,
    )
    connect_timeout: float = setting(
        10.0,
        "ZooKeeper",
        "How long `plan` and `status` wait for ZooKeeper, seconds (`run` keeps trying).",
        commands=("plan", "status"),
        unit="seconds",
        gt=0,
        le=600,
    )
    zookeeper_auth: SecretStr | None = setting(
        None,
        "ZooKeeper",
        "Digest credentials `user:password` (as in Dubbo's registry URL); rewritten nodes get "
        "the same CREATOR_ALL ACL Dubbo gives its own. Never printed. Not with "
        "`--zookeeper-auth-file`.",
        metavar="USER:PASSWORD",
        default_text="no credentials",
    )
    zookeeper_auth_file: Path | None = setting(
        None,
        "ZooKeeper",
        "File holding the digest credentials `user:password` (a mounted Docker or Kubernetes "
        "secret), read once at start, a trailing newline dropped; a regular file only. Never "
        "printed. Not with `--zookeeper-auth`.",
        metavar="FILE",
        default_text="no file",
    )
    jute_maxbuffer: int = setting(
        0xFFFFF,
        "ZooKeeper",
        "The servers' `jute.maxbuffer`, bytes: no node or transaction the sidecar writes is "
        "larger (what would be is left alone, with the reason); in proxy mode a request frame "
        "larger than this (plus 1 KiB) closes its connection, as the server would.",
        unit="bytes",
        ge=1024,
        le=2**31 - 1,
        metavar="BYTES",
    )
    zookeeper_admin_port: int = setting(
        8080,
        "ZooKeeper",
        "AdminServer port, asked where sessions connect from when the "
        "servers do not allow `cons`; 0: never.",
        ge=0,
        le=65535,
        metavar="PORT",
    )


class ContainerFields(BaseModel):
    """Which containers, and how their ports are known."""

    # Docker
    docker_url: str | None = setting(
        None,
        "Docker",
        "Docker Engine API (`unix://…`, `tcp://…`), or `none` to map with the static mapping "
        "and the NAT table only. Unset: `DOCKER_HOST`, with `DOCKER_TLS_VERIFY` and "
        "`DOCKER_CERT_PATH` as the docker CLI reads them, else `unix:///var/run/docker.sock`.",
        metavar="URL",
        default_text="`DOCKER_HOST` from the environment, else `unix:///var/run/docker.sock`",
    )
    # Scope
    scope: Literal["auto", "host", "app"] = setting(
        "auto",
        "Scope",
        "`app`: only the container whose network namespace the sidecar shares (or "
        "`--container`); `host`: every container of the engine except those a per-app sidecar "
        "claims or that opt out; `auto`: `app` when the sidecar shares a container's network "
        "namespace, else `host`.",
    )
    container: str | None = setting(
        None,
        "Scope",
        "Per-app: the container to serve, by name or ID, instead of detecting it.",
        metavar="NAME|ID",
        default_text="the container whose network namespace the sidecar shares",
    )
    # Static mapping
    static_ports: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "Static mapping",
        "`CONTAINER_PORT:HOST_PORT` for registrations of this network namespace's addresses, "
        "without Docker (e.g. a Kubernetes `hostPort`).",
        metavar="PORT:PORT",
        default_text="no ports",
    )
    static_file: Path | None = setting(
        None,
        "Static mapping",
        "TOML file with a `[ports]` table (`20880 = 30880`) and an optional `addresses` "
        "list; re-read when it changes; empty or `none`: no file.",
        metavar="FILE",
        default_text="no file",
    )
    # NAT table
    nat_table: bool = setting(
        False,
        "NAT table",
        "Also learn port bindings from this host's NAT table: the DNAT rules of Docker "
        "(`DOCKER`), Podman's netavark (`NETAVARK-DN-…`) and the CNI `portmap` plugin of "
        "Kubernetes `hostPort` (`CNI-DN-…`), read with `iptables-save` through both back ends "
        "(needs the host's network namespace and `NET_ADMIN`, no Docker socket). When sources "
        "map the same container address: Docker first, then the static mapping, then the NAT "
        "table.",
    )
    nat_ignore: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "NAT table",
        "Container endpoints the NAT table source leaves alone (a registration there is not "
        "rewritten): `ADDRESS`, `NETWORK/BITS`, either with `:PORT`, or `:PORT` alone "
        "(`[…]` around an IPv6 address with a port).",
        metavar="ADDRESS[:PORT]",
        default_text="every mapping is followed",
    )


class AdvertisingFields(BaseModel):
    """The address consumers are given."""

    # Advertising
    advertise_host: str | None = setting(
        None,
        "Advertising",
        "Host address consumers use for ports published on all addresses; short for "
        "`--advertise-from value:ADDRESS`. Unset, and no `--advertise-from`: `HOST_IP` from "
        "the environment, else the address of the route to the first ZooKeeper server (refused "
        "when that is a loopback address: other hosts cannot reach it).",
        metavar="ADDRESS",
        default_text="`HOST_IP`, else the address of the route to the first ZooKeeper server",
    )
    advertise_from: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "Advertising",
        "Where to find the advertised address, in order of preference (the first that "
        "answers wins): `value:ADDRESS`, `env:VARIABLE`, `interface:NAME`, or `url:URL` (the "
        "body of an HTTP GET, e.g. a cloud metadata endpoint). Read again every "
        "`--advertise-refresh-seconds`; a change re-points every managed registration.",
        metavar="SOURCE",
        default_text="no sources: as `--advertise-host` says when unset",
    )
    advertise_refresh_seconds: float = setting(
        60.0,
        "Advertising",
        "How often the `--advertise-from` sources are read again, seconds.",
        commands=RUN,
        unit="seconds",
        ge=1,
        le=86400,
    )
    advertise_timeout: float = setting(
        2.0,
        "Advertising",
        "Timeout of one `url:` source request, seconds.",
        unit="seconds",
        gt=0,
        le=60,
    )
    host_address: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "Advertising",
        "An address ZooKeeper sees this host's connections come from, "
        "besides its own interfaces and the advertised host (e.g. a NAT gateway).",
        metavar="ADDRESS",
        default_text="only the interfaces and the advertised host",
    )


class ReconcileFields(BaseModel):
    """How registrations are kept right, and across restarts."""

    # Reconciliation
    mode: Literal["replace", "mirror"] = setting(
        "replace",
        "Reconciliation",
        "`replace` the original registration, or `mirror` it under the mirror root and leave it.",
    )
    mirror_root: str = setting(
        "/dubbo-external",
        "Reconciliation",
        "Where mirror mode writes (a registry `group` for external consumers).",
        metavar="PATH",
    )
    mirror_services_root: str = setting(
        "/services-external",
        "Reconciliation",
        "Where mirror mode writes application-level instances.",
        metavar="PATH",
    )
    resync_seconds: float = setting(
        60.0,
        "Reconciliation",
        "Period of the resync (local paths and a slice of the rest), seconds.",
        commands=RUN,
        unit="seconds",
        ge=1,
        le=86400,
    )
    probe_seconds: float = setting(
        10.0,
        "Reconciliation",
        "Replace mode: period of the TCP probe of each rewritten provider, seconds; 0 disables.",
        commands=RUN,
        unit="seconds",
        ge=0,
        le=3600,
    )
    # Restarts
    state_file: Path | None = setting(
        Path("/var/lib/dubbo-nat-sidecar/state.json"),
        "Restarts",
        "Keeps the ZooKeeper session across restarts (put it on a volume; the rewrites are "
        "recorded in ZooKeeper); empty or `none`: no state file.",
        commands=RUN,
        metavar="FILE",
    )
    close_session_on_exit: bool = setting(
        False,
        "Restarts",
        "On SIGTERM delete the records of the rewrites and close the ZooKeeper session, "
        "which removes every rewrite at once, instead of leaving them to the next instance.",
        commands=RUN,
    )


class OperationsFields(BaseModel):
    """Running it: operations, fleet, proxy, logs."""

    # Operations
    listen: str = setting(
        "127.0.0.1:9477",
        "Operations",
        "Address of /healthz, /readyz and /metrics (`0.0.0.0:9477` for probes from outside "
        "the network namespace); empty: off. `health` asks its /healthz.",
        commands=("run", "health"),
        metavar="HOST:PORT",
    )
    # Fleet
    fleet: bool = setting(
        False,
        "Fleet",
        "Share the watching of the registry with every other sidecar on the ensemble that has "
        "this on: one elected sidecar watches it all and tells each the paths that concern its "
        "own host, so the ensemble's load no longer grows with the number of hosts.",
    )
    # Proxy
    proxy_listen: str = setting(
        "",
        "Proxy",
        "Address of the ZooKeeper proxy for the app's own client (a per-app sidecar in the "
        "app's network namespace, e.g. `127.0.0.1:2181`): the app's registrations are written "
        "with the published address from the start. Empty: off.",
        commands=RUN,
        metavar="HOST:PORT",
        default_text="off",
    )
    proxy_capture: Annotated[tuple[int, ...], NoDecode] = setting(
        (),
        "Proxy",
        "ZooKeeper port whose connections from the network namespace are redirected to the "
        "proxy (iptables `nat OUTPUT` REDIRECT; needs `NET_ADMIN`), so that the app keeps its "
        "ZooKeeper address.",
        commands=RUN,
        metavar="PORT",
        default_text="no port",
    )
    proxy_pass_unmapped: bool = setting(
        False,
        "Proxy",
        "Let the app's writes naming its container endpoints go as they are when they cannot "
        "be published (its port bindings not known within a third of the session timeout, "
        "or the port not published): they are then stored with the container's address, "
        "which other hosts cannot reach. Off: such a write is refused (its reply says the "
        "operation timed out), and the app's client retries it.",
        commands=RUN,
    )
    # Logging
    log_format: Literal["auto", "json", "console"] = setting(
        "auto", "Logging", "`auto`: JSON unless stderr is a terminal."
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "Logging", "`debug` also shows each pass and other hosts' registrations."
    )
