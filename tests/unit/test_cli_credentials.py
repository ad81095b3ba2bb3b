"""ZooKeeper credentials from a file (a mounted secret): read once at start, never printed;
a file that cannot serve is invalid configuration naming the setting, never waited on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, load_settings

SECRET = "shop:s3cret-pw"
# Past the configuration, plan fails to reach ZooKeeper (exit 1).
PLAN = ["plan", "--zookeeper", "127.0.0.1:1", "--connect-timeout", "0.5", "--docker-url", "none"]
PLAN += ["--static-ports", "20880:30880", "--advertise-host", "10.0.0.1", "--log-level", "debug"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DUBBO_SIDECAR_") or name == "HOST_IP":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("content", [f"{SECRET}\n", f"{SECRET}\r\n", SECRET])
def test_credentials_come_from_the_file_without_the_trailing_newline(
    content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--zookeeper-auth-file`, its variable or its file key give the digest credentials the
    file holds, the trailing newline of `echo … > file` or a Windows editor dropped."""
    secret = tmp_path / "auth"
    secret.write_text(content, newline="")
    assert load_settings({"zookeeper_auth_file": str(secret)}).zookeeper_auth is not None
    monkeypatch.setenv("DUBBO_SIDECAR_ZOOKEEPER_AUTH_FILE", str(secret))
    settings = load_settings({}, command="status")
    assert settings.zookeeper_auth is not None
    assert settings.zookeeper_auth.get_secret_value() == SECRET
    assert SECRET not in repr(settings)


def test_the_file_and_the_value_exclude_each_other(tmp_path: Path) -> None:
    """Credentials given twice are refused, naming both settings."""
    secret = tmp_path / "auth"
    secret.write_text(SECRET)
    with pytest.raises(ConfigError) as raised:
        load_settings({"zookeeper_auth_file": str(secret), "zookeeper_auth": SECRET})
    assert str(raised.value).startswith("--zookeeper-auth-file: ")
    assert "--zookeeper-auth" in str(raised.value).removeprefix("--zookeeper-auth-file")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "no colon", "unreadable"])
def test_a_file_that_cannot_serve_exits_2_naming_the_setting(
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing file, a directory, a FIFO (refused, not waited on), credentials without
    `user:password`: exit 2, one line naming the setting as given, without the content."""
    path = tmp_path / "auth"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "no colon":
        path.write_text("s3cret-pw\n")
    elif kind == "unreadable":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    monkeypatch.setenv("DUBBO_SIDECAR_ZOOKEEPER_AUTH_FILE", str(path))
    assert main(PLAN) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dubbo-sidecar: DUBBO_SIDECAR_ZOOKEEPER_AUTH_FILE: {path}")
    assert err.count("\n") == 1
    assert "s3cret" not in err


def test_the_secret_is_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the logs (debug included) nor the output of a plan show the credentials."""
    secret = tmp_path / "auth"
    secret.write_text(SECRET)
    assert main([*PLAN, "--zookeeper-auth-file", str(secret)]) == 1
    shown = capsys.readouterr()
    assert "s3cret" not in shown.out + shown.err


def test_sasl_credentials_come_from_their_file_and_exclude_the_value(tmp_path: Path) -> None:
    """`--zookeeper-sasl-file` gives the SASL credentials as `--zookeeper-auth-file` gives
    the digest ones: the trailing newline dropped, never in the settings' repr, and not
    together with `--zookeeper-sasl`."""
    secret = tmp_path / "sasl"
    secret.write_text(f"{SECRET}\n")
    settings = load_settings({"zookeeper_sasl_file": str(secret)})
    assert settings.zookeeper_sasl is not None
    assert settings.zookeeper_sasl.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    with pytest.raises(ConfigError) as raised:
        load_settings({"zookeeper_sasl_file": str(secret), "zookeeper_sasl": SECRET})
    assert str(raised.value).startswith("--zookeeper-sasl-file: ")
