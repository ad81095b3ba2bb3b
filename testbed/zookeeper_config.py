"""The parts of a test ZooKeeper server's configuration for the AdminServer, TLS and SASL:
their jars and their lines."""

from __future__ import annotations

from collections.abc import Mapping

from testbed.tls import ServerTls

# The AdminServer runs on Jetty, which Debian's zookeeper package does not put on its path.
ADMIN_CLASSPATH: tuple[str, ...] = tuple(
    f"/usr/share/java/{jar}.jar"
    for jar in (
        "jetty9-server", "jetty9-servlet", "jetty9-util", "jetty9-http", "jetty9-io",
        "jetty9-security", "servlet-api", "jackson-databind", "jackson-core",
        "jackson-annotations",
    )
)  # fmt: skip

# NettyServerCnxnFactory, which a secureClientPort needs.
NETTY_CLASSPATH: tuple[str, ...] = tuple(
    f"/usr/share/java/netty-{jar}.jar"
    for jar in ("buffer", "codec", "common", "handler", "resolver", "transport",
                "transport-native-epoll", "transport-native-unix-common")
)  # fmt: skip

# Every session must authenticate with SASL.
SASL_LINES = [
    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    "enforce.auth.enabled=true",
    "enforce.auth.schemes=sasl",
]


def tls_lines(tls: ServerTls, *, admin: bool) -> list[str]:
    """A secure client port (Netty, client certificates required) and, with ``admin``, the
    AdminServer over HTTPS only."""
    lines = [
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        f"ssl.keyStore.location={tls.server.both}",
        "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={tls.ca}",
        "ssl.trustStore.type=PEM",
        "ssl.clientAuth=need",
    ]
    if admin:
        lines += [
            "admin.forceHttps=true",
            f"ssl.quorum.keyStore.location={tls.server.both}",
            "ssl.quorum.keyStore.type=PEM",
            f"ssl.quorum.trustStore.location={tls.ca}",
            "ssl.quorum.trustStore.type=PEM",
        ]
    return lines


def jaas_text(users: Mapping[str, str]) -> str:
    """The JAAS file of a server whose SASL digest users are ``users`` (name -> password)."""
    entries = "".join(f'\n  user_{u}="{p}"' for u, p in users.items())
    module = "org.apache.zookeeper.server.auth.DigestLoginModule"
    return f"Server {{\n  {module} required{entries};\n}};\n"
