"""The release's metadata and lock files agree with pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sidecar

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def pins(lock: str) -> dict[str, str]:
    """``name == version`` of each package a lock file in requirements/ pins."""
    text = (PROJECT_ROOT / "requirements" / lock).read_text()
    found = re.findall(r"^([\w.-]+)==(\S+) \\$", text, re.MULTILINE)
    return {canonicalize_name(name): version for name, version in found}


def unmet(requirements: list[str], locked: dict[str, str]) -> list[str]:
    """The requirements the lock does not pin to a release they accept."""
    wanted = [Requirement(r) for r in requirements]
    pinned = [(r, locked.get(canonicalize_name(r.name))) for r in wanted]
    return [str(r) for r, version in pinned if version is None or version not in r.specifier]


def test_locks_pin_every_dependency_pyproject_names() -> None:
    """A dependency added to pyproject.toml without running scripts/lock fails here, before an
    install from the lock (which leaves the project's own requirements out) misses it."""
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert unmet(PROJECT["dependencies"], runtime) == []
    assert unmet(PROJECT["optional-dependencies"]["test"], test) == []


def test_tests_run_the_versions_the_image_runs() -> None:
    """Every runtime pin is in the test lock at the same release."""
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert {name: test.get(name) for name in runtime} == runtime


def test_installed_version_is_the_one_version_source() -> None:
    """The package's metadata carries ``sidecar.__version__`` (setuptools reads it)."""
    assert importlib.metadata.version("dubbo-nat-sidecar") == sidecar.__version__
