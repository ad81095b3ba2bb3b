"""`--output json`: the documents scripts read, each row an object with named fields."""

from __future__ import annotations

import json

from sidecar.model import Endpoint, RegistryNode
from sidecar.plan import Action, Decision
from sidecar.report.documents import fleet_document, plan_document
from sidecar.report.tables import FleetMember

PROVIDERS = "/dubbo/com.example.Shop/providers"


def test_a_removal_names_the_endpoint_its_node_registers() -> None:
    """A removal's row gives the endpoint the removed node registers and no advertised one;
    a node with no endpoint in its name gives null, not a placeholder."""
    name = "dubbo%3A%2F%2F10.0.0.9%3A30880%2Fcom.example.Shop"
    removed = Decision(Action.REMOVE, RegistryNode(PROVIDERS, name, b"", 1, 0), "gone")
    odd = Decision(Action.LEAVE, RegistryNode(PROVIDERS, "junk", b"", 1, 0), "malformed")
    document = json.loads(json.dumps(plan_document([removed, odd], {"/dubbo/secret"})))
    assert document["unreadable"] == ["/dubbo/secret"]
    rows = {row["action"]: row for row in document["decisions"]}
    assert rows["remove"]["registered"] == {"host": "10.0.0.9", "port": 30880}
    assert rows["remove"]["advertised"] is None
    assert rows["leave"]["registered"] is None
    assert rows["leave"]["container"] is None
    kept = Decision(Action.KEEP, removed.node, "right", original=Endpoint("172.17.0.2", 20880))
    [row] = plan_document([kept], ())["decisions"]
    assert row["registered"] == {"host": "172.17.0.2", "port": 20880}


def test_status_of_a_fleet_lists_members_and_ignored_nodes() -> None:
    """`status --fleet --output json`: each member's readiness as a boolean with its reasons,
    its counts as numbers, its session in hex; each ignored node with why."""
    member = FleetMember("m-1", "10.0.0.7", "host", 0x1A, ("no lease",), 3, 1, 12, True)
    document = fleet_document([member], {"/dubbo-nat-sidecar/fleet/x": "not a member"})
    assert document["kind"] == "fleet"
    assert document["members"] == [
        {
            "host": "10.0.0.7",
            "scope": "host",
            "session": "0x1a",
            "ready": False,
            "not_ready": ["no lease"],
            "managed": 3,
            "refused": 1,
            "paths": 12,
            "role": "indexer",
            "member": "m-1",
        }
    ]
    assert document["ignored"] == [{"node": "/dubbo-nat-sidecar/fleet/x", "why": "not a member"}]
