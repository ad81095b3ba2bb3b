"""Throwaway certificates for TLS tests, made with the ``openssl`` command: a CA, server
certificates naming loopback, client certificates, and the broken kinds (expired, signed by
another CA, a key that is not the certificate's)."""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, PEM files; ``both``: the key then the certificate, one file
    (what ZooKeeper's PEM key store reads)."""

    cert: Path
    key: Path
    both: Path


class TestCA:
    """A certificate authority in ``directory`` that issues certificates for tests."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.cert = directory / f"{name}.pem"
        self._key = directory / f"{name}.key"
        _openssl(
            "req", "-x509", *_KEY, "-keyout", self._key, "-out", self.cert,
            "-days", "3650", "-subj", f"/CN={name}",
        )  # fmt: skip

    def issue(
        self,
        name: str,
        *,
        names: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost"),
        days: int = 365,
    ) -> Issued:
        """A certificate for ``name`` valid ``days`` (-1: expired since yesterday), with
        these subject alternative names, usable by a server and by a client."""
        key, cert, both = (self.directory / f"{name}{ext}" for ext in (".key", ".pem", ".both"))
        request = self.directory / f"{name}.csr"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl("req", *_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.cert, "-CAkey", self._key,
            "-CAcreateserial", "-days", str(days), "-extfile", extensions, "-out", cert,
        )  # fmt: skip
        both.write_bytes(key.read_bytes() + cert.read_bytes())
        return Issued(cert, key, both)


def _openssl(*args: object) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class ServerTls:
    """What a TLS-only ZooKeeper server is given (its certificate, the CA it trusts) and
    what the testbed's own clients present to it."""

    authority: TestCA
    server: Issued
    client: Issued

    @property
    def ca(self) -> Path:
        """The CA certificate, what servers and clients trust."""
        return self.authority.cert

    def client_context(self) -> ssl.SSLContext:
        """A context that verifies the server and presents the client certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca)
        context.load_cert_chain(self.client.cert, self.client.key)
        return context

    def kazoo_options(self) -> dict[str, object]:
        """kazoo's keyword arguments for a TLS connection with the client certificate."""
        return {
            "use_ssl": True, "ca": str(self.ca), "certfile": str(self.client.cert),
            "keyfile": str(self.client.key), "verify_certs": True,
        }  # fmt: skip

    def secure(self, connection: socket.socket) -> socket.socket:
        """``connection`` (connected to a server on loopback) with TLS."""
        return self.client_context().wrap_socket(connection, server_hostname="127.0.0.1")

    @classmethod
    def made_in(cls, directory: Path) -> ServerTls:
        """A CA, a server certificate naming loopback and a client certificate, in ``directory``."""
        ca = TestCA(directory)
        return cls(ca, ca.issue("zookeeper-server"), ca.issue("zookeeper-client"))
