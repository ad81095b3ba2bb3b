"""What an earlier version of the sidecar left behind: an application-level instance renamed
to its advertised endpoint, in the sidecar's session, and the state file remembering it.

``rename`` does what that version did (one transaction: the provider's node deleted, the
renamed node created), in a process that then dies without closing its session, as a killed
sidecar does: its successor resumes the session from the state file ``remember`` writes.
Run as ``python -m testbed.legacy --zookeeper Z --original PATH --renamed PATH`` with the
renamed node's data on stdin; it prints ``session <id hex> <password hex>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from sidecar.ownership import Marker
from sidecar.state import State, StateFile


def rename(
    connect: str, original: str, renamed: str, data: bytes, session_timeout: float = 30.0
) -> tuple[int, bytes]:
    """Rename ``original`` to ``renamed`` (with ``data``) in a session left open; that
    session's id and password."""
    done = subprocess.run(
        [sys.executable, "-m", "testbed.legacy", "--zookeeper", connect, "--original", original,
         "--renamed", renamed, "--session-timeout", str(session_timeout)],
        input=data, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"legacy rename failed: {done.stderr.decode(errors='replace')}")
    _, session, password = done.stdout.decode().split()
    return int(session, 16), bytes.fromhex(password)


def remember(
    state_file: Path,
    session: tuple[int, bytes],
    engine: str,
    renamed: str,
    data: bytes,
    marker: Marker,
) -> None:
    """The earlier version's state file: its session and the renamed node it manages."""
    state = State(session[0], session[1], engine, {renamed: (data, marker.to_state())})
    StateFile(state_file).save(state)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--zookeeper", required=True)
    parser.add_argument("--original", required=True)
    parser.add_argument("--renamed", required=True)
    parser.add_argument("--session-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    data = sys.stdin.buffer.read()
    client = KazooClient(hosts=args.zookeeper, timeout=args.session_timeout)
    client.start(timeout=30)
    _, stat = client.get(args.original)
    request = client.transaction()
    request.delete(args.original, version=stat.version)
    request.create(args.renamed, data, ephemeral=True)
    results = request.commit()
    if any(isinstance(r, Exception) for r in results):
        print(f"transaction failed: {results}", file=sys.stderr, flush=True)
        return 1
    session, password = client.client_id
    print(f"session {session:x} {password.hex()}", flush=True)
    # Gone without closing the session, as a killed process: the session outlives it.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
