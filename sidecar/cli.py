"""Command line: ``run`` (the daemon) and ``plan`` (dry run); exit 2 on invalid configuration."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

import structlog

from sidecar import __version__
from sidecar.config import ENV_PREFIX, ConfigError, Settings, load_settings
from sidecar.controller import Controller
from sidecar.logs import configure
from sidecar.mapping import ContainerIndex
from sidecar.reconciler import Reconciler
from sidecar.registry.zookeeper import ZooKeeperRegistry
from sidecar.report import DecisionLog, render_status, render_table
from sidecar.scope import choose
from sidecar.sources import address as advertise
from sidecar.sources import static as static_source
from sidecar.sources.docker import DockerConfigError, DockerEngine, DockerUnavailable
from sidecar.state import StateFileBusy
from sidecar.syntax import servers

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
PROG = "dubbo-sidecar"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{PROG}: error: {message} (see {PROG} --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, spec in Settings.model_fields.items():
        extra = spec.json_schema_extra
        assert isinstance(extra, dict)
        group_name = str(extra["group"])
        group = groups.get(group_name) or groups.setdefault(
            group_name, common.add_argument_group(group_name)
        )
        flag = "--" + name.replace("_", "-")
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        repeatable = isinstance(default, tuple)
        help_text = (
            f"{spec.description} Default: {shown if shown not in ('', None) else 'none'}."
            f" Env: {ENV_PREFIX}{name.upper()}{' (comma separated)' if repeatable else ''}."
            f"{' Repeatable.' if repeatable else ''}"
        ).replace("%", "%%")
        metavar = extra.get("metavar") or (
            "SECONDS" if name.endswith(("_seconds", "_timeout")) else None
        )
        choices = get_args(spec.annotation) if get_origin(spec.annotation) is Literal else None
        if spec.annotation is bool:
            group.add_argument(flag, action="store_true", help=help_text)
        else:
            group.add_argument(
                flag,
                action="append" if repeatable else "store",
                choices=choices,
                metavar=None if metavar is None else str(metavar),
                help=help_text,
            )
    common.add_argument("--config", type=Path, metavar="FILE",
                        help=f"TOML file of settings (or ${ENV_PREFIX}CONFIG)")  # fmt: skip

    parser = _Parser(prog=PROG, description="Rewrites Dubbo provider registrations in ZooKeeper "
                     "from Docker port bindings.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("run", parents=[common], help="reconcile continuously")
    commands.add_parser("plan", parents=[common], help="print what run would do, change nothing")
    commands.add_parser(
        "status", parents=[common], help="print the registrations this engine's sidecars manage"
    )
    commands.add_parser(
        "health", parents=[common], help="exit 0 if the running sidecar's /healthz answers"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    config_file = args.pop("config", None) or _env_path(f"{ENV_PREFIX}CONFIG")
    for name, value in args.items():
        if isinstance(value, list):
            args[name] = tuple(value)
    try:
        settings = load_settings(args, config_file)
        configure(settings.log_format, settings.log_level)
        if command == "health":
            return _health(settings)
        host: advertise.AdvertiseHost | None = advertise.resolve(settings, os.environ)
    except ConfigError as exc:
        print(f"{PROG}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except advertise.AddressUnavailable as exc:
        if command != "run":
            structlog.get_logger("sidecar").error(f"{command} failed", problem=f"no advertised "
                                                  f"address: {exc}")  # fmt: skip
            return EXIT_FAILURE
        host = None  # run waits for a source to answer
        structlog.get_logger("sidecar").warning("advertise address unavailable", problem=str(exc))
    if command in ("plan", "status"):
        assert host is not None
        try:
            return (_plan if command == "plan" else _status)(settings, host)
        except _Failed as exc:
            structlog.get_logger("sidecar").error(f"{command} failed", problem=str(exc))
            return EXIT_FAILURE
        except (static_source.StaticMappingError, DockerConfigError) as exc:
            print(f"{PROG}: invalid configuration: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return _run(settings, host)


def _health(settings: Settings) -> int:
    """Exit 0 if the running sidecar's /healthz answers (the image's HEALTHCHECK)."""
    if not settings.listen:
        print(f"{PROG}: the operations listener is off (--listen)", file=sys.stderr)
        return EXIT_FAILURE
    [(host, port)] = servers(settings.listen)
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2):
            return EXIT_OK
    except OSError as exc:
        print(f"{PROG}: not healthy: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _run(settings: Settings, host: advertise.AdvertiseHost | None) -> int:
    log = DecisionLog()
    log.info(
        "starting", version=__version__, zookeeper=settings.zookeeper, roots=list(settings.root),
        docker=settings.docker_url or "from the environment", scope=settings.scope,
        advertise_host=host.address if host else None,
        advertise_source=host.source if host else None,
    )  # fmt: skip
    try:
        controller = Controller(settings, host, log, os.environ)
    except (StateFileBusy, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (ConfigError, static_source.StaticMappingError, DockerConfigError) as exc:
        print(f"{PROG}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    received: list[str] = []

    def request_stop(signum: int, _frame: Any) -> None:
        # Runs on the main thread, which only waits for the loop's thread below and so holds
        # none of the loop's locks. No logging: a write could re-enter one in progress.
        received.append(signal.Signals(signum).name)
        controller.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    loop = threading.Thread(target=controller.run, name="reconcile")
    loop.start()
    while loop.is_alive():
        loop.join(timeout=1.0)
    # Unless asked otherwise the ZooKeeper session stays open: rewritten nodes live until it
    # times out, so a sidecar restarted within the session timeout resumes it with no gap.
    log.info("stopped", signal=received[0] if received else None)
    return EXIT_OK


def _plan(settings: Settings, advertise_host: advertise.AdvertiseHost) -> int:
    with _one_shot(settings, advertise_host) as (reconciler, registry):
        roots = (*settings.root, *settings.services_root)
        paths = [p for root in roots for p in reconciler.scope_paths(root)]
        log = DecisionLog()
        decisions = reconciler.plan(paths, session=None, progress=log.progress)
        denied = registry.take_denied()
    print(render_table(decisions))
    for path in sorted(denied):
        print(f"not authorised to read, left alone: {path}")
    return EXIT_OK


def _status(settings: Settings, advertise_host: advertise.AdvertiseHost) -> int:
    with _one_shot(settings, advertise_host) as (reconciler, _):
        rows = reconciler.managed_now()
    print(render_status(rows))
    return EXIT_OK


@contextlib.contextmanager
def _one_shot(
    settings: Settings, address: advertise.AdvertiseHost
) -> Iterator[tuple[Reconciler, ZooKeeperRegistry]]:
    """A connected reconciler over a snapshot of the sources, for ``plan`` and ``status``."""
    static = static_source.configured(settings.static_file, settings.static_ports)
    digest = settings.zookeeper_auth.get_secret_value() if settings.zookeeper_auth else None
    registry = ZooKeeperRegistry(
        settings.zookeeper, settings.session_timeout, lambda _: None, lambda _: None,
        digest=digest,
    )  # fmt: skip
    engine = (
        DockerEngine(settings.docker_url, os.environ) if settings.docker_url != "none" else None
    )
    try:
        engine_id = engine.engine_id() if engine else static_source.identity()
        containers = engine.running_containers() if engine else []
        subnets, gateways = engine.networks() if engine else ([], [])
        registry.connect(settings.connect_timeout)
    except (DockerUnavailable, ConnectionError) as exc:
        if engine is not None:
            engine.close()
        raise _Failed(str(exc)) from None
    try:
        reconciler = Reconciler(settings, registry, address.address, engine_id, address.source)
        mapped = static.container(reconciler.interface_addresses())
        reconciler.containers = ContainerIndex(
            [*containers, *([mapped] if mapped else [])],
            subnets=subnets,
            host_addresses=reconciler.interface_addresses(),
            gateways=gateways,
        )
        if engine is not None:
            chosen = choose(settings.scope, settings.container, containers,
                            reconciler.interface_addresses())  # fmt: skip
            if isinstance(chosen, str):
                raise _Failed(f"per-app sidecar: {chosen}")
            reconciler.scope = chosen
        reconciler.read_peers()
        reconciler.use_mirrors_if_asked()
        yield reconciler, registry
    finally:
        registry.close()
        if engine is not None:
            engine.close()


class _Failed(Exception):
    """A one-shot command could not reach what it needs."""


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
