"""The Dockerfile's base image, made locally: no registry can be pulled from here.

A Debian bookworm root filesystem (debootstrap, minbase, with python3 and python3-venv) is
imported under the name the Dockerfile's FROM line uses, so the real Dockerfile builds
unchanged. The root filesystem is cached outside the checkout; building it takes ~40 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors

CACHE = Path("/var/cache/dubbo-nat-sidecar")
MIRROR = "http://deb.debian.org/debian"


def from_line(dockerfile: Path) -> str:
    """The image the Dockerfile's first FROM names."""
    for line in dockerfile.read_text().splitlines():
        if line.upper().startswith("FROM "):
            return line.split()[1]
    raise ValueError(f"{dockerfile} has no FROM line")


def ensure_base_image(client: docker.DockerClient, tag: str) -> None:
    """Make ``tag`` exist on the engine, from the cached root filesystem (built if missing)."""
    try:
        client.images.get(tag)
        return
    except docker.errors.ImageNotFound:
        pass
    tarball = CACHE / "bookworm-python3.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    print(f"base image: importing {tarball} as {tag}", file=sys.stderr, flush=True)
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")


def _debootstrap(tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    print("base image: debootstrap bookworm (about 40 s)...", file=sys.stderr, flush=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
         str(rootfs), MIRROR],
        check=True, capture_output=True,
    )  # fmt: skip
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
    partial.replace(tarball)
    shutil.rmtree(rootfs, ignore_errors=True)


SAMPLE_APP_DOCKERFILE = """\
FROM {base}
COPY wheels /wheels
RUN python3 -m venv /opt/app \\
    && /opt/app/bin/pip install --no-cache-dir --no-index --find-links /wheels kazoo
COPY testbed /opt/app/testbed
WORKDIR /opt/app
EXPOSE 20880
ENTRYPOINT ["/opt/app/bin/python", "-m", "testbed.provider"]
"""


def build_sample_app(client: docker.DockerClient, base: str, tag: str, work: Path) -> str:
    """An image of the testbed's Dubbo-style provider (``python -m testbed.provider``), tagged
    ``tag``; returns its ID (another checkout sharing the engine may retag ``tag``)."""
    context = work / "sample-app"
    shutil.rmtree(context, ignore_errors=True)
    (context / "testbed").mkdir(parents=True)
    here = Path(__file__).parent
    for module in ("__init__.py", "provider.py", "dubbo_url.py"):
        shutil.copy(here / module, context / "testbed" / module)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--wheel-dir", str(context / "wheels"), "kazoo"],
        check=True,
    )  # fmt: skip
    (context / "Dockerfile").write_text(SAMPLE_APP_DOCKERFILE.format(base=base))
    image, _ = client.images.build(path=str(context), tag=tag, rm=True)
    return str(image.id)
