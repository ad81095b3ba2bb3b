"""The Kubernetes manifests validate against the schemas (offline) and keep their promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "kubernetes").glob("*.yaml"))


@pytest.mark.timeout(120)
def test_manifests_validate_strictly_against_the_kubernetes_schemas() -> None:
    """kubernetes-validate --strict accepts every manifest, without a cluster."""
    validate = Path(sys.executable).parent / "kubernetes-validate"
    done = subprocess.run(
        [str(validate), "--strict", *map(str, MANIFESTS)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def sidecar_of(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    pod = doc["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if "sidecar" in c["name"]]
    return pod, container


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_sidecar_has_probes_limits_and_no_privileges(manifest: Path) -> None:
    """Probes on /healthz and /readyz, requests and limits, non-root, no escalation, no
    capabilities, read-only root filesystem, and HOST_IP from the downward API."""
    pod, container = sidecar_of(manifest)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    [host_ip] = [e for e in container["env"] if e["name"] == "HOST_IP"]
    assert host_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"


def test_pod_sidecar_maps_the_apps_host_port_statically() -> None:
    """The pod variant reads no Docker socket and maps the app's hostPort."""
    pod, container = sidecar_of(Path(MANIFESTS[0]).with_name("pod-sidecar.yaml"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    [app] = [c for c in pod["containers"] if c["name"] == "app"]
    [port] = app["ports"]
    assert env["DUBBO_SIDECAR_DOCKER_URL"] == "none"
    assert env["DUBBO_SIDECAR_STATIC_PORTS"] == f"{port['containerPort']}:{port['hostPort']}"


def test_daemonset_mounts_the_docker_socket_read_only() -> None:
    """The DaemonSet reads the node's Docker socket through a read-only mount."""
    pod, container = sidecar_of(Path(MANIFESTS[0]).with_name("daemonset.yaml"))
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/docker.sock"]
    assert mount["readOnly"] is True
    assert pod["hostNetwork"] is True
