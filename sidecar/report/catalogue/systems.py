"""Log events of the systems the sidecar reads: ZooKeeper, Docker and the mappings, the
advertised address."""

from __future__ import annotations

from sidecar.report.catalogue.entry import ADDRESS, DOCKER, ZOOKEEPER, Event

EVENTS: dict[str, Event] = {
    # -- ZooKeeper
    "kazoo_internals_changed": Event(
        ZOOKEEPER,
        "The installed kazoo differs from the one the sidecar's ZooKeeper fast path was tested "
        "on (`differences` says where): every session uses kazoo's own connection loop, "
        "correct but slower, and a reconnect reads everything again.",
        "kazoo was upgraded outside the release's lock file (e.g. a pip install into the image).",
        "Install the kazoo version the release pins (requirements/runtime.txt).",
    ),
    "zookeeper_connecting": Event(
        ZOOKEEPER,
        "Connecting to ZooKeeper (`resuming`: the session from the state file).",
        "Start.",
    ),
    "zookeeper_connected": Event(
        ZOOKEEPER,
        "Connected in a new session: a full resync follows.",
        "Start, or the previous session expired.",
    ),
    "zookeeper_resumed": Event(
        ZOOKEEPER,
        "Reconnected in the same session; watches set again.",
        "A server restart or a network blip shorter than the session.",
    ),
    "zookeeper_suspended": Event(
        ZOOKEEPER,
        "Disconnected; the session may still live.",
        "A server or the network went away.",
        "Check the servers and the network if it lasts.",
    ),
    "zookeeper_lost": Event(
        ZOOKEEPER,
        "The session is gone: its rewritten nodes went with it.",
        "Disconnected longer than `--session-timeout`.",
        "Nothing: the next session restores them from the records.",
    ),
    "zookeeper_pass_failed": Event(
        ZOOKEEPER,
        "A pass could not read or write the registry: its work is retried.",
        "Connection loss or a refused request.",
        "Check the servers; `problem` names the error.",
    ),
    "zookeeper_answering": Event(
        ZOOKEEPER,
        "A pass succeeded again after `zookeeper_pass_failed`.",
        "The registry answers again.",
    ),
    "zookeeper_tls_refused": Event(
        ZOOKEEPER,
        "A connection to ZooKeeper was not made: a TLS file (`setting`) cannot be used now; "
        "`problem` says why (expired, another CA, not the certificate's key, unreadable). "
        "The session lives on while it can; said once per problem.",
        "A certificate or key rotated on disk to one that does not verify, or half written.",
        "Put a certificate that verifies against the CA (and its key) in place: the next "
        "attempt, within seconds, reads the files again.",
    ),
    "zookeeper_tls_handshake_failed": Event(
        ZOOKEEPER,
        "The TLS handshake with a ZooKeeper server failed (`server`, `problem`); the next "
        "server is tried. Said once per problem.",
        "The server's certificate does not verify against `--zookeeper-tls-ca`, does not "
        "name the host or address of the connect string, or the server refused the client "
        "certificate; or the port is not a `secureClientPort`.",
        "Give the CA that signed the servers' certificates; name the servers as their "
        "certificates do, or add `--zookeeper-tls-no-verify-hostname` for addresses the "
        "certificates do not list.",
    ),
    "zookeeper_tls_reloaded": Event(
        ZOOKEEPER,
        "The TLS files changed on disk and verify: the connection just made uses them.",
        "A certificate, key or CA bundle rotated (a secret updated in place).",
    ),
    "session_resumed": Event(
        ZOOKEEPER,
        "The ZooKeeper session was recorded in the state file.",
        "A new session (a restart within its timeout resumes it).",
    ),
    "coordination_open": Event(
        ZOOKEEPER,
        "Others than the sidecar's credentials may change its "
        "coordination parents (`nodes`, `writable_by`).",
        "The parents were created with the open ACL.",
        "Run the `setAcl -R` command in `fix`.",
    ),
    "coordination_closed": Event(
        ZOOKEEPER,
        "The coordination parents are closed to others again.",
        "The `fix` of `coordination_open` was applied.",
    ),
    # -- Docker and mappings
    "docker_lost": Event(
        DOCKER,
        "Docker's event stream ended.",
        "dockerd stopped or restarted, or the socket went away.",
        "Check dockerd; the sidecar reconnects.",
    ),
    "docker_unavailable": Event(
        DOCKER,
        "The Docker Engine API does not answer.",
        "No socket, no permission, or dockerd down.",
        "Mount the socket and add its group (`--group-add`), or set `--docker-url`.",
    ),
    "docker_answering": Event(DOCKER, "Docker answers again.", "dockerd is back."),
    "docker_stale": Event(
        DOCKER,
        "Docker is unreachable: nothing is changed until it answers.",
        "The sidecar will not act on stale bindings.",
        "Check dockerd and the socket.",
    ),
    "nat_table_changed": Event(
        DOCKER,
        "The NAT table's DNAT rules were read again and publish other ports: `mappings` counts "
        "them; the registrations they concern are planned again.",
        "A container, pod or rule that publishes a port came or went.",
    ),
    "nat_table_unreadable": Event(
        DOCKER,
        "The NAT table could not be read (`--nat-table`): its last good mappings stay in "
        "force, and /readyz says so; none were read yet at start, nothing is changed.",
        "No `NET_ADMIN` capability, not the host's network namespace, or no `iptables-save` "
        "(`problem` says which).",
        "Run with `--network host` (`hostNetwork: true`) and `--cap-add NET_ADMIN` (and "
        "`NET_RAW` where the legacy back end holds rules), with the `iptables` package "
        "installed; see the NAT table page.",
    ),
    "nat_table_answering": Event(DOCKER, "The NAT table can be read again.", "A read succeeded."),
    "static_mapping_changed": Event(
        DOCKER,
        "The static mapping file's new ports are in force.",
        "The file changed and read the same twice.",
    ),
    "static_mapping_unchanged": Event(
        DOCKER,
        "The static mapping file changed but cannot be used: the earlier mapping stays.",
        "It does not parse, or a port or label is invalid.",
        "Fix the file; `problem` says what.",
    ),
    # -- advertised address
    "address_found": Event(
        ADDRESS,
        "The advertised address is known (`address`, `source`).",
        "Start, or a source answered after none did.",
    ),
    "address_changed": Event(
        ADDRESS,
        "The advertised address changed: every managed registration is re-pointed.",
        "An `interface:` or `url:` source answered another address.",
    ),
    "advertise_address_unavailable": Event(
        ADDRESS,
        "No advertised address source answers: nothing is written until one does.",
        "`HOST_IP` unset and no usable source.",
        "Set `HOST_IP` or `--advertise-host` / `--advertise-from`.",
    ),
}
