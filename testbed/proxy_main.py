"""The ZooKeeper proxy as a process of its own, for tests: ``python -m testbed.proxy_main``.

Maps through a static mapping (``--static-ports`` for ``--address``) or one Docker container
(``--docker-container``), as a per-app sidecar would, and logs JSON lines to stderr until
SIGTERM or SIGINT. Exits 2 with one line on stderr when it cannot listen or capture.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

import structlog

from sidecar import logs
from sidecar.hosts import servers
from sidecar.model import Container
from sidecar.proxy import CaptureError, InventoryMapper, ProxyServer
from sidecar.sources.docker import DockerEngine
from sidecar.sources.static import StaticMapping, parse_ports


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--zookeeper", default="", help="servers for clients dialling the proxy")
    parser.add_argument("--capture", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--services-root", action="append", default=[], metavar="PATH")
    parser.add_argument("--advertise-host", default="127.0.0.1")
    parser.add_argument("--static-ports", action="append", default=[], metavar="PORT:PORT")
    parser.add_argument("--address", action="append", default=[], help="the app's address")
    parser.add_argument("--docker-container", metavar="ID", help="map through this container")
    parser.add_argument("--log-level", choices=("debug", "info", "warning"), default="debug")
    return parser.parse_args(argv)


def containers(args: argparse.Namespace) -> list[Container]:
    found = []
    if args.static_ports:
        mapping = StaticMapping(parse_ports(args.static_ports), tuple(args.address))
        static = mapping.container(())
        if static is not None:
            found.append(static)
    if args.docker_container:
        engine = DockerEngine(None, os.environ)
        container = engine.container(args.docker_container)
        if container is None:
            raise SystemExit(f"container {args.docker_container} not found")
        found.append(container)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("json", args.log_level)
    mapper = InventoryMapper()
    mapper.update(containers(args), args.advertise_host)
    [listen] = servers(args.listen)
    proxy = ProxyServer(
        listen,
        mapper,
        structlog.get_logger(),
        servers=servers(args.zookeeper) if args.zookeeper else (),
        services_roots=args.services_root or ["/services"],
        capture_ports=args.capture,
    )
    try:
        proxy.start()
    except (OSError, CaptureError) as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
