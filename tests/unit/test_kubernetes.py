"""The Kubernetes overlays render with kustomize, validate against the schemas (offline) and
keep their promises: the image of this release set in one place, pods locked down, each
privilege one flavour needs and no other."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import sidecar

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
IMAGE = "ghcr.io/dubbo-nat-sidecar/dubbo-nat-sidecar"
STATE_DIR = "/var/lib/dubbo-nat-sidecar"
# Each flavour's containers that run the sidecar's image: (uid, capabilities added).
PER_HOST = {"dubbo-nat-sidecar": (10001, []), "state-dir": (0, ["CHOWN"])}
SIDECARS: dict[str, dict[str, tuple[int, list[str]]]] = {
    "pod-sidecar": {"dubbo-sidecar": (10001, [])},
    "proxy": {"dubbo-sidecar": (10001, [])},
    "proxy-capture": {"dubbo-sidecar": (0, ["NET_ADMIN"])},
    "daemonset": PER_HOST,
    "daemonset-tls": PER_HOST,
    "fleet": PER_HOST,
    "daemonset-nat": {"dubbo-nat-sidecar": (0, ["NET_ADMIN"])},
}
OVERLAYS = sorted(SIDECARS)
IN_APP_POD = ["pod-sidecar", "proxy", "proxy-capture"]
PROXIES = ["proxy", "proxy-capture"]
DAEMONSETS = ["daemonset", "daemonset-tls", "fleet"]


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of the overlay, as the objects it renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: scripts/bootstrap installs Debian's kubernetes-client")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tuple(yaml.safe_load_all(done.stdout))


def workload(overlay: str) -> dict[str, Any]:
    [found] = [o for o in rendered(overlay) if o["kind"] in ("Deployment", "DaemonSet")]
    return found


def pod_of(overlay: str) -> dict[str, Any]:
    pod: dict[str, Any] = workload(overlay)["spec"]["template"]["spec"]
    return pod


def containers_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def sidecar_of(overlay: str) -> dict[str, Any]:
    """The long-running sidecar container (not the DaemonSet's state-directory step)."""
    [found] = [c for c in containers_of(pod_of(overlay)) if c["name"] in
               ("dubbo-sidecar", "dubbo-nat-sidecar")]  # fmt: skip
    return found


def env_of(overlay: str, container: dict[str, Any]) -> dict[str, Any]:
    """The container's environment: its ConfigMaps' data, then its own values."""
    maps = {o["metadata"]["name"]: o["data"] for o in rendered(overlay) if o["kind"] == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    return env | {e["name"]: e.get("value") for e in container.get("env", [])}


def security_of(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The security settings in force for a container: the pod's, overridden by its own."""
    return {**pod.get("securityContext", {}), **container.get("securityContext", {})}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("version", [kubernetes_validate.latest_version(), "1.29.0"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_validate_strictly_against_the_kubernetes_schemas(
    overlay: str, version: str
) -> None:
    """Every object each overlay renders is valid Kubernetes, unknown fields rejected, on the
    latest release and on 1.29, the first to run native sidecars (the proxy pods') by
    default."""
    for obj in rendered(overlay):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_sidecar_runs_this_releases_image_named_in_one_place(overlay: str) -> None:
    """The sidecar's containers run the image tagged with the package's version, and only
    the base kustomization names it, so `kustomize edit set image` there changes every
    flavour."""
    pod = pod_of(overlay)
    ours = {c["name"]: c["image"] for c in containers_of(pod) if c["image"].startswith(IMAGE)}
    assert ours == dict.fromkeys(SIDECARS[overlay], f"{IMAGE}:{sidecar.__version__}")
    naming = [p.relative_to(DEPLOY) for p in DEPLOY.rglob("*.yaml") if IMAGE in p.read_text()]
    assert naming == [Path("base/kustomization.yaml")]
    [entry] = yaml.safe_load((DEPLOY / "base/kustomization.yaml").read_text())["images"]
    assert entry == {"name": "dubbo-nat-sidecar", "newName": IMAGE, "newTag": sidecar.__version__}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_with_only_the_privileges_their_flavour_needs(
    overlay: str,
) -> None:
    """No API token, the runtime's seccomp profile, no escalation and a read-only root file
    system; the sidecar's containers as uid 10001 without capabilities, except the capture
    sidecar and the NAT table's DaemonSet (uid 0, NET_ADMIN) and the DaemonSet's
    state-directory step (uid 0, CHOWN); every other container non-root."""
    pod = pod_of(overlay)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers_of(pod):
        security = security_of(pod, container)
        if container["name"] not in SIDECARS[overlay]:
            assert security["runAsNonRoot"] is True, container["name"]
            continue
        uid, added = SIDECARS[overlay][container["name"]]
        assert security["runAsUser"] == uid
        assert security["runAsNonRoot"] is (uid != 0)
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"], **({"add": added} if added else {})}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sidecar_has_probes_limits_a_writable_state_dir_and_the_nodes_address(
    overlay: str,
) -> None:
    """Probes on /healthz and /readyz, requests and limits on every container of the image,
    its state directory a volume (the root file system is read-only), HOST_IP from the
    downward API and ZooKeeper's address from the generated settings."""
    pod = pod_of(overlay)
    container = sidecar_of(overlay)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for ours in (c for c in containers_of(pod) if c["name"] in SIDECARS[overlay]):
        assert set(ours["resources"]) == {"requests", "limits"}
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == STATE_DIR]
    assert mount["name"] in {v["name"] for v in pod["volumes"]}
    [host_ip] = [e for e in container["env"] if e["name"] == "HOST_IP"]
    assert host_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env_of(overlay, container)["DUBBO_SIDECAR_ZOOKEEPER"].endswith(":2181")


@pytest.mark.parametrize("overlay", IN_APP_POD)
def test_pod_sidecar_maps_the_apps_host_port_statically(overlay: str) -> None:
    """The pod variants read no Docker socket, map the app's hostPort and keep their state
    for the pod's life."""
    pod = pod_of(overlay)
    env = env_of(overlay, sidecar_of(overlay))
    [app] = [c for c in pod["containers"] if c["name"] == "app"]
    [port] = app["ports"]
    assert env["DUBBO_SIDECAR_DOCKER_URL"] == "none"
    assert env["DUBBO_SIDECAR_STATIC_PORTS"] == f"{port['containerPort']}:{port['hostPort']}"
    assert [v for v in pod["volumes"] if "hostPath" in v] == []


@pytest.mark.parametrize("overlay", PROXIES)
def test_proxy_pod_starts_the_app_once_the_proxy_listens(overlay: str) -> None:
    """The sidecar is a native sidecar whose startup probe passes once the proxy listens
    (and captures); the app dials the proxy, or, under capture, keeps ZooKeeper's address
    and its port is the one captured."""
    pod = pod_of(overlay)
    container = sidecar_of(overlay)
    assert container in pod["initContainers"]
    assert container["restartPolicy"] == "Always"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(overlay, container)
    [app] = [c for c in pod["containers"] if c["name"] == "app"]
    registry = env_of(overlay, app)["DUBBO_REGISTRY_ADDRESS"].removeprefix("zookeeper://")
    if overlay == "proxy-capture":
        assert registry == env["DUBBO_SIDECAR_ZOOKEEPER"]
        assert env["DUBBO_SIDECAR_PROXY_CAPTURE"] == registry.rpartition(":")[2]
        assert env["DUBBO_SIDECAR_PROXY_LISTEN"] != registry
    else:
        assert registry == env["DUBBO_SIDECAR_PROXY_LISTEN"]
        assert "DUBBO_SIDECAR_PROXY_CAPTURE" not in env


@pytest.mark.parametrize("overlay", DAEMONSETS)
def test_daemonset_runs_on_every_node_reading_the_docker_socket(overlay: str) -> None:
    """The per-node sidecar tolerates every taint, has the node-critical priority, is
    scraped by Prometheus on its ops port, shares the node's network, reads the Docker
    socket read-only as a member of its group, and keeps its state on the node in a
    directory handed to its user; the fleet flavour alone runs with --fleet."""
    pod = pod_of(overlay)
    container = sidecar_of(overlay)
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    annotations = workload(overlay)["spec"]["template"]["metadata"]["annotations"]
    [ops] = container["ports"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                           "prometheus.io/port": str(ops["containerPort"])}  # fmt: skip
    assert pod["hostNetwork"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/run/docker.sock"]["readOnly"] is True
    assert pod["securityContext"]["supplementalGroups"] == [999]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[STATE_DIR]["name"]]["hostPath"]["path"] == STATE_DIR
    [step] = pod["initContainers"]
    assert step["command"] == ["chown", "10001:10001", STATE_DIR]
    assert [m["mountPath"] for m in step["volumeMounts"]] == [STATE_DIR]
    assert ("--fleet" in container["args"]) is (overlay == "fleet")


def test_docker_socket_group_is_one_setting() -> None:
    """The group of the nodes' Docker socket is written in one file, which both per-node
    flavours render."""
    setting = [p.relative_to(DEPLOY) for p in DEPLOY.rglob("*.yaml")
               if "supplementalGroups:" in p.read_text()]  # fmt: skip
    assert setting == [Path("overlays/daemonset/docker-socket-group.yaml")]


def test_tls_files_come_from_a_secret_mounted_whole_for_rotation() -> None:
    """The TLS overlay gives the sidecar the CA, certificate and key of one Secret, mounted
    as a directory (a subPath mount would never see the Secret updated), readable by the
    sidecar's group and by no one else."""
    pod = pod_of("daemonset-tls")
    [container] = [c for c in pod["containers"] if c["name"] == "dubbo-nat-sidecar"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "zookeeper-tls"]
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    for setting, name in (("CA", "ca.crt"), ("CERT", "tls.crt"), ("KEY", "tls.key")):
        assert env[f"DUBBO_SIDECAR_ZOOKEEPER_TLS_{setting}"] == f"{mount['mountPath']}/{name}"
    [volume] = [v for v in pod["volumes"] if v["name"] == "zookeeper-tls"]
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]


def test_nat_daemonset_reads_the_nodes_nat_table_without_a_docker_socket() -> None:
    """The DaemonSet for containerd and CRI-O nodes runs on every node in the node's network
    namespace, maps from the NAT table with no Docker socket, no host path but its state
    directory, and no step but the sidecar."""
    pod = pod_of("daemonset-nat")
    container = sidecar_of("daemonset-nat")
    assert pod["hostNetwork"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert "initContainers" not in pod
    assert "supplementalGroups" not in pod["securityContext"]
    assert [v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v] == [STATE_DIR]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [STATE_DIR]
    assert {"--docker-url=none", "--nat-table"} <= set(container["args"])
