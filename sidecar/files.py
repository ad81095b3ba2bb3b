"""Opening the files the sidecar is given (static mapping, state file): regular files only,
opened without blocking and read up to a bound in bytes. A FIFO, a device, a socket or a
directory in their place is refused with the reason, never waited on (a FIFO with no writer,
like a hung mount, would hold the loop thread forever)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


class NotRegular(OSError):
    """Not a regular file: refused, not read."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (symbolic links followed); raises OSError with
    a one-line reason when it is none, cannot be opened, or holds more than ``limit``."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(descriptor, path)
        chunks, size = [], 0
        while chunk := os.read(descriptor, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(f"{path} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def open_private(path: Path, flags: int) -> int:
    """Open (creating) a regular file only its owner may read, whatever mode an older one had,
    without blocking; raises NotRegular for anything else at that path."""
    descriptor = os.open(path, flags | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        _check_regular(descriptor, path)
        os.fchmod(descriptor, 0o600)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _check_regular(descriptor: int, path: Path) -> None:
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise NotRegular(f"{path} is {kind}, not a regular file")
