"""Settings for an ensemble that demands TLS and SASL authentication (declared as in
fields.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, SecretStr

from sidecar.config.fields import setting


class TlsFields(BaseModel):
    """TLS to the ensemble (ZooKeeper's ``secureClientPort``)."""

    zookeeper_tls_ca: Path | None = setting(
        None,
        "ZooKeeper TLS",
        "CA bundle (PEM) the servers' certificates must verify against. Set: every connection "
        "to the ensemble uses TLS (the session, the `cons` look-ups on the same ports, the "
        "AdminServer over HTTPS, the proxy's upstream connections); the connect string then "
        "names the servers' `secureClientPort`s. Read again when it changes.",
        metavar="FILE",
        default_text="plaintext",
    )
    zookeeper_tls_cert: Path | None = setting(
        None,
        "ZooKeeper TLS",
        "Client certificate (PEM) for servers that require one (`ssl.clientAuth=need`); it "
        "must verify against `--zookeeper-tls-ca` and be within its dates. Read again when it "
        "changes: the next connection uses the new one.",
        metavar="FILE",
        default_text="no client certificate",
    )
    zookeeper_tls_key: Path | None = setting(
        None,
        "ZooKeeper TLS",
        "The client certificate's private key (PEM, no password); unset: it is in the "
        "certificate's file. Read again when it changes.",
        metavar="FILE",
        default_text="in the certificate's file",
    )
    zookeeper_tls_no_verify_hostname: bool = setting(
        False,
        "ZooKeeper TLS",
        "Do not check that a server's certificate names the host or address the connect "
        "string gives (for servers reached by addresses their certificates do not list); "
        "the certificate must still verify against the CA.",
    )


class SaslFields(BaseModel):
    """SASL authentication to the ensemble."""

    zookeeper_sasl: SecretStr | None = setting(
        None,
        "ZooKeeper SASL",
        "SASL DIGEST-MD5 credentials `user:password` (a `user_<name>` of the servers' JAAS "
        "`DigestLoginModule`); the nodes the sidecar creates get the ACL of that identity "
        "(`sasl:<user>`, all permissions). Never printed. Not with `--zookeeper-sasl-file`.",
        metavar="USER:PASSWORD",
        default_text="no SASL",
    )
    zookeeper_sasl_file: Path | None = setting(
        None,
        "ZooKeeper SASL",
        "File holding the SASL credentials `user:password` (a mounted secret), read once at "
        "start, a trailing newline dropped; a regular file only. Never printed. Not with "
        "`--zookeeper-sasl`.",
        metavar="FILE",
        default_text="no file",
    )
