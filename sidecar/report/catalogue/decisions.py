"""Log events of decisions: one line per write or refusal."""

from __future__ import annotations

from sidecar.report.catalogue.entry import DECISIONS, Event

EVENTS: dict[str, Event] = {
    # -- decisions: one line per write, with interface, original, rewritten, container, reason,
    # decided_by and node
    "rewrite": Event(
        DECISIONS,
        "A registration was written with the published address.",
        "A provider registered a container endpoint this host publishes.",
    ),
    "rewrite-in-place": Event(
        DECISIONS,
        "An application-level instance's data was rewritten in its provider's own node.",
        "A Dubbo 3 instance registered or updated with its container address (replace mode).",
    ),
    "update": Event(
        DECISIONS,
        "A rewritten registration was re-pointed or taken over.",
        "The advertised address or a binding changed, or an earlier run's node "
        "was taken into this session.",
    ),
    "restore": Event(
        DECISIONS,
        "A rewritten registration that vanished was created again.",
        "The sidecar's session ended (its ephemeral nodes went with it); its "
        "records name the rewrites whose containers still serve.",
    ),
    "remove": Event(
        DECISIONS,
        "A rewritten registration was removed.",
        "Its container stopped, died, paused, turned unhealthy or failed three "
        "probes, or its original is gone.",
    ),
    "drop-original": Event(
        DECISIONS,
        "A provider's re-registration of its container address was deleted.",
        "The provider registered again (new session) next to its existing rewrite.",
    ),
    "forget": Event(
        DECISIONS,
        "The record of a rewrite was dropped.",
        "The rewrite is gone and should stay gone (its provider deleted it or "
        "registered again, or its container is gone).",
    ),
    "left_alone": Event(
        DECISIONS,
        "A registration is not this sidecar's to change; `reason` says "
        "why (once per node and reason).",
        "Unpublished port, address shared "
        "by containers, session not provably from this host, opted out by "
        "label, another host's provider (debug level).",
        "Read `reason`: publish the port, allow `cons` or the AdminServer, "
        "or fix the label it names.",
    ),
    "write_failed": Event(
        DECISIONS,
        "A write failed and will be retried with backoff.",
        "ZooKeeper unreachable, or the node changed between read and write.",
        "Nothing if it stops; if it repeats, see `/readyz` and `error`.",
    ),
    "write_denied": Event(
        DECISIONS,
        "ZooKeeper refused a write for its ACL (said once per node).",
        "The node's ACL does not let the sidecar's credentials change it.",
        "Give `--zookeeper-auth` the credentials Dubbo registers with.",
    ),
    "write_too_large": Event(
        DECISIONS,
        "A transaction would exceed `--jute-maxbuffer`: not sent, the node left alone.",
        "A very large node name or data.",
        "Set `--jute-maxbuffer` to the servers' `jute.maxbuffer`.",
    ),
    "path_not_readable": Event(
        DECISIONS,
        "A registry path the credentials may not read is left alone (once per path).",
        "A digest ACL on that path.",
        "Give `--zookeeper-auth`, or leave it if it is not Dubbo's.",
    ),
    "plan_failed": Event(
        DECISIONS,
        "Planning one path raised an error (a bug): that path is retried, the others go on.",
        "An unexpected node; the traceback says where.",
        "Report it with the log line.",
    ),
}
