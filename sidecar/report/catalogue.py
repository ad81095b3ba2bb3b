"""The catalogue of every stable log ``event`` name: what it means, its cause, what to do."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One event name: ``group`` orders the events page; ``fix`` is empty when there is
    nothing to do (the event reports normal work)."""

    group: str
    meaning: str
    cause: str
    fix: str = ""


_W = "Decisions"
_Z = "ZooKeeper"
_D = "Docker and mappings"
_A = "Advertised address"
_S = "Scope, lease, state file"
_F = "Fleet"
_P = "Proxy mode"
_L = "Lifecycle"

# A name with ``<path>`` in it carries the node's path there (the record's own path).
EVENTS: dict[str, Event] = {
    # -- decisions: one line per write, with interface, original, rewritten, container, reason,
    # decided_by and node
    "rewrite": Event(
        _W,
        "A registration was written with the published address.",
        "A provider registered a container endpoint this host publishes.",
    ),
    "rewrite-in-place": Event(
        _W,
        "An application-level instance's data was rewritten in its provider's own node.",
        "A Dubbo 3 instance registered or updated with its container address (replace mode).",
    ),
    "update": Event(
        _W,
        "A rewritten registration was re-pointed or taken over.",
        "The advertised address or a binding changed, or an earlier run's node "
        "was taken into this session.",
    ),
    "restore": Event(
        _W,
        "A rewritten registration that vanished was created again.",
        "The sidecar's session ended (its ephemeral nodes went with it); its "
        "records name the rewrites whose containers still serve.",
    ),
    "remove": Event(
        _W,
        "A rewritten registration was removed.",
        "Its container stopped, died, paused, turned unhealthy or failed three "
        "probes, or its original is gone.",
    ),
    "drop-original": Event(
        _W,
        "A provider's re-registration of its container address was deleted.",
        "The provider registered again (new session) next to its existing rewrite.",
    ),
    "forget": Event(
        _W,
        "The record of a rewrite was dropped.",
        "The rewrite is gone and should stay gone (its provider deleted it or "
        "registered again, or its container is gone).",
    ),
    "left_alone": Event(
        _W,
        "A registration is not this sidecar's to change; `reason` says "
        "why (once per node and reason).",
        "Unpublished port, address shared "
        "by containers, session not provably from this host, opted out by "
        "label, another host's provider (debug level).",
        "Read `reason`: publish the port, allow `cons` or the AdminServer, "
        "or fix the label it names.",
    ),
    "write_failed": Event(
        _W,
        "A write failed and will be retried with backoff.",
        "ZooKeeper unreachable, or the node changed between read and write.",
        "Nothing if it stops; if it repeats, see `/readyz` and `error`.",
    ),
    "write_denied": Event(
        _W,
        "ZooKeeper refused a write for its ACL (said once per node).",
        "The node's ACL does not let the sidecar's credentials change it.",
        "Give `--zookeeper-auth` the credentials Dubbo registers with.",
    ),
    "write_too_large": Event(
        _W,
        "A transaction would exceed `--jute-maxbuffer`: not sent, the node left alone.",
        "A very large node name or data.",
        "Set `--jute-maxbuffer` to the servers' `jute.maxbuffer`.",
    ),
    "path_not_readable": Event(
        _W,
        "A registry path the credentials may not read is left alone (once per path).",
        "A digest ACL on that path.",
        "Give `--zookeeper-auth`, or leave it if it is not Dubbo's.",
    ),
    "plan_failed": Event(
        _W,
        "Planning one path raised an error (a bug): that path is retried, the others go on.",
        "An unexpected node; the traceback says where.",
        "Report it with the log line.",
    ),
    # -- ZooKeeper
    "kazoo_internals_changed": Event(
        _Z,
        "The installed kazoo differs from the one the sidecar's ZooKeeper fast path was tested "
        "on (`differences` says where): every session uses kazoo's own connection loop, "
        "correct but slower, and a reconnect reads everything again.",
        "kazoo was upgraded outside the release's lock file (e.g. a pip install into the image).",
        "Install the kazoo version the release pins (requirements/runtime.txt).",
    ),
    "zookeeper_connecting": Event(
        _Z, "Connecting to ZooKeeper (`resuming`: the session from the state file).", "Start."
    ),
    "zookeeper_connected": Event(
        _Z,
        "Connected in a new session: a full resync follows.",
        "Start, or the previous session expired.",
    ),
    "zookeeper_resumed": Event(
        _Z,
        "Reconnected in the same session; watches set again.",
        "A server restart or a network blip shorter than the session.",
    ),
    "zookeeper_suspended": Event(
        _Z,
        "Disconnected; the session may still live.",
        "A server or the network went away.",
        "Check the servers and the network if it lasts.",
    ),
    "zookeeper_lost": Event(
        _Z,
        "The session is gone: its rewritten nodes went with it.",
        "Disconnected longer than `--session-timeout`.",
        "Nothing: the next session restores them from the records.",
    ),
    "zookeeper_pass_failed": Event(
        _Z,
        "A pass could not read or write the registry: its work is retried.",
        "Connection loss or a refused request.",
        "Check the servers; `problem` names the error.",
    ),
    "zookeeper_answering": Event(
        _Z, "A pass succeeded again after `zookeeper_pass_failed`.", "The registry answers again."
    ),
    "zookeeper_tls_refused": Event(
        _Z,
        "A connection to ZooKeeper was not made: a TLS file (`setting`) cannot be used now; "
        "`problem` says why (expired, another CA, not the certificate's key, unreadable). "
        "The session lives on while it can; said once per problem.",
        "A certificate or key rotated on disk to one that does not verify, or half written.",
        "Put a certificate that verifies against the CA (and its key) in place: the next "
        "attempt, within seconds, reads the files again.",
    ),
    "zookeeper_tls_handshake_failed": Event(
        _Z,
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
        _Z,
        "The TLS files changed on disk and verify: the connection just made uses them.",
        "A certificate, key or CA bundle rotated (a secret updated in place).",
    ),
    "session_resumed": Event(
        _Z,
        "The ZooKeeper session was recorded in the state file.",
        "A new session (a restart within its timeout resumes it).",
    ),
    "coordination_open": Event(
        _Z,
        "Others than the sidecar's credentials may change its "
        "coordination parents (`nodes`, `writable_by`).",
        "The parents were created with the open ACL.",
        "Run the `setAcl -R` command in `fix`.",
    ),
    "coordination_closed": Event(
        _Z,
        "The coordination parents are closed to others again.",
        "The `fix` of `coordination_open` was applied.",
    ),
    # -- Docker and mappings
    "docker_lost": Event(
        _D,
        "Docker's event stream ended.",
        "dockerd stopped or restarted, or the socket went away.",
        "Check dockerd; the sidecar reconnects.",
    ),
    "docker_unavailable": Event(
        _D,
        "The Docker Engine API does not answer.",
        "No socket, no permission, or dockerd down.",
        "Mount the socket and add its group (`--group-add`), or set `--docker-url`.",
    ),
    "docker_answering": Event(_D, "Docker answers again.", "dockerd is back."),
    "docker_stale": Event(
        _D,
        "Docker is unreachable: nothing is changed until it answers.",
        "The sidecar will not act on stale bindings.",
        "Check dockerd and the socket.",
    ),
    "nat_table_changed": Event(
        _D,
        "The NAT table's DNAT rules were read again and publish other ports: `mappings` counts "
        "them; the registrations they concern are planned again.",
        "A container, pod or rule that publishes a port came or went.",
    ),
    "nat_table_unreadable": Event(
        _D,
        "The NAT table could not be read (`--nat-table`): its last good mappings stay in "
        "force, and /readyz says so; none were read yet at start, nothing is changed.",
        "No `NET_ADMIN` capability, not the host's network namespace, or no `iptables-save` "
        "(`problem` says which).",
        "Run with `--network host` (`hostNetwork: true`) and `--cap-add NET_ADMIN` (and "
        "`NET_RAW` where the legacy back end holds rules), with the `iptables` package "
        "installed; see the NAT table page.",
    ),
    "nat_table_answering": Event(_D, "The NAT table can be read again.", "A read succeeded."),
    "static_mapping_changed": Event(
        _D,
        "The static mapping file's new ports are in force.",
        "The file changed and read the same twice.",
    ),
    "static_mapping_unchanged": Event(
        _D,
        "The static mapping file changed but cannot be used: the earlier mapping stays.",
        "It does not parse, or a port or label is invalid.",
        "Fix the file; `problem` says what.",
    ),
    # -- advertised address
    "address_found": Event(
        _A,
        "The advertised address is known (`address`, `source`).",
        "Start, or a source answered after none did.",
    ),
    "address_changed": Event(
        _A,
        "The advertised address changed: every managed registration is re-pointed.",
        "An `interface:` or `url:` source answered another address.",
    ),
    "advertise_address_unavailable": Event(
        _A,
        "No advertised address source answers: nothing is written until one does.",
        "`HOST_IP` unset and no usable source.",
        "Set `HOST_IP` or `--advertise-host` / `--advertise-from`.",
    ),
    # -- scope, lease and state file
    "scope_chosen": Event(
        _S,
        "The sidecar serves this scope (per-host, or per-app with its container).",
        "Start, or its app's container was found.",
    ),
    "scope_waiting": Event(
        _S,
        "A per-app sidecar has not found its app yet.",
        "The app's container is not running or not detectable.",
        "Start the app, or give `--container`.",
    ),
    "lease_held": Event(
        _S,
        "This sidecar holds its scope's lease and works.",
        "No other live sidecar serves the scope.",
    ),
    "lease_standing_by": Event(
        _S,
        "Another sidecar holds the lease: this one writes nothing until it is gone.",
        "Two sidecars for one scope (a rolling update, or a duplicate).",
        "Nothing for a rolling update; otherwise stop the duplicate.",
    ),
    "state_file_unusable": Event(
        _S,
        "The state file cannot be locked or opened: restarts will not resume the session.",
        "A read-only volume, or another sidecar holds it.",
        "Give each sidecar its own writable `--state-file`.",
    ),
    "state_file_unreadable": Event(
        _S,
        "The state file is partly unreadable: what cannot be read is left out.",
        "A truncated or foreign file.",
        "Nothing: the rewrites are recorded in ZooKeeper.",
    ),
    "state_file_not_written": Event(
        _S,
        "The session could not be written to the state file.",
        "A full or read-only disk.",
        "Fix the volume.",
    ),
    "record <path>_unreadable": Event(
        _S,
        "A record under `/dubbo-nat-sidecar/records` cannot be decoded: left alone.",
        "Written by someone else, or damaged.",
        "Delete the node named if it is junk.",
    ),
    "mirrors_in_use": Event(
        _S,
        "A container's label asks for mirror mode: mirror roots are now read.",
        "Label `dubbo-nat-sidecar.mode=mirror`.",
    ),
    # -- fleet
    "fleet_indexer_elected": Event(
        _F,
        "This sidecar is the fleet's indexer now.",
        "The previous indexer's session ended, or start.",
    ),
    "fleet_node_ignored": Event(
        _F,
        "A node under the fleet's paths is not what a sidecar writes there: ignored.",
        "Written by another client.",
        "Delete it; use `--zookeeper-auth` and close the paths.",
    ),
    "fleet_work_unwritable": Event(
        _F,
        "A member's work could not be written: retried with backoff.",
        "Its work node's ACL or size.",
        "See `problem`; delete a foreign work node.",
    ),
    "fleet_failed": Event(
        _F,
        "This sidecar's part in the fleet failed: retried; its own paths go on.",
        "A ZooKeeper error in the fleet's paths.",
        "See `problem`.",
    ),
    "fleet_answering": Event(
        _F, "The fleet works again after `fleet_failed`.", "The error cleared."
    ),
    # -- proxy mode
    "proxy_client_tls": Event(
        _P,
        "An app began a TLS handshake with the proxy: its connection was closed, and /readyz "
        "says so until a session passes through the proxy again.",
        "The app has its own ZooKeeper TLS settings (e.g. `zookeeper.client.secure=true`) "
        "while the sidecar adds TLS to the ensemble.",
        "Turn the app's ZooKeeper TLS off: it speaks plaintext on loopback to the proxy, "
        "which connects to the ensemble with `--zookeeper-tls-ca` and the client certificate.",
    ),
    "proxy_listening": Event(_P, "The proxy accepts the app's connections.", "Start."),
    "proxy_connection_opened": Event(
        _P, "An app connection was relayed to a server.", "The app's client connected."
    ),
    "proxy_connection_closed": Event(
        _P,
        "An app connection ended (`reason`).",
        "Client or server closed, a malformed frame, the buffer budget, or stop.",
    ),
    "proxy_upstream_unreachable": Event(
        _P,
        "No ZooKeeper server could be reached for an app "
        "connection: it is closed and the client retries.",
        "`--zookeeper` wrong or the servers down.",
        "Check `--zookeeper` and the servers.",
    ),
    "proxy_rewrite": Event(
        _P,
        "An app's write was renamed to its published endpoint.",
        "The app registered one of its endpoints.",
    ),
    "proxy_rewrite_skipped": Event(
        _P,
        "An endpoint of the app could not be published: sent as is.",
        "With `--proxy-pass-unmapped`, or a read.",
        "Publish the port.",
    ),
    "proxy_request_held": Event(
        _P,
        "A write waits for the app's port bindings.",
        "The app and its sidecar started together.",
    ),
    "proxy_request_refused": Event(
        _P,
        "A write that would store a container endpoint was "
        "answered OPERATIONTIMEOUT; the client retries.",
        "The port is not published, or the bindings are not known.",
        "Publish the port (`-p`/`-P`, `hostPort`), check Docker access or the static mapping.",
    ),
    "proxy_repointed": Event(
        _P,
        "An app's live registration moved to its new published endpoint.",
        "The app's mapping or advertised address changed.",
    ),
    "proxy_repoint_failed": Event(
        _P,
        "Re-pointing a registration failed: the app registers it again.",
        "It was gone meanwhile, or its new name taken.",
    ),
    "proxy_stopped": Event(_P, "The proxy stopped listening.", "Shutdown."),
    # -- lifecycle
    "starting": Event(_L, "The sidecar starts (its main settings).", "`dubbo-sidecar run`."),
    "ops_listening": Event(
        _L, "`/healthz`, `/readyz`, `/metrics` listen at `address`.", "Start with `--listen`."
    ),
    "resync_progress": Event(_L, "Progress of a long first read.", "A large registry."),
    "resync_done": Event(
        _L,
        "A resync finished (`kind`, a count per action).",
        "Start, a new session, or the periodic resync.",
    ),
    "pass_crashed": Event(
        _L,
        "A pass raised an unexpected error (a bug); everything is retried.",
        "See the traceback.",
        "Report it.",
    ),
    "shutdown_step_failed": Event(
        _L, "A step of the shutdown failed; the others go on.", "ZooKeeper unreachable at exit."
    ),
    "command_failed": Event(
        _L,
        "`plan` or `status` could not finish (exit 1).",
        "ZooKeeper unreachable, or no advertised address.",
        "See `problem`.",
    ),
    "stopped": Event(_L, "The sidecar stopped.", "SIGTERM or SIGINT."),
    # -- debug level
    "pass_done": Event(_L, "One pass (paths, seconds); debug level.", "Every pass."),
    "pass_skipped": Event(_L, "A pass waited for Docker; debug level.", "Docker unreachable."),
    "container_changed": Event(
        _D, "A container's Docker event; debug level.", "Start, stop, die, pause, health status."
    ),
    "static_mapping_settling": Event(
        _D, "The static file changed; read again before use; debug level.", "An edit of the file."
    ),
    "fleet_indexed": Event(
        _F, "One indexer pass (paths, look-ups, work written); debug level.", "Registry changes."
    ),
}
