"""One host's providers for bench/fleet: registers and drops nodes on command, from its host.

Runs inside a host's network namespace, so that ZooKeeper sees its sessions come from that
host's address (what the sidecars' ownership proof checks). Reads one JSON command per line
on stdin and answers one JSON line on stdout:

- ``{"create": [path, ...], "provider": "p0"}``: create the ephemeral nodes, pipelined, in
  that provider's session (opened on first use); answers ``{"sent": [t, ...]}``, when each
  create was sent (``time.perf_counter``, CLOCK_MONOTONIC on Linux: comparable across
  processes);
- ``{"end": "p0"}``: close that provider's session (the provider process died; its
  registrations go with it); answers ``{"ended": "p0"}``;
- ``{"quit": true}`` (or end of input): close every session and exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench.workload import PIPELINE


def main() -> int:
    parser = argparse.ArgumentParser(prog="fleet_agent")
    parser.add_argument("--zookeeper", required=True)
    args = parser.parse_args()
    sessions: dict[str, KazooClient] = {}

    def session(provider: str) -> KazooClient:
        if provider not in sessions:
            zk = KazooClient(hosts=args.zookeeper, timeout=30.0)
            zk.start(timeout=60)
            sessions[provider] = zk
        return sessions[provider]

    session("p0")
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if "create" in command:
                sent = create(session(command.get("provider", "p0")), command["create"])
                print(json.dumps({"sent": sent}), flush=True)
            elif "end" in command:
                ended = sessions.pop(command["end"], None)
                if ended is not None:
                    ended.stop()
                    ended.close()
                print(json.dumps({"ended": command["end"]}), flush=True)
            else:
                break
    finally:
        for zk in sessions.values():
            zk.stop()
            zk.close()
    return 0


def create(zk: KazooClient, paths: list[str]) -> list[float]:
    """Create the nodes with at most PIPELINE in flight; an existing node is no error (a
    provider registering again after its session ended registers the same name)."""
    sent: list[float] = []
    pending = []
    for path in paths:
        sent.append(time.perf_counter())
        pending.append(zk.create_async(path, b"", ephemeral=True))
        if len(pending) >= PIPELINE:
            _wait(pending[: PIPELINE // 2])
            del pending[: PIPELINE // 2]
    _wait(pending)
    return sent


def _wait(pending: list[object]) -> None:
    for request in pending:
        try:
            request.get(timeout=120)  # type: ignore[attr-defined]
        except Exception as exc:
            if type(exc).__name__ != "NodeExistsError":
                raise


if __name__ == "__main__":
    sys.exit(main())
