"""The legacy back end's change detection, on real iptables-legacy rules in a network
namespace of the test's own: a rule replaced by one of the same size is noticed, traffic
that only moves the rules' counters is not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Runs inside `unshare --net`: a namespace with only its loopback, gone when the script ends.
_SCRIPT = """
import json, socket, subprocess
from sidecar.sources import nat

def ipt(*args):
    subprocess.run(["iptables-legacy", "-w", "-t", "nat", *args], check=True)

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
ipt("-N", "CNI-DN-0123456789ab")
ipt("-A", "CNI-DN-0123456789ab", "-p", "tcp", "--dport", "30001",
    "-j", "DNAT", "--to-destination", "10.1.0.5:20880")
ipt("-A", "OUTPUT", "-p", "tcp", "--dport", "30001", "-j", "CNI-DN-0123456789ab")
digest = nat._LegacyDigest()
polls = nat._ENTRIES_EVERY
for _ in range(3):  # connections to the hostPort: the rules' counters move, nothing else
    with socket.socket() as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", 30001))
        except OSError:
            pass
counted = subprocess.run(["iptables-legacy", "-t", "nat", "-L", "OUTPUT", "-v", "-x", "-n"],
                         capture_output=True, text=True, check=True).stdout
after_traffic = [digest.changed() for _ in range(polls)]
ipt("-R", "CNI-DN-0123456789ab", "1", "-p", "tcp", "--dport", "30001",
    "-j", "DNAT", "--to-destination", "10.1.0.6:20880")
after_swap = [digest.changed() for _ in range(polls)]
print(json.dumps({"counted": counted, "after_traffic": after_traffic,
                  "after_swap": after_swap}))
"""


def test_a_same_size_swap_is_noticed_and_traffic_is_not() -> None:
    """A pod's rule replaced by another of the same size (another pod's address) is
    noticed within the polls of one entries comparison; connections that only move the
    rules' packet counters are no change."""
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _SCRIPT],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    [counted] = [line for line in found["counted"].splitlines() if "CNI-DN-" in line]
    assert int(counted.split()[0]) >= 1  # the connections went through the rule
    assert found["after_traffic"] == [False] * len(found["after_traffic"])
    assert found["after_swap"].count(True) == 1
