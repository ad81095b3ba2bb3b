"""The Kubernetes manifests validate against the schemas (offline) and keep their promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
PODS = sorted(DEPLOY.glob("pod-*.yaml"))  # the sidecar in the app's pod, no Docker socket
PROXIES = sorted(DEPLOY.glob("pod-proxy*.yaml"))
CAPTURE = DEPLOY / "pod-proxy-capture.yaml"


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    validate = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(validate), "--strict", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_manifests_validate_strictly_against_the_kubernetes_schemas() -> None:
    """kubernetes-validate --strict accepts every manifest, without a cluster."""
    done = validate(*map(str, MANIFESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_proxy_pods_validate_on_the_first_release_with_native_sidecars() -> None:
    """The proxy pods' sidecar is an init container that keeps running, which Kubernetes
    1.29 is the first to accept (by default)."""
    done = validate("--kubernetes-version", "1.29.0", *map(str, PROXIES))
    assert done.returncode == 0, done.stdout + done.stderr


def sidecar_of(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    pod = doc["spec"]["template"]["spec"]
    every = [*pod.get("initContainers", []), *pod["containers"]]
    [container] = [c for c in every if "sidecar" in c["name"]]
    return pod, container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_sidecar_has_probes_limits_and_no_privileges(manifest: Path) -> None:
    """Probes on /healthz and /readyz, requests and limits, no escalation, read-only root
    filesystem, HOST_IP from the downward API; non-root without capabilities, except the
    capture sidecar: root with NET_ADMIN and nothing else (what iptables needs)."""
    pod, container = sidecar_of(manifest)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    if manifest == CAPTURE:
        assert security["runAsUser"] == 0
        assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    else:
        assert security["runAsNonRoot"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
    [host_ip] = [e for e in container["env"] if e["name"] == "HOST_IP"]
    assert host_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"


@pytest.mark.parametrize("manifest", PODS, ids=lambda p: p.name)
def test_pod_sidecar_maps_the_apps_host_port_statically(manifest: Path) -> None:
    """The pod variants read no Docker socket and map the app's hostPort."""
    pod, container = sidecar_of(manifest)
    env = env_of(container)
    [app] = [c for c in pod["containers"] if c["name"] == "app"]
    [port] = app["ports"]
    assert env["DUBBO_SIDECAR_DOCKER_URL"] == "none"
    assert env["DUBBO_SIDECAR_STATIC_PORTS"] == f"{port['containerPort']}:{port['hostPort']}"


@pytest.mark.parametrize("manifest", PROXIES, ids=lambda p: p.name)
def test_proxy_pod_starts_the_app_once_the_proxy_listens(manifest: Path) -> None:
    """The sidecar is a native sidecar whose startup probe passes once the proxy listens
    (and captures); the app dials the proxy, or, under capture, keeps ZooKeeper's address
    and its port is the one captured."""
    pod, container = sidecar_of(manifest)
    assert container in pod["initContainers"]
    assert container["restartPolicy"] == "Always"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(container)
    [app] = [c for c in pod["containers"] if c["name"] == "app"]
    registry = env_of(app)["DUBBO_REGISTRY_ADDRESS"].removeprefix("zookeeper://")
    if manifest == CAPTURE:
        assert registry == env["DUBBO_SIDECAR_ZOOKEEPER"]
        assert env["DUBBO_SIDECAR_PROXY_CAPTURE"] == registry.rpartition(":")[2]
    else:
        assert registry == env["DUBBO_SIDECAR_PROXY_LISTEN"]
        assert "DUBBO_SIDECAR_PROXY_CAPTURE" not in env


def test_daemonset_mounts_the_docker_socket_read_only() -> None:
    """The DaemonSet reads the node's Docker socket through a read-only mount."""
    pod, container = sidecar_of(DEPLOY / "daemonset.yaml")
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/docker.sock"]
    assert mount["readOnly"] is True
    assert pod["hostNetwork"] is True
