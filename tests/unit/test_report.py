"""Log lines and `plan` rows name huge registry nodes recognisably but briefly."""

from __future__ import annotations

from structlog.testing import capture_logs

from sidecar.model import RegistryNode
from sidecar.plan import Action, Decision
from sidecar.report.events import Events as DecisionLog
from sidecar.report.tables import render_table

# A node name of a megabyte under an interface whose name is 100 KB (ZooKeeper allows both).
INTERFACE = "com.example." + "A" * 100_000
NAME = "dubbo%3A%2F%2F10.0.0.5%3A20880%2F" + "x" * 1_000_000
NODE = RegistryNode(f"/dubbo/{INTERFACE}/providers", NAME, b"", 0x51, 0)
REASON = "malformed node name: invalid port: '…' is not a port (1-65535)"


def test_huge_node_names_are_cut_in_log_lines_and_plan_rows() -> None:
    """The node path and interface in a decision's log line and its `plan` row are their
    first 200 characters and their length (a whole megabyte was logged before)."""
    decision = Decision(Action.LEAVE, NODE, REASON)
    with capture_logs() as logs:
        DecisionLog().left_alone(decision)
    [line] = logs
    path = f"/dubbo/{INTERFACE}/providers/{NAME}"
    assert line["node"] == f"{path[:200]}… ({len(path)} characters)"
    assert line["interface"] == f"{INTERFACE[:200]}… ({len(INTERFACE)} characters)"
    assert line["reason"] == REASON
    rows = render_table([decision]).splitlines()
    assert max(len(row) for row in rows) < 600
    assert rows[1].startswith("leave   com.example.AAAA")
