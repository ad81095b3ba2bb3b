"""A fake Dubbo consumer: reads provider nodes from ZooKeeper and pings every advertised address.

Library use: :func:`call_providers`. Script use (e.g. under a firewalled group id, see
``testbed.firewall``)::

    python -m testbed.consumer --zookeeper 127.0.0.1:2181 [--root /dubbo]
        [--interface com.example.DemoService] [--timeout 2] [--address HOST:PORT ...]

prints one JSON object per provider (or per ``--address``, which skips ZooKeeper) and exits 0
iff at least one call got a reply.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]
from kazoo.recipe.watchers import ChildrenWatch  # type: ignore[import-untyped,unused-ignore]

from testbed.dubbo_url import format_host, providers_path
from testbed.firewall import as_group


@dataclass(frozen=True)
class CallResult:
    """The outcome of pinging one provider address."""

    address: str
    """``host:port`` as advertised (IPv6 hosts bracketed), or the raw node name if unparseable."""
    ok: bool
    reply: str | None = None
    """The reply line without its newline, when ``ok``."""
    error: str | None = None
    """Why the call failed, when not ``ok``."""
    url: str | None = None
    """The decoded provider URL, for calls made from ZooKeeper's provider list."""


def parse_provider_node(name: str) -> tuple[str, str, int]:
    """Decode a provider node name into ``(url, host, port)``; raises ``ValueError``."""
    url = unquote_plus(name)
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"no host:port in provider URL {url!r}")
    return url, parts.hostname, parts.port


def call_address(host: str, port: int, timeout: float = 2.0) -> CallResult:
    """Connect to ``host:port``, send ``ping``, and read one reply line, all within ``timeout``."""
    address = f"{format_host(host)}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"ping\n")
            with sock.makefile("rb") as stream:
                line = stream.readline()
    except OSError as exc:
        return CallResult(address, ok=False, error=f"{type(exc).__name__}: {exc}")
    if not line.endswith(b"\n"):
        return CallResult(address, ok=False, error=f"incomplete reply {line!r}")
    return CallResult(address, ok=True, reply=line.decode("utf-8", errors="replace").rstrip("\n"))


def provider_nodes(zookeeper: str, root: str, interface: str, timeout: float = 10.0) -> list[str]:
    """The raw (encoded) names under ``/<root>/<interface>/providers``; empty if it is missing."""
    client = KazooClient(hosts=zookeeper, timeout=max(timeout, 2.0))
    client.start(timeout=timeout)
    try:
        path = providers_path(root, interface)
        if client.exists(path) is None:
            return []
        children: list[str] = client.get_children(path)
        return sorted(children)
    finally:
        client.stop()
        client.close()


def call_providers(
    zookeeper: str, root: str, interface: str, timeout: float = 2.0
) -> list[CallResult]:
    """Ping every provider registered for ``interface``, one :class:`CallResult` each.

    Like a Dubbo consumer, only the node name is read (the node data is ignored).
    """
    results: list[CallResult] = []
    for name in provider_nodes(zookeeper, root, interface):
        try:
            url, host, port = parse_provider_node(name)
        except ValueError as exc:
            results.append(CallResult(name, ok=False, error=str(exc)))
            continue
        result = call_address(host, port, timeout)
        results.append(
            CallResult(result.address, result.ok, result.reply, result.error, url=url),
        )
    return results


def _split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class ProvidersWatch:
    """Every providers list a watching consumer is shown, in order, from a ZooKeeper watch.

    Dubbo consumers rebuild their invokers from each such list; an empty list (or one missing
    a provider) is what a registration gap looks like to them.
    """

    def __init__(self, client: KazooClient, path: str) -> None:
        self._seen: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()
        client.ensure_path(path)
        ChildrenWatch(client, path, self._record)

    def _record(self, children: list[str]) -> None:
        with self._lock:
            self._seen.append((time.monotonic(), sorted(children)))

    def lists(self) -> list[list[str]]:
        with self._lock:
            return [children for _, children in self._seen]

    def seconds_until(self, wanted: list[str]) -> float:
        """From the first notification after the watch was set (the change that triggered it)
        to the first time the consumer was shown exactly ``wanted``: how long a change took to
        settle, as consumers see it (0 if it had settled before the watch read the list)."""
        with self._lock:
            seen = list(self._seen)
        settled = next(at for at, children in seen[1:] if children == sorted(wanted))
        return settled - seen[1][0]


def run_as_group(
    gid: int, args: Sequence[str], timeout: float = 30.0
) -> tuple[int, list[dict[str, Any]]]:
    """Run this module as a script under group ``gid`` (see ``testbed.firewall``).

    Returns its exit code and the JSON lines it printed, one per provider called.
    """
    project_root = Path(__file__).resolve().parents[1]
    argv = as_group(gid, [sys.executable, "-m", "testbed.consumer", *args])
    done = subprocess.run(
        argv,
        cwd=project_root,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(project_root)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point: prints JSON lines, returns 0 iff some call succeeded."""
    parser = argparse.ArgumentParser(description="Ping the Dubbo providers registered in ZK.")
    parser.add_argument("--zookeeper", help="connect string, e.g. 127.0.0.1:2181")
    parser.add_argument("--root", default="/dubbo")
    parser.add_argument("--interface", default="com.example.DemoService")
    parser.add_argument("--timeout", type=float, default=2.0, help="per call, seconds")
    parser.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="ping this address directly instead of reading ZooKeeper (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.address:
        results = [call_address(*_split_address(a), timeout=args.timeout) for a in args.address]
    elif args.zookeeper:
        results = call_providers(args.zookeeper, args.root, args.interface, args.timeout)
    else:
        parser.error("either --zookeeper or --address is required")
    for result in results:
        print(json.dumps(asdict(result)), flush=True)
    return 0 if any(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
