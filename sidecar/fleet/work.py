"""A member's work, as the indexer writes it and the member reads it (pure): per path that
concerns the member, a digest of what concerns it there and the path's child version.

The work lives in as many nodes as its size takes, each well under the servers'
jute.maxbuffer: part 0 at ``<work>/<member>`` says how many parts there are, parts 1.. at
``<work>/<member>/<n>``. A path always goes to the same part of a given count (a hash), so
a change of one path rewrites one part. Anyone can write these nodes: what they say only
tells a member where to look.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.quoting import shorten

Paths = dict[str, tuple[str, int]]  # path -> digest, child version
# Parts at most: 2**16 parts of half a megabyte are 32 GB of work.
_MOST_PARTS = 1 << 16


@dataclass(frozen=True)
class Part:
    """What one work node says: its paths, and (part 0) how many parts there are."""

    paths: Paths
    parts: int = 1


def part_path(work: str, member: str, index: int) -> str:
    return f"{work}/{member}" if index == 0 else f"{work}/{member}/{index}"


def split(paths: Mapping[str, tuple[str, int]], budget: int, parts: int = 1) -> list[bytes]:
    """The work in as few parts as keep each under ``budget`` bytes, ``parts`` at least (a
    power of two; the indexer never lowers it, so that a count at a boundary does not go
    back and forth). A path that alone exceeds ``budget`` is left out (a name that long is
    over the servers' limit: no node holds it)."""
    fitting = {p: entry for p, entry in paths.items() if len(_entry(p, entry)) < budget}
    while True:
        groups: list[Paths] = [{} for _ in range(parts)]
        for path, entry in fitting.items():
            groups[part_of(path, parts)][path] = entry
        encoded = [_encode(group, parts if i == 0 else 1) for i, group in enumerate(groups)]
        if all(len(data) <= budget for data in encoded) or parts >= _MOST_PARTS:
            return encoded
        parts *= 2


def part_of(path: str, parts: int) -> int:
    return zlib.crc32(path.encode("utf-8", "surrogatepass")) % parts


def parse_part(data: bytes) -> Part:
    """A work node's paths, each with its digest and child version, and the number of parts
    (an earlier version's node: paths and digests only; the origins it may carry are not
    read: they are never proof). Raises ValueError for anything else: any client can write
    there."""
    try:
        doc = json.loads(data or b"{}", parse_constant=_not_a_number)
        if "paths" not in doc:
            return Part({str(p): (str(d), -1) for p, d in doc.items()})
        paths = {str(p): (str(d), int(v)) for p, (d, v) in doc["paths"].items()}
        parts = int(doc.get("parts", 1))
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a work document: {shorten(str(exc))}") from None
    if not 1 <= parts <= _MOST_PARTS:
        raise ValueError(f"not a work document: {parts} parts")
    return Part(paths, parts)


def _encode(paths: Paths, parts: int) -> bytes:
    doc: dict[str, object] = {"paths": {p: [d, v] for p, (d, v) in paths.items()}}
    if parts > 1:
        doc["parts"] = parts
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _entry(path: str, entry: tuple[str, int]) -> bytes:
    return json.dumps({path: list(entry)}, separators=(",", ":")).encode()


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a number")
