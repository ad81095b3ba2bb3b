"""Every write accounted for: the modules that write to ZooKeeper are exactly those the
"Writers" table of docs/architecture.md lists (found in the code's syntax tree)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sidecar.protocols import Coordination, Transactions

ROOT = Path(__file__).resolve().parents[2]
# The protocols' writes, and kazoo's, and what the proxy sends the servers.
SEAM_WRITES = {"start", "put", "join", "acquire", "release"}
KAZOO_WRITES = {
    "create", "create_async", "set", "set_async", "delete", "delete_async", "transaction",
    "ensure_path", "ensure_path_async",
}  # fmt: skip
# Who each write is called on: a registry or coordination protocol, a kazoo client, the proxy's
# connection to the servers (what else has these method names is never named so).
WRITTEN_THROUGH = (
    (SEAM_WRITES, re.compile(r"registry|coordination", re.IGNORECASE)),
    (KAZOO_WRITES, re.compile(r"client$")),
    ({"write", "writelines"}, re.compile(r"^upstream$")),
)


def _receiver(call: ast.Call) -> str:
    assert isinstance(call.func, ast.Attribute)
    value = call.func.value
    if isinstance(value, ast.Attribute):
        return value.attr
    return value.id if isinstance(value, ast.Name) else ""


def writes_in(source: str) -> list[str]:
    """The writes a module's source calls: ``receiver.method`` each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = _receiver(node)
            for methods, named in WRITTEN_THROUGH:
                if node.func.attr in methods and named.search(receiver):
                    found.append(f"{receiver}.{node.func.attr}")
    return found


def _writers_found() -> set[str]:
    package = ROOT / "sidecar"
    return {
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if writes_in(path.read_text())
    }  # fmt: skip


def _writers_listed() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Writers\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(sidecar/[^`]+\.py)` \|", section, flags=re.MULTILINE))


def test_every_module_that_writes_is_listed_with_its_reason_and_only_those() -> None:
    """A module that writes to ZooKeeper (a protocol's write, kazoo's, the proxy's upstream) is
    in the Writers table, and every module the table lists writes."""
    assert _writers_found() == _writers_listed()


def test_the_writes_looked_for_are_the_protocols_writes() -> None:
    """The protocol methods looked for are the write protocols' writes (a new one is looked for
    too, or this fails)."""
    reads = {"owner_of", "read_data", "nodes_under", "read_nodes"}
    declared = {
        name
        for protocol in (Transactions, Coordination)
        for name in vars(protocol)
        if not name.startswith("_") and callable(getattr(protocol, name))
    }
    assert declared - reads == SEAM_WRITES


def test_a_write_anywhere_else_is_found() -> None:
    """A write through the registry, a coordination protocol, a kazoo client or the proxy's
    upstream is found wherever it is; threads started and locks released are not writes."""
    found = writes_in(
        "p.registry.start([t])\nself._coordination.put({})\nself._client.create_async(x)\n"
        "self.upstream.write(frame)\nthread.start()\nlock.release()\nqueue.put(1)\n"
    )
    assert found == [
        "registry.start", "_coordination.put", "_client.create_async", "upstream.write",
    ]  # fmt: skip
