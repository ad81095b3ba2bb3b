"""Without Docker, the identity a sidecar's lease and markers carry is unique per pod (its
UID) or per network namespace, not the host name two pods may share."""

from __future__ import annotations

import subprocess
import sys

from sidecar.sources.static import identity

SCRIPT = "from sidecar.sources.static import identity; print(identity({}))"


def in_namespaces(*flags: str) -> str:
    """identity() of a process in new namespaces (``-n``: network, ``-u``: host name set to
    the same name as every such process)."""
    done = subprocess.run(
        ["unshare", *flags, "sh", "-c", 'hostname pod-0 && exec "$0" -c "$1"',
         sys.executable, SCRIPT],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_pod_uid_names_the_pod() -> None:
    """POD_UID from the downward API is the identity (anything but letters, digits and
    hyphens dropped: it becomes part of a ZooKeeper path)."""
    uid = "6f1c2b8e-0d7a-4a57-9a53-0c1f1d2e3f40"
    assert identity({"POD_UID": uid}).startswith(f"static-pod-{uid}@")
    assert identity({"POD_UID": "a/b c"}).startswith("static-pod-abc@")


def test_two_pods_of_one_name_have_different_identities() -> None:
    """Two processes with the same host name in different network namespaces (two pods of
    one name) get different identities; two in the same namespace (a restarted sidecar, the
    app) the same one."""
    first, second = in_namespaces("-u", "-n"), in_namespaces("-u", "-n")
    assert first.endswith("@pod-0")
    assert second.endswith("@pod-0")
    assert first != second
    assert identity({}) == identity({})
    assert identity({}).startswith("static-netns-")
