"""`scripts/demo` (README, "Developing"): the main job, end to end, on local ZooKeeper and Docker.

A provider in a container registers its container address; a consumer that plays a remote
host (container networks blocked for it) fails; the sidecar rewrites the registration; the
same consumer succeeds; the container stops and the registration goes away.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from testbed import provider as provider_script
from testbed.consumer import run_as_group
from testbed.engine import RUN_LABEL, DockerEngine, ensure_docker_engine, remove_labelled
from testbed.firewall import unreachable_for_group
from testbed.images import run_python, wait_for_line
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INTERFACE = "com.example.DemoService"
ROOT = "/dubbo"
PROVIDERS = f"{ROOT}/{INTERFACE}/providers"
STEPS = 6


def step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def say(text: str) -> None:
    print(f"      {text}", flush=True)


def registered(client: KazooClient) -> list[str]:
    return (
        [unquote_plus(n) for n in client.get_children(PROVIDERS)]
        if client.exists(PROVIDERS)
        else []
    )


def remote_consumer(zookeeper: str, subnet: str) -> str:
    """Call the registered provider from a process that cannot reach container addresses."""
    args = ["--zookeeper", zookeeper, "--root", ROOT, "--interface", INTERFACE]
    with unreachable_for_group([subnet]) as gid:
        _, results = run_as_group(gid, args)
    if not results:
        return "no provider registered"
    result = results[0]
    if result["ok"]:
        return f"OK   {result['address']} answered {result['reply']!r}"
    return f"FAIL {result['address']}: {result['error']}"


@contextlib.contextmanager
def lab(work: Path) -> Iterator[tuple[ZooKeeperServer, DockerEngine, str]]:
    run_id = uuid.uuid4().hex[:12]
    step(1, "Starting ZooKeeper (a real server, on this machine)")
    with ZooKeeperServer(work / "zookeeper", bind="0.0.0.0") as zookeeper:
        say(f"ZooKeeper {zookeeper.connect_string} is serving")
        step(2, "Docker Engine")
        engine = ensure_docker_engine(work / "docker")
        say(("started dockerd" if engine.started_here else "using the running daemon")
            + f" at {engine.url}")  # fmt: skip
        try:
            yield zookeeper, engine, run_id
        finally:
            step(STEPS, "Cleaning up: containers, sidecar, ZooKeeper")
            remove_labelled(engine.client, f"{RUN_LABEL}={run_id}")
            engine.stop()


def main() -> int:
    started = time.monotonic()
    print("dubbo-nat-sidecar demo: a Dubbo provider in a Docker bridge network, made reachable")
    with (
        tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp,
        lab(Path(tmp)) as (zk, engine, run),
    ):
        client = KazooClient(hosts=zk.connect_string)
        client.start(timeout=15)
        try:
            step(3, "Starting a Dubbo-style provider in a container, published with -P")
            provider = run_python(
                engine.client,
                Path(provider_script.__file__),
                ["--zookeeper", f"{engine.bridge_gateway()}:{zk.port}", "--root", ROOT,
                 "--interface", INTERFACE, "--application", "demo-provider"],
                name_prefix="demo-provider",
                labels={RUN_LABEL: run},
            )  # fmt: skip
            wait_for_line(provider, "registered ")
            host_port = published_port(provider, "20880/tcp")
            say(f"container {provider.name}: IP {container_ip(provider)}, "
                f"port 20880/tcp published on host port {host_port}")  # fmt: skip
            say(f"it registered:  {registered(client)[0][:110]}...")
            say("a consumer on another host (simulated: container networks blocked for it):")
            say(remote_consumer(zk.connect_string, engine.bridge_subnet()))

            step(4, "Starting the sidecar: dubbo-sidecar run --advertise-host 127.0.0.1")
            sidecar = SidecarProcess(
                Path(tmp) / "sidecar.log",
                ["--zookeeper", zk.connect_string, "--root", ROOT, "--docker-url", engine.url,
                 "--advertise-host", "127.0.0.1", "--state-file", str(Path(tmp) / "state.json")],
            ).start()  # fmt: skip
            try:
                rewrite = sidecar.wait_for_event("rewrite")
                say(f"sidecar: rewrite {rewrite['original']} -> {rewrite['rewritten']} "
                    f"({rewrite['reason']})")  # fmt: skip
                say(f"registration now: {registered(client)[0][:110]}...")
                say("the same consumer:")
                after = remote_consumer(zk.connect_string, engine.bridge_subnet())
                say(after)
                if not after.startswith("OK"):
                    print(f"\nThe demo failed. The sidecar's last lines:\n{sidecar.log_tail()}")
                    return 1

                step(5, "Stopping the provider container")
                provider.stop(timeout=10)
                stopped = time.monotonic()
                wait_until(lambda: registered(client) == [], 10, message="still registered")
                say(f"its registration was removed {time.monotonic() - stopped:.2f} s later")
            finally:
                sidecar.terminate()
        finally:
            client.stop()
            client.close()
    print(f"\nDone in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
