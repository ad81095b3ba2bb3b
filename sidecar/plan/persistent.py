"""Persistent registrations (no session shows which host wrote them): a container's only when
its label ``dubbo-nat-sidecar.persistent-application`` names their application.

A persistent node (``ephemeralOwner`` 0: Dubbo's ``dynamic=false``, dubbo-py) carries no
session whose origin the servers could tell, and container addresses repeat across hosts.
So the operator vouches for it: persistent registrations of a labelled container's endpoint
whose ``application`` (URL parameter; an instance's ``name``) equals the label's value are
that container's. Everything else stays as it was:

- another application's registration at the same address (a replica elsewhere) is refused;
- two persistent registrations of the same service (protocol, path, interface, group,
  version) at the same endpoint and application are ambiguous and both refused: one process
  registers a service once, so at most one of them is this container's, and nothing tells
  which (the other is a replica on another host with the same container address, or one
  left behind by a provider that crashed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from sidecar import labels
from sidecar.mapping import Mapped
from sidecar.model import Endpoint, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan.kinds import Kind
from sidecar.plan.parsing import Parsed

# What one provider registers once: its endpoint, its service and its application.
Claim = tuple[Endpoint, tuple[str, ...] | None, str]


def claimed_application(found: Mapped) -> str | None:
    """The application whose persistent registrations the container's label claims."""
    return found.persistent_application


def application_of(parsed: Parsed) -> str:
    """The application a registration names: its URL's parameter, or its instance's name."""
    if parsed.instance is not None:
        return parsed.instance.application
    return dict(parsed.url.parameters).get("application", "") if parsed.url else ""


def claims(
    nodes: Iterable[RegistryNode], kind: Kind, markers: Mapping[str, Marker | None]
) -> Counter[Claim]:
    """How many persistent original registrations of one path make each claim."""
    found: Counter[Claim] = Counter()
    for node in nodes:
        if node.owner != 0 or markers.get(node.name) is not None:
            continue
        parsed = kind.parse(node.name, node.data)
        if isinstance(parsed, Parsed):
            found[(parsed.endpoint, parsed.service, application_of(parsed))] += 1
    return found


def refusal(parsed: Parsed, found: Mapped, path_claims: Mapping[Claim, int]) -> str | None:
    """Why a persistent registration of ``parsed`` is not ``found.container``'s (None: it is)."""
    wanted = claimed_application(found)
    if wanted is None:
        return (
            "persistent node: no session shows which host registered it (label "
            f"{labels.PERSISTENT_APPLICATION}=<application> on its container claims them)"
        )
    application = application_of(parsed)
    if application != wanted:
        return (
            f"persistent node of application {application[:200]!r}: label "
            f"{labels.PERSISTENT_APPLICATION} claims {wanted[:200]!r} only"
        )
    count = path_claims.get((parsed.endpoint, parsed.service, application), 0)
    if count > 1:
        return (
            f"{count} persistent registrations of this service by {application[:200]!r} claim "
            f"{parsed.endpoint}: ambiguous (a replica elsewhere with the same container address, "
            "or one left by a crashed provider), all left alone"
        )
    return None
