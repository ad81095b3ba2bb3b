"""The run loop: sources mark work dirty, one thread observes, plans and applies.

    wiring.py       one assembly of every component, for run and for plan/status
    loop.py         the loop thread: waits for work, the periodic resync, graceful stop
    reconcile.py    one pass: sources' reports, containers, lease, then observe -> plan -> apply
    roles.py        what differs between modes (watching, fleet member, proxy, observer): one
                    role chosen in the wiring, asked by every pass
    dirty.py        what the sources report, collected for the next pass
    retries.py      failed scopes read again with backoff
    inventory.py    the container inventory (Docker, static mapping, probes) for the planner
    lease.py        the scope served and the lease that makes this sidecar its only server
    memory.py       the rewrites this sidecar manages, and which sessions claim each endpoint
    paths.py        the roots, their mirrors, the paths known, the periodic sweep
    observe.py      the observe step: reads paths and session origins (I/O only)
    apply.py        the apply step: every write, its outcome reported
    persistence.py  the state file: the session to resume
    status.py       the status view of what this engine's sidecars manage
    seams.py        the protocols where the loop meets the registry and the engine

Threads (docs/architecture.md has the picture):

- main: parses the command line, starts the loop thread, turns SIGTERM/SIGINT into
  Loop.stop(), waits.
- reconcile (the loop): owns every component above; the only thread that reads Docker's
  listings, plans or writes ZooKeeper.
- kazoo's connection and callback threads: watch callbacks and the connection listener
  call Dirty.path_changed / Dirty.connection_changed, nothing else.
- docker-events (sources/docker.py DockerWatch): Dirty.container_changed,
  Dirty.docker_subscribed, Dirty.docker_lost.
- static-mapping (sources/static.py StaticWatch): Dirty.static_changed.
- advertise-address (sources/address.py AddressWatch): Dirty.address_found with the new
  value, Dirty.address_unavailable.
- probe and its workers (sources/probe.py): Dirty.endpoint_changed; the loop reads
  Prober.unreachable() and sets the targets with Prober.watch() (both under its lock).
- ops HTTP (ops/server.py): reads Loop.not_ready() (the registry's connection state and the
  tuple the loop publishes after each pass) and the metrics.
- zookeeper-close (at exit, bounded): closes the session when asked to.
"""
