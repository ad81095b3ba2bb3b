"""Per-container labels and the advertised address's sources, on a real engine and registry."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.consumer import ProvidersWatch
from testbed.metadata import MetadataService
from testbed.networks import published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess

from .helpers import children, get, original_name, pong

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
PREFIX = "dubbo-nat-sidecar."


def at(provider: Container, host: str, port: int | None = None) -> str:
    """The provider's registration as it would read with ``host`` and ``port``."""
    endpoint = Endpoint(host, port or published_port(provider, "20880/tcp"))
    return urls.parse(original_name(provider)).with_endpoint(endpoint)


def test_labels_steer_single_containers(
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """One sidecar, four labelled providers: one advertised at its own host and external
    port, one opted out, one with a label the sidecar cannot follow (left alone, reported),
    one mirrored instead of replaced. Each decision names the labels behind it."""
    nat = start_provider(labels={f"{PREFIX}advertise-host": "127.0.0.3",
                                 f"{PREFIX}port.20880": "31000"})  # fmt: skip
    opted_out = start_provider(labels={f"{PREFIX}enable": "false"})
    typo = start_provider(labels={f"{PREFIX}port.20880": "http"})
    mirrored = start_provider(labels={f"{PREFIX}mode": "mirror"})
    sidecar = start_sidecar("--mirror-root", f"{root}-external")
    mirror_path = f"{root}-external/com.example.DemoService/providers"

    expected = sorted(
        [at(nat, "127.0.0.3", 31000), original_name(opted_out), original_name(typo),
         original_name(mirrored)]
    )  # fmt: skip
    wait_until(lambda: children(registry, providers) == expected, 10, message="not as labelled")
    wait_until(lambda: children(registry, mirror_path) == [at(mirrored, "127.0.0.1")], 10,
               message="not mirrored")  # fmt: skip

    rewrites = {e["container"]: e for e in sidecar.logged("rewrite", count=2)}
    assert rewrites[nat.name]["decided_by"] == (
        f"per-host, label {PREFIX}advertise-host, label {PREFIX}port.20880"
    )
    assert rewrites[mirrored.name]["decided_by"] == (
        f"per-host, address from --advertise-host, label {PREFIX}mode=mirror"
    )
    left = {e["container"]: e["reason"] for e in sidecar.events("left_alone")}
    assert left[opted_out.name] == f"opted out by label {PREFIX}enable=false"
    assert (
        left[typo.name] == f"label {PREFIX}port.20880: 'http' is not a port (1-65535): left alone"
    )


def test_the_advertised_address_follows_a_metadata_url(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """--advertise-from url:… reads the address from a metadata endpoint; when it changes,
    the registration is re-pointed in one transaction (a watching consumer always sees
    exactly one provider) and the change is logged once."""
    with MetadataService("127.0.0.1") as metadata:
        provider = start_provider()
        sidecar = start_sidecar(
            "--advertise-from", f"url:{metadata.url}", "--advertise-refresh-seconds", "1",
            advertise_host=None,
        )  # fmt: skip
        wait_until(lambda: children(registry, providers) == [at(provider, "127.0.0.1")], 5,
                   message="not rewritten")  # fmt: skip
        watch = ProvidersWatch(registry, providers)

        metadata.address = "127.0.0.2"
        wait_until(lambda: children(registry, providers) == [at(provider, "127.0.0.2")], 10,
                   message="not re-pointed at the new address")  # fmt: skip
        [update] = sidecar.logged("update")
        assert update["decided_by"] == f"per-host, address from url:{metadata.url}"
        seen = metadata.gets()
        wait_until(lambda: metadata.gets() >= seen + 2, 10, message="not read again")
        [changed] = sidecar.events("address_changed")
        assert (changed["before"], changed["address"]) == ("127.0.0.1", "127.0.0.2")
        assert all(len(names) == 1 for names in watch.lists())
        port = published_port(provider, "20880/tcp")
        assert pong("127.0.0.2", port).startswith("pong ")


def test_a_metadata_service_down_at_start_and_asking_for_a_session_token(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """While no source answers the sidecar changes nothing and says why (not ready); once
    the metadata service is back, and demands an IMDSv2 session token, the token is fetched
    and the registration rewritten."""
    with MetadataService("127.0.0.1", require_token=True) as metadata:
        metadata.failing = True
        provider = start_provider()
        sidecar = start_sidecar(
            "--advertise-from", f"url:{metadata.url}", advertise_host=None, ready=False
        )
        problem = sidecar.wait_for_event("advertise_address_unavailable")
        assert problem["problem"] == f"url:{metadata.url}: HTTP 500"

        def waiting() -> bool:
            status, body = get(f"{sidecar.ops_url}/readyz")
            return status == 503 and any(
                r.startswith("no advertised address") for r in json.loads(body)["reasons"]
            )

        wait_until(waiting, 5, message="/readyz did not say what it waits for")
        assert children(registry, providers) == [original_name(provider)]

        metadata.failing = False
        wait_until(lambda: children(registry, providers) == [at(provider, "127.0.0.1")], 10,
                   message="not rewritten once the metadata service answered")  # fmt: skip
        assert "PUT /latest/api/token" in metadata.requests
        assert sidecar.events("address_found")
