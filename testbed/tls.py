"""Throwaway certificates for TLS tests, made with the ``openssl`` command: a CA, server
certificates naming loopback, client certificates, and the broken kinds (expired, signed by
another CA, a key that is not the certificate's)."""

from __future__ import annotations

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
