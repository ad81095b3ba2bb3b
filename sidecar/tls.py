"""TLS to the ZooKeeper ensemble: the CA bundle and the client certificate and key read from
files and checked (the certificate verifies against the CA, is within its dates, and the key
is its own), and the context every connection to the ensemble is made with. The files are
read again when they change, so that certificates rotate without a restart."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from sidecar.files import read_regular

# A CA bundle of a few hundred certificates is well under this; a larger file is not one.
_FILE_LIMIT = 4 << 20


class TlsProblem(ValueError):
    """A TLS file that cannot be used: ``setting`` is the field it came from."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(reason)
        self.setting = setting
        self.reason = reason

    @property
    def flag(self) -> str:
        """The setting's command-line flag."""
        return "--" + self.setting.replace("_", "-")


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA bundle, the client certificate and its key are (``key`` None: in the
    certificate's file, or no client certificate), and whether the server's name is checked."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    verify_hostname: bool = True


def checked_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context from the files as they are now; TlsProblem naming the setting when a
    file cannot be read, holds no certificate or key, or the certificate does not verify."""
    ca = _read("zookeeper_tls_ca", files.ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = files.verify_hostname
    try:
        context.load_verify_locations(cadata=ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise TlsProblem("zookeeper_tls_ca", f"{files.ca} holds no PEM CA certificate") from None
    if files.cert is None:
        if files.key is not None:
            raise TlsProblem(
                "zookeeper_tls_key", "a key needs its certificate (--zookeeper-tls-cert)"
            )
        return context
    _read("zookeeper_tls_cert", files.cert)  # a file that cannot be read is named as such
    if files.key:
        _read("zookeeper_tls_key", files.key)
    chain = (str(files.cert), str(files.key) if files.key else None)
    _load_chain(context, chain, files)
    _verify(chain, ca, files)
    return context


def _read(setting: str, path: Path) -> bytes:
    try:
        return read_regular(path, _FILE_LIMIT)
    except OSError as exc:
        reason = f"{path}: {exc.strerror}" if exc.strerror else str(exc)
        raise TlsProblem(setting, f"cannot be read ({reason})") from None


def _load_chain(context: ssl.SSLContext, chain: tuple[str, str | None], files: TlsFiles) -> None:
    try:
        context.load_cert_chain(*chain, password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            setting, reason = "zookeeper_tls_key", f"{files.key} is not the key of {files.cert}"
        elif files.key is None:
            setting, reason = "zookeeper_tls_cert", f"{files.cert} holds no certificate and key"
        else:
            setting, reason = _which_broken(files)
        raise TlsProblem(setting, reason) from None


def _which_broken(files: TlsFiles) -> tuple[str, str]:
    cert = read_regular(files.cert, _FILE_LIMIT) if files.cert else b""
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        return "zookeeper_tls_cert", f"{files.cert} holds no PEM certificate"
    return "zookeeper_tls_key", f"{files.key} holds no PEM private key (without a password)"


def _verify(chain: tuple[str, str | None], ca: bytes, files: TlsFiles) -> None:
    """Present the certificate as a client does, in memory, to a party that trusts only the
    CA: what a server requiring client certificates would say of it (expired, another CA)."""
    verifier = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    verifier.load_cert_chain(*chain, password=_no_password)  # itself never checked
    verifier.verify_mode = ssl.CERT_REQUIRED
    verifier.load_verify_locations(cadata=ca.decode("ascii"))
    presenter = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    presenter.check_hostname = False
    presenter.verify_mode = ssl.CERT_NONE
    presenter.load_cert_chain(*chain, password=_no_password)
    wires = (ssl.MemoryBIO(), ssl.MemoryBIO())  # client to server, server to client
    client = presenter.wrap_bio(wires[1], wires[0], server_side=False)
    server = verifier.wrap_bio(wires[0], wires[1], server_side=True)
    done = [False, False]
    for _ in range(10):
        for index, end in enumerate((client, server)):
            if done[index]:
                continue
            try:
                end.do_handshake()
                done[index] = True
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLCertVerificationError as exc:
                raise TlsProblem(
                    "zookeeper_tls_cert",
                    f"{files.cert} does not verify against {files.ca}: {exc.verify_message}",
                ) from None
            except ssl.SSLError as exc:
                if index == 0:  # the verifier's refusal, as the client hears it
                    continue
                raise TlsProblem("zookeeper_tls_cert", f"{files.cert}: {exc.reason}") from None
        if all(done):
            return
    raise TlsProblem("zookeeper_tls_cert", f"{files.cert} could not be checked against {files.ca}")


def _no_password() -> bytes:
    # An encrypted key is refused, never prompted for on a terminal (OpenSSL's default).
    return b""


class ClientTls:
    """The context made of the files, made again when one of them changes (size, time or
    inode): each new connection to the ensemble is made with the files as they are then."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._made: tuple[tuple[object, ...], ssl.SSLContext] | None = None

    def context(self) -> tuple[ssl.SSLContext, bool]:
        """The context, and whether it was made anew (the files changed); TlsProblem when the
        files as they are now cannot be used (the previous context is kept for later)."""
        with self._lock:
            stamp = self._stamp()
            if self._made is not None and self._made[0] == stamp:
                return self._made[1], False
            context = checked_context(self.files)
            changed = self._made is not None
            self._made = (stamp, context)
            return context, changed

    def wrap(self, connection: socket.socket, hostname: str) -> ssl.SSLSocket:
        """The TLS connection over ``connection`` (already connected), handshake done, the
        server verified (and named ``hostname`` unless that check is off)."""
        context, _ = self.context()
        name = hostname.strip("[]") if self.files.verify_hostname else None
        return context.wrap_socket(connection, server_hostname=name)

    def _stamp(self) -> tuple[object, ...]:
        paths = (self.files.ca, self.files.cert, self.files.key)
        stamps: list[object] = []
        for path in paths:
            try:
                status = os.stat(path) if path else None
            except OSError as exc:
                status = None
                stamps.append(exc.errno)
            stamps.append((status.st_ino, status.st_size, status.st_mtime_ns) if status else None)
        return tuple(stamps)
