"""The run loop: sources mark work dirty, one thread observes, plans and applies.

    wiring.py       one assembly of every component, for run and for plan/status
    components.py   what one pass drives, built once the engine's identity is known
    loop.py         the loop thread: waits for work, the periodic resync, graceful stop
    reconcile.py    one pass: sources' reports, containers, lease, then observe -> plan -> apply
    roles.py        what differs between modes (watching, fleet member, proxy, observer): one
                    role chosen in the wiring, asked by every pass
    pick.py         which paths a pass reads
    dirty.py        what the sources report, collected for the next pass
    retries.py      failed scopes read again with backoff
    inventory.py    the container inventory (Docker, static mapping, NAT table, probes)
    lease.py        the scope served and the lease that makes this sidecar its only server
    memory.py       the rewrites this sidecar manages, and which sessions claim each endpoint
    paths.py        the roots, their mirrors, the paths known, the periodic sweep
    observe.py      the observe step: reads paths and session origins (I/O only)
    apply.py        the apply step: every write the plan decides, its outcome reported
    acl_check.py    whether others may change the sidecar's coordination nodes
    liveness.py     whether passes make progress (/healthz)
    persistence.py  the state file: the session to resume
    status.py       the status view of what this engine's sidecars manage

Threads, and who writes to ZooKeeper: docs/architecture.md ("Threads", "Writers").
"""
