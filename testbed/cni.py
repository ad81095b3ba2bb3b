"""A pod with a ``hostPort``, made the way a Kubernetes runtime (containerd, CRI-O) makes one:
a network namespace, and the CNI plugins ``bridge`` + ``host-local`` + ``portmap`` called
with the CNI environment and the network's configuration on stdin; deleted with ``DEL``.

The plugins are Debian's ``containernetworking-plugins`` (``/usr/lib/cni``). Everything
carries this process's id in its name; :meth:`Pod.close` and :meth:`Network.close` remove it.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

CNI_PATH = "/usr/lib/cni"
CNI_VERSION = "0.4.0"


@dataclass(frozen=True)
class PortMapping:
    """One ``hostPort`` of the pod, as a runtime hands it to ``portmap``."""

    host_port: int
    container_port: int
    host_ip: str = ""

    def runtime_config(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "hostPort": self.host_port, "containerPort": self.container_port, "protocol": "tcp",
        }  # fmt: skip
        if self.host_ip:
            found["hostIP"] = self.host_ip
        return found


class Network:
    """A CNI bridge network (one bridge, one ``host-local`` address range): the node's side.

    ``prefix`` runs the plugins somewhere else (``ip netns exec NODE``: a node of its own),
    and ``iptables`` chooses the back end they write through (``legacy`` or ``nft``; "" the
    host's), as a node's alternative would."""

    def __init__(self, subnet: str, prefix: Sequence[str] = (), iptables: str = "") -> None:
        self.subnet = subnet
        self.prefix = list(prefix)
        self.iptables = iptables
        self.bridge = f"cni{os.getpid() % 100000:x}{os.urandom(2).hex()}"
        self._state = tempfile.TemporaryDirectory(prefix="cni-")

    def pod(self, ports: Sequence[PortMapping]) -> Pod:
        """A pod on this network with these ``hostPort`` mappings (started on ``with``)."""
        return Pod(self, ports)

    def plugins(self) -> list[dict[str, Any]]:
        """The conflist's plugins, as a cluster's ``/etc/cni/net.d`` would name them."""
        return [
            {
                "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                "ipam": {
                    "type": "host-local", "subnet": self.subnet, "dataDir": self._state.name,
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ]  # fmt: skip

    def close(self) -> None:
        """Remove the bridge and the address range's state (after the pods' ``DEL``)."""
        subprocess.run([*self.prefix, "ip", "link", "del", self.bridge], capture_output=True,
                       check=False)  # fmt: skip
        self._state.cleanup()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Pod:
    """One pod's network namespace on a CNI network, with its ``hostPort`` mappings."""

    network: Network
    ports: Sequence[PortMapping]
    container_id: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)
    netns: str = field(default_factory=lambda: f"cnipod-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    address: str = ""
    _results: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    def start(self, publish: bool = True) -> Pod:
        """The namespace and its ``bridge`` network; its ports too unless ``publish`` is
        False (then :meth:`publish` calls ``portmap`` later, as the next plugin of the
        chain)."""
        _run(["ip", "netns", "add", self.netns])
        try:
            [bridge, portmap] = self.network.plugins()
            self._add(bridge)
            if publish:
                self._add(portmap)
        except BaseException:
            self.close()
            raise
        ips = self._results[0][1].get("ips") or [{}]
        self.address = str(ips[0].get("address", "")).split("/")[0]
        return self

    def publish(self) -> None:
        """``portmap`` ADD: the pod's hostPorts published now."""
        self._add(self.network.plugins()[1])

    def unpublish(self) -> None:
        """``portmap`` DEL alone: the pod's hostPorts gone, the pod still running."""
        plugin, result = self._results.pop()
        self._call("DEL", plugin, result)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the pod (its network namespace)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def close(self) -> None:
        """CNI ``DEL`` of every plugin, in reverse (the runtime's teardown), then the
        namespace; each step on its own."""
        last = self._results[-1][1] if self._results else None
        for plugin, _ in reversed(self._results):
            with contextlib.suppress(RuntimeError):
                self._call("DEL", plugin, last)
        self._results = []
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)

    def _add(self, plugin: dict[str, Any]) -> None:
        previous = self._results[-1][1] if self._results else None
        self._results.append((plugin, self._call("ADD", plugin, previous)))

    def _call(
        self, command: str, plugin: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        config: dict[str, Any] = {"cniVersion": CNI_VERSION, "name": self.network.bridge, **plugin}
        if previous is not None:
            config["prevResult"] = previous
        if plugin["type"] == "portmap":
            config["runtimeConfig"] = {"portMappings": [p.runtime_config() for p in self.ports]}
        env = {
            "CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns_path, "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH,
            "PATH": _path_for(self.network.iptables),
        }  # fmt: skip
        done = subprocess.run(
            [*self.network.prefix, f"{CNI_PATH}/{plugin['type']}"], input=json.dumps(config),
            env=env, capture_output=True, text=True, timeout=30 + len(self.ports) / 2,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"CNI {plugin['type']} {command}: {done.stdout}{done.stderr}")
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def __enter__(self) -> Pod:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_BACKENDS: dict[str, Path] = {}


def _path_for(backend: str) -> str:
    """A PATH whose ``iptables`` and ``ip6tables`` are the back end asked for (the plugins
    find them on the PATH, as on a node whose alternative chose that back end)."""
    system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if not backend:
        return system
    if backend not in _BACKENDS:
        where = Path(tempfile.mkdtemp(prefix=f"iptables-{backend}-"))
        atexit.register(shutil.rmtree, where, True)
        for tool in ("iptables", "ip6tables", "iptables-save", "ip6tables-save",
                     "iptables-restore", "ip6tables-restore"):  # fmt: skip
            family, _, rest = tool.partition("-")
            (where / tool).symlink_to(f"/usr/sbin/{family}-{backend}{'-' + rest if rest else ''}")
        _BACKENDS[backend] = where
    return f"{_BACKENDS[backend]}:{system}"


def free_subnet(within: str = "10.251.0.0/16") -> str:
    """A /24 of ``within`` that no interface address and no route of this host touches,
    picked at random (tests running side by side rarely pick the same)."""
    shown = subprocess.run(
        ["sh", "-c", "ip -4 -o addr show; ip -4 route show table all"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    pool = ipaddress.IPv4Network(within)
    taken = []
    for word in shown.split():
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(word, strict=False)
            if isinstance(network, ipaddress.IPv4Network) and network.overlaps(pool):
                taken.append(network)
    free = [s for s in pool.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)]
    if not free:
        raise RuntimeError(f"no free /24 left in {within}")
    return str(random.choice(free))


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[:300]}")
