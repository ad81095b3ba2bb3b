"""A fake Dubbo provider: answers pings over TCP and registers itself in ZooKeeper like Dubbo 2.7.

Runs inside a test container (``run_python(client, provider.__file__, [...])``) or on the host
(``python -m testbed.provider ...``). Standard output carries the lines tests wait for:

    session <session id hex> <password hex>
    registered <node path>
    unregistered <node path>

``session`` and ``registered`` are printed again after every re-registration. Without
``--zookeeper`` it takes its registry from ``DUBBO_REGISTRY_ADDRESS`` (``zookeeper://host:port``)
as Dubbo does. Only the standard library, kazoo and ``testbed.dubbo_url`` are imported, so the
script runs with the test venv's interpreter in an otherwise empty container.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from kazoo.client import KazooClient, KazooState  # type: ignore[import-untyped,unused-ignore]
from kazoo.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    KazooException,
    NodeExistsError,
    NoNodeError,
)
from kazoo.handlers.threading import KazooTimeoutError  # type: ignore[import-untyped,unused-ignore]
from kazoo.security import make_digest_acl  # type: ignore[import-untyped,unused-ignore]

from testbed.dubbo_url import (
    configurators_path,
    format_host,
    instance_document,
    provider_node_name,
    provider_url,
    providers_path,
)

log = logging.getLogger("testbed.provider")


def first_server(connect_string: str) -> tuple[str, int]:
    """The first ``host:port`` of a ZooKeeper connect string (chroot and IPv6 brackets allowed)."""
    first = connect_string.split("/", 1)[0].split(",", 1)[0].strip()
    host, _, port = first.rpartition(":")
    if not host:
        return first.strip("[]"), 2181
    return host.strip("[]"), int(port)


def local_address_towards(connect_string: str) -> str:
    """This process's own source address for traffic to ZooKeeper (what Dubbo would register).

    "Connecting" a UDP socket sends nothing; it only makes the kernel pick the route and
    source address, which inside a container is the container's own IP.
    """
    host, port = first_server(connect_string)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        address: str = probe.getsockname()[0]
    return address


def registered_host(connect_string: str) -> str:
    """The address Dubbo would register: its own towards the registry, or, when the registry
    is reached over loopback (a sidecar's proxy in its network namespace), its host name's
    (Dubbo's ``InetAddress.getLocalHost()``: the container's address in Docker)."""
    address = local_address_towards(connect_string)
    if ipaddress.ip_address(address).is_loopback:
        return socket.gethostbyname(socket.gethostname())
    return address


def registry_from(environ: Mapping[str, str]) -> str | None:
    """The connect string of ``DUBBO_REGISTRY_ADDRESS`` (``zookeeper://host:port[,…]``), if set;
    ValueError for another scheme."""
    if not (value := environ.get("DUBBO_REGISTRY_ADDRESS", "")):
        return None
    scheme, separator, rest = value.partition("://")
    if not separator or scheme != "zookeeper":
        raise ValueError(f"DUBBO_REGISTRY_ADDRESS: not zookeeper://host:port: {value[:200]!r}")
    return rest.partition("?")[0]


class PingServer(socketserver.ThreadingTCPServer):
    """Answers every received line with one fixed reply line, on many connections at once."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], reply: bytes) -> None:
        """Bind ``address`` at once (``::`` listens on IPv6 and IPv4); ``reply`` is sent for
        each line received."""
        self.reply = reply
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _PingHandler)


class _PingHandler(socketserver.StreamRequestHandler):
    server: PingServer

    def handle(self) -> None:
        for _line in self.rfile:
            self.wfile.write(self.server.reply)
            self.wfile.flush()


class Listener:
    """The provider's TCP port; ``toggles`` receives True (listen), False (stop), None (end)."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.reply = b""
        self.toggles: queue.Queue[bool | None] = queue.Queue()
        self._server: PingServer | None = PingServer((address, port), b"")
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._follow_toggles, name="listener", daemon=True).start()

    def open(self) -> None:
        self.toggles.put(True)

    def _follow_toggles(self) -> None:
        serving = False
        while (listen := self.toggles.get()) is not None:
            if listen and not serving:
                if self._server is None:
                    self._server = PingServer((self.address, self.port), self.reply)
                self._server.reply = self.reply
                threading.Thread(target=self._server.serve_forever, daemon=True).start()
                serving = True
                print("listening", flush=True)
            elif not listen and serving and self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
                serving = False
                print("not listening", flush=True)
        if self._server is not None:
            if serving:
                self._server.shutdown()
            self._server.server_close()


class Registration:
    """One provider node kept registered the way Dubbo's ``ZookeeperRegistry`` does.

    After a session expiry (kazoo: ``LOST``, then ``CONNECTED`` with a new session) the node
    is created again; with ``reregister_on_reconnect`` also after a mere reconnect, like
    Dubbo 2.6.x and 2.7.0-2.7.4.
    """

    def __init__(
        self,
        client: KazooClient,
        path: str,
        data: bytes,
        *,
        ensure: Sequence[str] = (),
        acl: Sequence[Any] | None = None,
        reregister_on_reconnect: bool = False,
        retry_period: float = 1.0,
        persistent: bool = False,
    ) -> None:
        """Describe the node and the persistent paths to create first; nothing is written
        before :meth:`register`. ``acl`` applies to every node created (Dubbo with
        credentials uses CREATOR_ALL); ``persistent``: the node outlives the session
        (Dubbo's ``dynamic=false``)."""
        self.client = client
        self.ensure = tuple(ensure) or (path.rpartition("/")[0],)
        self.path = path
        self.data = data
        self.acl = list(acl) if acl else None
        self.reregister_on_reconnect = reregister_on_reconnect
        self.retry_period = retry_period
        self.persistent = persistent
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._lost = False
        self._suspended = False

    def register(self) -> None:
        """Create the parents and the ephemeral node, then announce the session and the path."""
        with self._lock:
            if self._closing.is_set():
                return
            for parent in self.ensure:
                self.client.ensure_path(parent, acl=self.acl)
            try:
                self.client.create(
                    self.path, self.data, acl=self.acl, ephemeral=not self.persistent
                )
            except NodeExistsError:
                if self.persistent:
                    # Dubbo keeps a persistent node that exists already (its own from before).
                    self._announce()
                    return
                # Dubbo (CuratorZookeeperClient.createEphemeral) deletes a node left by the
                # previous session that the server has not removed yet, then creates it anew.
                self.client.delete(self.path)
                self.client.create(self.path, self.data, acl=self.acl, ephemeral=True)
            self._announce()

    def _announce(self) -> None:
        session_id, password = self.client.client_id
        print(f"session {session_id:x} {password.hex()}", flush=True)
        print(f"registered {self.path}", flush=True)

    def unregister(self, timeout: float = 2.0) -> None:
        """Delete the node (a node already gone is fine) and stop re-registering."""
        self._closing.set()
        with self._lock:
            try:
                # Bounded: with ZooKeeper unreachable a plain delete() would wait forever.
                self.client.delete_async(self.path).get(timeout=timeout)
            except NoNodeError:
                pass
            except (KazooException, KazooTimeoutError) as exc:
                log.warning("could not delete %s on shutdown: %r", self.path, exc)
                return
            print(f"unregistered {self.path}", flush=True)

    def on_state(self, state: str) -> None:
        """Kazoo state listener; runs on kazoo's connection thread, so it must not block."""
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.SUSPENDED:
            self._suspended = True
        elif state == KazooState.CONNECTED:
            renew = self._lost or (self._suspended and self.reregister_on_reconnect)
            self._lost = self._suspended = False
            if renew:
                threading.Thread(target=self._register_until_done, daemon=True).start()

    def _register_until_done(self) -> None:
        while not self._closing.is_set():
            try:
                self.register()
                return
            except KazooException as exc:
                log.warning("re-registration of %s failed, retrying: %r", self.path, exc)
            self._closing.wait(self.retry_period)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--zookeeper", help="connect string (default: DUBBO_REGISTRY_ADDRESS)")
    parser.add_argument("--root", default="/dubbo", help="registry root (Dubbo's group)")
    parser.add_argument("--interface", default="com.example.DemoService")
    parser.add_argument("--application", default="demo-provider")
    parser.add_argument("--port", type=int, default=20880, help="0 picks a free port")
    parser.add_argument("--protocol", default="dubbo")
    parser.add_argument("--host", help="address to register (default: see registered_host)")
    parser.add_argument("--listen", default="0.0.0.0", help="address the ping server binds")
    parser.add_argument("--methods", default="sayHello", help="comma-separated method names")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra URL parameter (repeatable), e.g. version=1.0.0",
    )
    parser.add_argument(
        "--node-data",
        choices=("ip", "hostport", "empty"),
        default="ip",
        help="node data: the IP (Curator's default), host:port, or nothing",
    )
    parser.add_argument("--session-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--extra-protocol", action="append", default=[], metavar="PROTOCOL:PORT",
        help="also export this protocol on its own port (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--instance-root", help="also register a Dubbo 3 application-level instance here"
    )
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="digest credentials (CREATOR_ALL)")
    parser.add_argument("--tls", metavar="CA,CERT,KEY",
                        help="TLS to ZooKeeper with this CA and client certificate")  # fmt: skip
    parser.add_argument("--persistent", action="store_true",
                        help="persistent nodes (dynamic=false; instance: PERMANENT)")  # fmt: skip
    parser.add_argument(
        "--reregister-on-reconnect",
        action="store_true",
        help="also re-register after a reconnect with the same session (Dubbo <= 2.7.4)",
    )
    args = parser.parse_args(argv)
    try:
        args.zookeeper = args.zookeeper or registry_from(os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.zookeeper:
        parser.error("--zookeeper or DUBBO_REGISTRY_ADDRESS is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Serve pings, register, and wait for SIGTERM/SIGINT; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = parse_args(argv)
    host: str = args.host or registered_host(args.zookeeper)

    listener = Listener(args.listen, args.port)
    port = listener.port
    listener.reply = f"pong {args.application} {format_host(host)}:{port}\n".encode()
    listener.open()
    protocols = [(args.protocol, port, listener)]
    for extra_protocol in args.extra_protocol:
        name, _, extra_port = extra_protocol.partition(":")
        extra_listener = Listener(args.listen, int(extra_port))
        extra_listener.reply = f"pong {args.application} {name} {extra_port}\n".encode()
        extra_listener.open()
        protocols.append((name, int(extra_port), extra_listener))

    nodes = _nodes(args, host, port, [(name, p) for name, p, _ in protocols])

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # SIGUSR1 / SIGUSR2 stop and resume listening while the ZooKeeper session goes on: a
    # provider process that hangs or dies inside a container that keeps running.
    signal.signal(signal.SIGUSR1, lambda *_: listener.toggles.put(False))
    signal.signal(signal.SIGUSR2, lambda *_: listener.toggles.put(True))

    auth = [("digest", args.auth)] if args.auth else None
    ca, cert, key = args.tls.split(",") if args.tls else (None, None, None)
    client = KazooClient(
        hosts=args.zookeeper, timeout=args.session_timeout, auth_data=auth,
        use_ssl=bool(ca), ca=ca, certfile=cert, keyfile=key,
    )  # fmt: skip
    client.start(timeout=30.0)
    acl = [make_digest_acl(*args.auth.split(":", 1), all=True)] if args.auth else None
    registrations = [
        Registration(client, path, node_data, ensure=ensure, acl=acl,
                     reregister_on_reconnect=args.reregister_on_reconnect,
                     persistent=args.persistent)
        for path, node_data, ensure in nodes
    ]  # fmt: skip
    try:
        for registration in registrations:
            registration.register()
            client.add_listener(registration.on_state)
        stop.wait()
        for registration in registrations:
            registration.unregister()
    finally:
        client.stop()
        client.close()
        for _, _, protocol_listener in protocols:
            protocol_listener.toggles.put(None)
    return 0


def _nodes(
    args: argparse.Namespace, host: str, port: int, protocols: Sequence[tuple[str, int]]
) -> list[tuple[str, bytes, tuple[str, ...]]]:
    """Each node to register: its path, its data, and the persistent paths to create first."""
    extra = dict(item.split("=", 1) for item in args.param)
    if args.persistent:
        extra["dynamic"] = "false"
    data = {"ip": host.encode("ascii"), "hostport": f"{format_host(host)}:{port}".encode("ascii"),
            "empty": b""}[args.node_data]  # fmt: skip
    providers = providers_path(args.root, args.interface)
    ensure = (providers, configurators_path(args.root, args.interface))
    methods = [m for m in args.methods.split(",") if m]
    nodes: list[tuple[str, bytes, tuple[str, ...]]] = []
    for protocol, protocol_port in protocols:
        url = provider_url(protocol, host, protocol_port, args.interface, args.application,
                           methods=methods, extra=extra)  # fmt: skip
        nodes.append((f"{providers}/{provider_node_name(url)}", data, ensure))
    if args.instance_root:
        app_path = f"{args.instance_root}/{args.application}"
        document = instance_document(args.application, host, port, protocols[1:],
                                     permanent=args.persistent)  # fmt: skip
        nodes.append((f"{app_path}/{host}:{port}", document, (app_path,)))
    return nodes


if __name__ == "__main__":
    sys.exit(main())
