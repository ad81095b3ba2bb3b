"""Make container subnets unreachable for one group id, so a host-side consumer acts remote.

On a Docker host every container IP is routable, so a consumer on the same host would reach a
provider's private address even when nothing rewrote it. Rejecting the subnets for a
dedicated group id, and running the consumer under that group id, restores the situation the
sidecar exists for without touching any other process's traffic.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from testbed.engine import LABEL

FIRST_GID = 42000
_LOCK_PATH = Path("/run/dubbo-nat-sidecar-testbed-firewall.lock")
_GID_OWNER = re.compile(r"--gid-owner (\d+)")


def as_group(gid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs with real and effective group ``gid`` and no others."""
    return ["setpriv", "--regid", str(gid), "--clear-groups", "--", *argv]


@contextlib.contextmanager
def unreachable_for_group(subnets: Sequence[str]) -> Iterator[int]:
    """Yield an unused group id whose processes get "connection refused" for ``subnets``.

    For each subnet one ``OUTPUT -m owner --gid-owner GID -d SUBNET -j REJECT`` rule is
    inserted (``ip6tables`` for IPv6 subnets); exactly those rules are deleted on exit, also
    when the body raises. Loopback stays reachable, and so do published ports on
    ``127.0.0.1`` as long as Docker's userland proxy (``docker-proxy``) serves them: the
    proxy, not the restricted process, then opens the connection to the container. With the
    userland proxy disabled, loopback connections are DNATed before the filter table sees
    them and would be rejected too.
    """
    for tool, package in (("iptables", "iptables"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found (Debian: apt-get install {package})")
    networks = [ipaddress.ip_network(subnet, strict=False) for subnet in subnets]
    inserted: list[list[str]] = []
    try:
        # The lock spans choosing the gid and inserting its rules, so that concurrent test
        # runs see each other's gid as taken.
        with _LOCK_PATH.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            gid = _unused_gid()
            for network in networks:
                tool = "ip6tables" if network.version == 6 else "iptables"
                rule = [
                    "OUTPUT",
                    "-m",
                    "owner",
                    "--gid-owner",
                    str(gid),
                    "-d",
                    str(network),
                    "-m",
                    "comment",
                    "--comment",
                    LABEL,
                    "-j",
                    "REJECT",
                ]
                _iptables(tool, "-I", rule)
                inserted.append([tool, *rule])
        yield gid
    finally:
        errors: list[str] = []
        for tool, *rule in reversed(inserted):
            try:
                _iptables(tool, "-D", rule)
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("could not remove firewall rules: " + "; ".join(errors))


def _unused_gid() -> int:
    taken = {group.gr_gid for group in grp.getgrall()}
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        listing = subprocess.run(
            [tool, "-w", "-S", "OUTPUT"], capture_output=True, text=True, check=False
        ).stdout
        taken.update(int(gid) for gid in _GID_OWNER.findall(listing))
    gid = FIRST_GID
    while gid in taken:
        gid += 1
    return gid


def _iptables(tool: str, action: str, rule: Sequence[str]) -> None:
    completed = subprocess.run(
        [tool, "-w", action, *rule], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{tool} {action} {' '.join(rule)} failed: {completed.stderr.strip()}")
