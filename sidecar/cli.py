"""Command line: ``run`` (the daemon), ``plan`` (dry run), ``status``, ``health``,
``uncapture``, each taking only the settings it uses; exit 2 on invalid configuration (one
line naming the setting), 0 only when asked to stop."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

import structlog

from sidecar import __version__
from sidecar.config import (
    COMMANDS,
    ENV_PREFIX,
    ConfigError,
    Settings,
    default_text,
    fields_of,
    flag,
    load_settings,
)
from sidecar.hosts import servers
from sidecar.logs import configure
from sidecar.loop.wiring import Unreachable, assemble, fleet_once, plan_once, status_once
from sidecar.proxy import CaptureError, capture
from sidecar.report.documents import fleet_document, plan_document, status_document
from sidecar.report.events import Events
from sidecar.report.tables import render_fleet, render_status, render_table
from sidecar.sources import address as advertise
from sidecar.sources import static as static_source
from sidecar.sources.docker import DockerConfigError
from sidecar.state import StateFileBusy

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
PROG = "dubbo-sidecar"


_COMMANDS = {
    "run": "reconcile continuously",
    "plan": "print what run would do, change nothing",
    "status": "print the registrations this engine's sidecars manage (with --fleet: every live "
    "sidecar of the fleet)",
    "health": "exit 0 if the running sidecar's /healthz answers (the image's HEALTHCHECK)",
    "uncapture": "remove the proxy's capture rules from this network namespace (they stay when "
    "the sidecar stops, so that the app never reaches ZooKeeper around the proxy)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{PROG}: error: {message} (see {PROG} --help)\n")


def _parser() -> argparse.ArgumentParser:
    """Each subcommand takes only the settings it uses (``uncapture`` none)."""
    parser = _Parser(prog=PROG, description="Rewrites Dubbo provider registrations in ZooKeeper "
                     "from Docker port bindings.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command, summary in _COMMANDS.items():
        sub = commands.add_parser(
            command, help=summary, description=summary, argument_default=argparse.SUPPRESS
        )
        if command in COMMANDS:
            _add_settings(sub, command)
            sub.add_argument("--config", type=Path, metavar="FILE",
                             help=f"TOML file of settings (or ${ENV_PREFIX}CONFIG)")  # fmt: skip
        if command in ("plan", "status"):
            sub.add_argument("--output", choices=("table", "json"), default="table",
                             help="`json`: a JSON document on stdout. Default: table.")  # fmt: skip
    return parser


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    """A flag for each setting ``command`` uses, in groups by concern."""
    used = fields_of(command)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, spec in Settings.model_fields.items():
        extra = spec.json_schema_extra
        assert isinstance(extra, dict)
        if name not in used:
            continue
        group_name = str(extra["group"])
        group = groups.get(group_name) or groups.setdefault(
            group_name, parser.add_argument_group(group_name)
        )
        repeatable = isinstance(spec.default, tuple)
        help_text = (
            f"{spec.description} Default: {default_text(name)}."
            f" Env: {ENV_PREFIX}{name.upper()}{' (comma separated)' if repeatable else ''}."
            f"{' Repeatable.' if repeatable else ''}"
        ).replace("%", "%%")
        metavar = extra.get("metavar") or ("SECONDS" if extra.get("unit") == "seconds" else None)
        choices = get_args(spec.annotation) if get_origin(spec.annotation) is Literal else None
        if spec.annotation is bool:
            group.add_argument(flag(name), action="store_true", help=help_text)
        else:
            group.add_argument(
                flag(name),
                action="append" if repeatable else "store",
                choices=choices,
                metavar=None if metavar is None else str(metavar),
                help=help_text,
            )


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    if command == "uncapture":
        problems = capture.remove()
        for problem in problems:
            print(f"{PROG}: uncapture: {problem}", file=sys.stderr)
        return EXIT_FAILURE if len(problems) == 2 else EXIT_OK
    output = args.pop("output", "table")
    config_name = "--config" if "config" in args else f"{ENV_PREFIX}CONFIG"
    config_file = args.pop("config", None) or _env_path(f"{ENV_PREFIX}CONFIG")
    flags = {name: tuple(v) if isinstance(v, list) else v for name, v in args.items()}
    try:
        settings = load_settings(flags, config_file, command, config_name)
        if command == "health":
            return _health(settings)
        configure(settings.log_format, settings.log_level)
        host: advertise.AdvertiseHost | None = advertise.resolve(settings, os.environ)
    except ConfigError as exc:
        return _invalid(exc)
    except advertise.AddressUnavailable as exc:
        if command != "run":
            structlog.get_logger("sidecar").error(
                "command_failed", command=command, problem=f"no advertised address: {exc}"
            )
            return EXIT_FAILURE
        host = None  # run waits for a source to answer
        structlog.get_logger("sidecar").warning("advertise_address_unavailable", problem=str(exc))
    if command in ("plan", "status"):
        assert host is not None
        return _one_shot(command, settings, host, output)
    return _run(settings, host)


def _invalid(exc: Exception) -> int:
    """Invalid configuration: one line naming the setting, exit 2."""
    print(f"{PROG}: {exc}", file=sys.stderr)
    return EXIT_CONFIG


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
    events = Events()
    events.info(
        "starting", version=__version__, zookeeper=settings.zookeeper, roots=list(settings.root),
        docker=settings.docker_url or "from the environment", scope=settings.scope,
        advertise_host=host.address if host else None,
        advertise_source=host.source if host else None,
    )  # fmt: skip
    try:
        loop = assemble(settings, host, events, os.environ)
    except (StateFileBusy, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (ConfigError, static_source.StaticMappingError, DockerConfigError) as exc:
        return _invalid(exc)
    except CaptureError as exc:
        print(f"{PROG}: proxy_capture: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    received: list[str] = []

    def request_stop(signum: int, _frame: Any) -> None:
        # Runs on the main thread, which only waits for the loop's thread below and so holds
        # none of the loop's locks. No logging: a write could re-enter one in progress.
        received.append(signal.Signals(signum).name)
        loop.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    thread = threading.Thread(target=loop.run, name="reconcile")
    thread.start()
    while thread.is_alive():
        thread.join(timeout=1.0)
    # Unless asked otherwise the ZooKeeper session stays open: rewritten nodes live until it
    # times out, so a sidecar restarted within the session timeout resumes it with no gap.
    events.info("stopped", signal=received[0] if received else None)
    # Exit 0 only when asked to stop: a loop that ended by itself is a failure to restart.
    return EXIT_OK if received else EXIT_FAILURE


def _one_shot(command: str, settings: Settings, host: advertise.AdvertiseHost, output: str) -> int:
    """``plan`` or ``status``: one pass of the loop, written nowhere, printed (a table, or a
    JSON document)."""
    events = Events(decisions=False)  # the table says what it decided
    try:
        if command == "plan":
            decisions, unreadable = plan_once(settings, host, events, os.environ)
            shown = (
                _json(plan_document(decisions, unreadable))
                if output == "json"
                else "\n".join([render_table(decisions)] + [
                    f"not authorised to read, left alone: {path}" for path in sorted(unreadable)
                ])
            )  # fmt: skip
        elif settings.fleet:
            members, ignored = fleet_once(settings)
            shown = (
                _json(fleet_document(members, ignored))
                if output == "json"
                else render_fleet(members, ignored)
            )
        else:
            managed = status_once(settings, host, events, os.environ)
            shown = _json(status_document(managed)) if output == "json" else render_status(managed)
    except Unreachable as exc:
        events.error("command_failed", command=command, problem=str(exc))
        return EXIT_FAILURE
    except (static_source.StaticMappingError, DockerConfigError) as exc:
        return _invalid(exc)
    print(shown)
    return EXIT_OK


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
