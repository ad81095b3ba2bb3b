"""Log events of the sidecar's own operation: scope, lease and state file, the fleet, proxy
mode, lifecycle."""

from __future__ import annotations

from sidecar.report.catalogue.entry import DOCKER, FLEET, LIFECYCLE, PROXY, SCOPE, Event

EVENTS: dict[str, Event] = {
    # -- scope, lease and state file
    "scope_chosen": Event(
        SCOPE,
        "The sidecar serves this scope (per-host, or per-app with its container).",
        "Start, or its app's container was found.",
    ),
    "scope_waiting": Event(
        SCOPE,
        "A per-app sidecar has not found its app yet.",
        "The app's container is not running or not detectable.",
        "Start the app, or give `--container`.",
    ),
    "lease_held": Event(
        SCOPE,
        "This sidecar holds its scope's lease and works.",
        "No other live sidecar serves the scope.",
    ),
    "lease_standing_by": Event(
        SCOPE,
        "Another sidecar holds the lease: this one writes nothing until it is gone.",
        "Two sidecars for one scope (a rolling update, or a duplicate).",
        "Nothing for a rolling update; otherwise stop the duplicate.",
    ),
    "state_file_unusable": Event(
        SCOPE,
        "The state file cannot be locked or opened: restarts will not resume the session.",
        "A read-only volume, or another sidecar holds it.",
        "Give each sidecar its own writable `--state-file`.",
    ),
    "state_file_unreadable": Event(
        SCOPE,
        "The state file is partly unreadable: what cannot be read is left out.",
        "A truncated or foreign file.",
        "Nothing: the rewrites are recorded in ZooKeeper.",
    ),
    "state_file_not_written": Event(
        SCOPE,
        "The session could not be written to the state file.",
        "A full or read-only disk.",
        "Fix the volume.",
    ),
    "record <path>_unreadable": Event(
        SCOPE,
        "A record under `/dubbo-nat-sidecar/records` cannot be decoded: left alone.",
        "Written by someone else, or damaged.",
        "Delete the node named if it is junk.",
    ),
    "mirrors_in_use": Event(
        SCOPE,
        "A container's label asks for mirror mode: mirror roots are now read.",
        "Label `dubbo-nat-sidecar.mode=mirror`.",
    ),
    # -- fleet
    "fleet_indexer_elected": Event(
        FLEET,
        "This sidecar is the fleet's indexer now.",
        "The previous indexer's session ended, or start.",
    ),
    "fleet_node_ignored": Event(
        FLEET,
        "A node under the fleet's paths is not what a sidecar writes there: ignored.",
        "Written by another client.",
        "Delete it; use `--zookeeper-auth` and close the paths.",
    ),
    "fleet_work_unwritable": Event(
        FLEET,
        "A member's work could not be written: retried with backoff.",
        "Its work node's ACL or size.",
        "See `problem`; delete a foreign work node.",
    ),
    "fleet_failed": Event(
        FLEET,
        "This sidecar's part in the fleet failed: retried; its own paths go on.",
        "A ZooKeeper error in the fleet's paths.",
        "See `problem`.",
    ),
    "fleet_answering": Event(
        FLEET, "The fleet works again after `fleet_failed`.", "The error cleared."
    ),
    # -- proxy mode
    "proxy_client_tls": Event(
        PROXY,
        "An app began a TLS handshake with the proxy: its connection was closed, and /readyz "
        "says so until a session passes through the proxy again.",
        "The app has its own ZooKeeper TLS settings (e.g. `zookeeper.client.secure=true`) "
        "while the sidecar adds TLS to the ensemble.",
        "Turn the app's ZooKeeper TLS off: it speaks plaintext on loopback to the proxy, "
        "which connects to the ensemble with `--zookeeper-tls-ca` and the client certificate.",
    ),
    "proxy_listening": Event(PROXY, "The proxy accepts the app's connections.", "Start."),
    "proxy_connection_opened": Event(
        PROXY, "An app connection was relayed to a server.", "The app's client connected."
    ),
    "proxy_connection_closed": Event(
        PROXY,
        "An app connection ended (`reason`).",
        "Client or server closed, a malformed frame, the buffer budget, or stop.",
    ),
    "proxy_upstream_unreachable": Event(
        PROXY,
        "No ZooKeeper server could be reached for an app "
        "connection: it is closed and the client retries.",
        "`--zookeeper` wrong or the servers down.",
        "Check `--zookeeper` and the servers.",
    ),
    "proxy_rewrite": Event(
        PROXY,
        "An app's write was renamed to its published endpoint.",
        "The app registered one of its endpoints.",
    ),
    "proxy_rewrite_skipped": Event(
        PROXY,
        "An endpoint of the app could not be published: sent as is.",
        "With `--proxy-pass-unmapped`, or a read.",
        "Publish the port.",
    ),
    "proxy_request_held": Event(
        PROXY,
        "A write waits for the app's port bindings.",
        "The app and its sidecar started together.",
    ),
    "proxy_request_refused": Event(
        PROXY,
        "A write that would store a container endpoint was "
        "answered OPERATIONTIMEOUT; the client retries.",
        "The port is not published, or the bindings are not known.",
        "Publish the port (`-p`/`-P`, `hostPort`), check Docker access or the static mapping.",
    ),
    "proxy_repointed": Event(
        PROXY,
        "An app's live registration moved to its new published endpoint.",
        "The app's mapping or advertised address changed.",
    ),
    "proxy_repoint_failed": Event(
        PROXY,
        "Re-pointing a registration failed: the app registers it again.",
        "It was gone meanwhile, or its new name taken.",
    ),
    "proxy_stopped": Event(PROXY, "The proxy stopped listening.", "Shutdown."),
    # -- lifecycle
    "starting": Event(LIFECYCLE, "The sidecar starts (its main settings).", "`dubbo-sidecar run`."),
    "ops_listening": Event(
        LIFECYCLE,
        "`/healthz`, `/readyz`, `/metrics` listen at `address`.",
        "Start with `--listen`.",
    ),
    "resync_progress": Event(LIFECYCLE, "Progress of a long first read.", "A large registry."),
    "resync_done": Event(
        LIFECYCLE,
        "A resync finished (`kind`, a count per action).",
        "Start, a new session, or the periodic resync.",
    ),
    "pass_crashed": Event(
        LIFECYCLE,
        "A pass raised an unexpected error (a bug); everything is retried.",
        "See the traceback.",
        "Report it.",
    ),
    "shutdown_step_failed": Event(
        LIFECYCLE,
        "A step of the shutdown failed; the others go on.",
        "ZooKeeper unreachable at exit.",
    ),
    "command_failed": Event(
        LIFECYCLE,
        "`plan` or `status` could not finish (exit 1).",
        "ZooKeeper unreachable, or no advertised address.",
        "See `problem`.",
    ),
    "stopped": Event(LIFECYCLE, "The sidecar stopped.", "SIGTERM or SIGINT."),
    # -- debug level
    "pass_done": Event(LIFECYCLE, "One pass (paths, seconds); debug level.", "Every pass."),
    "pass_skipped": Event(
        LIFECYCLE, "A pass waited for Docker; debug level.", "Docker unreachable."
    ),
    "container_changed": Event(
        DOCKER,
        "A container's Docker event; debug level.",
        "Start, stop, die, pause, health status.",
    ),
    "static_mapping_settling": Event(
        DOCKER,
        "The static file changed; read again before use; debug level.",
        "An edit of the file.",
    ),
    "fleet_indexed": Event(
        FLEET, "One indexer pass (paths, look-ups, work written); debug level.", "Registry changes."
    ),
}
