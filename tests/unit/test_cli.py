"""The command line: each subcommand takes only the settings it uses; the environment and the
file may hold settings of other subcommands; a bad value is one line naming the setting as
the user gave it; the defaults are said as they are; a loopback address found by routing is
refused."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import COMMANDS, Settings, default_text, fields_of, flag

# A plan that gets past the configuration and then fails to reach ZooKeeper (exit 1).
UNREACHABLE = ["--zookeeper", "127.0.0.1:1", "--connect-timeout", "0.5", "--docker-url", "none"]
UNREACHABLE += ["--static-ports", "20880:30880"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DUBBO_SIDECAR_") or name == "HOST_IP":
            monkeypatch.delenv(name)


@pytest.fixture
def healthz() -> Iterator[str]:
    """A stand-in for a running sidecar's operations listener: HOST:PORT answering /healthz."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_each_subcommand_offers_only_the_settings_it_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`health` offers --listen alone, `plan` and `status` no daemon settings (proxy, ops,
    periods, state file), `run` no one-shot timeout; `uncapture` no setting at all."""
    assert fields_of("health") == {"listen"}
    assert fields_of("plan") == fields_of("status")
    assert not fields_of("plan") & {"listen", "proxy_listen", "resync_seconds", "state_file"}
    assert "connect_timeout" not in fields_of("run")
    for command in COMMANDS:
        shown = _help(command, capsys)
        for name in Settings.model_fields:
            assert (f"{flag(name)} " in shown) == (name in fields_of(command)), (command, name)
    assert "--zookeeper" not in _help("uncapture", capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["health", "--zookeeper", "zk:2181"],
        ["plan", "--listen", "127.0.0.1:9477"],
        ["status", "--proxy-listen", "127.0.0.1:2181"],
        ["run", "--connect-timeout", "5"],
        ["uncapture", "--zookeeper", "zk:2181"],
        ["run", "--output", "json"],
    ],
)
def test_a_flag_of_another_subcommand_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag the subcommand does not use exits 2 with one line, as an unknown flag does."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dubbo-sidecar: error: unrecognized arguments: ")
    assert err.count("\n") == 1


def test_health_shares_the_environment_and_file_of_run(
    healthz: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The image's HEALTHCHECK runs `health` with the environment of `run`: settings only
    `run` uses (even ones `run` would refuse) do not make it fail; its own one does."""
    config = tmp_path / "sidecar.toml"
    config.write_text('resync_seconds = 0\nzookeeper = "not a connect string"\n')
    monkeypatch.setenv("DUBBO_SIDECAR_CONFIG", str(config))
    monkeypatch.setenv("DUBBO_SIDECAR_PROXY_CAPTURE", "2181")  # without a proxy: run refuses
    monkeypatch.setenv("DUBBO_SIDECAR_SESSION_TIMEOUT", "1")
    monkeypatch.setenv("DUBBO_SIDECAR_LISTEN", healthz)
    assert main(["health"]) == 0
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "; DUBBO_SIDECAR_SESSION_TIMEOUT must be at least 2" in err
    assert err.count("\n") == 1
    monkeypatch.setenv("DUBBO_SIDECAR_LISTEN", "nowhere")
    assert main(["health"]) == 2
    assert capsys.readouterr().err.startswith("dubbo-sidecar: DUBBO_SIDECAR_LISTEN: ")


def test_plan_ignores_daemon_settings_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` beside a `run` environment holding proxy, listener and period settings gets
    past its configuration (here, to an unreachable ZooKeeper: exit 1, not 2)."""
    monkeypatch.setenv("DUBBO_SIDECAR_PROXY_LISTEN", "10.0.0.5:2181")
    monkeypatch.setenv("DUBBO_SIDECAR_PROXY_CAPTURE", "2181")
    monkeypatch.setenv("DUBBO_SIDECAR_RESYNC_SECONDS", "0")
    monkeypatch.setenv("DUBBO_SIDECAR_LISTEN", "nowhere")
    assert main(["plan", *UNREACHABLE, "--advertise-host", "10.0.0.1"]) == 1
    assert "DUBBO_SIDECAR" not in capsys.readouterr().err


@pytest.mark.parametrize("given", ["flag", "env", "file"])
def test_a_bad_value_names_the_setting_as_given(
    given: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--session-timeout 1`, `DUBBO_SIDECAR_SESSION_TIMEOUT=1` or `session_timeout = 1` in
    the file: exit 2, one line naming the flag, the variable or the file's key, then the rule
    (not pydantic's wording or field path)."""
    config = tmp_path / "sidecar.toml"
    config.write_text("session_timeout = 1\n" if given == "file" else "")
    if given == "env":
        monkeypatch.setenv("DUBBO_SIDECAR_SESSION_TIMEOUT", "1")
    argv = ["run", "--config", str(config), "--advertise-host", "10.0.0.1"]
    assert main(argv + (["--session-timeout", "1"] if given == "flag" else [])) == 2
    err = capsys.readouterr().err
    name = {
        "flag": "--session-timeout",
        "env": "DUBBO_SIDECAR_SESSION_TIMEOUT",
        "file": f"session_timeout in {config}",
    }[given]
    assert err.startswith(f"dubbo-sidecar: {name} must be at least 2")
    assert err.count("\n") == 1
    assert "Input should" not in err


def test_the_real_entry_point_exits_2_with_one_line() -> None:
    """`python -m sidecar plan --connect-timeout 0`: exit 2, one line naming the flag."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "plan", "--connect-timeout", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("dubbo-sidecar: --connect-timeout must be more than 0")
    assert done.stderr.count("\n") == 1


def test_help_says_what_each_default_is(capsys: pytest.CaptureFixture[str]) -> None:
    """No default is shown as `none` (a value that turns Docker off, or means no file):
    `--docker-url` says the environment decides, `--advertise-host` where it comes from."""
    for name in Settings.model_fields:
        assert default_text(name).lower() not in ("", "none"), name
    shown = _help("run", capsys)
    assert "Default: none" not in shown
    docker = shown.rsplit("--docker-url URL", 1)[1].split(" Env:", 1)[0]
    assert docker.endswith(
        "Default: `DOCKER_HOST` from the environment, else `unix:///var/run/docker.sock`."
    )
    assert "Default: `HOST_IP`, else the address of the route" in shown


@pytest.mark.parametrize("command", ["run", "plan", "status"])
def test_a_loopback_address_found_by_routing_is_refused(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ZooKeeper on loopback and no advertised address given: exit 2, one line naming
    --advertise-host and HOST_IP (it advertised 127.0.0.1 to every consumer before); given
    explicitly, 127.0.0.1 is used (here `plan` then fails to reach ZooKeeper: exit 1)."""
    assert main([command, *UNREACHABLE[:2], "--docker-url", "none", "--static-ports", "1:2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dubbo-sidecar: --advertise-host or HOST_IP is needed: ")
    assert err.count("\n") == 1
    assert main(["plan", *UNREACHABLE, "--advertise-host", "127.0.0.1"]) == 1


def test_a_missing_config_file_is_named_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file that is not there: exit 2, one line naming `--config` or
    `DUBBO_SIDECAR_CONFIG`, whichever gave it."""
    missing = str(tmp_path / "missing.toml")
    assert main(["health", "--config", missing]) == 2
    assert capsys.readouterr().err.startswith(f"dubbo-sidecar: --config: {missing} ")
    monkeypatch.setenv("DUBBO_SIDECAR_CONFIG", missing)
    assert main(["health"]) == 2
    assert capsys.readouterr().err.startswith(f"dubbo-sidecar: DUBBO_SIDECAR_CONFIG: {missing} ")


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("DUBBO_SIDECAR_SCOPE", "pod", "'host'"),
        ("DUBBO_SIDECAR_JUTE_MAXBUFFER", "big", "whole number"),
        ("DUBBO_SIDECAR_FLEET", "maybe", "true or false"),
        ("DUBBO_SIDECAR_ADVERTISE_TIMEOUT", "soon", "number"),
    ],
)
def test_a_value_of_the_wrong_kind_names_the_variable_and_the_rule(
    variable: str,
    value: str,
    rule: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A variable holding no value of its setting's kind: exit 2, one line `VARIABLE must be`
    and what it must be (not pydantic's wording)."""
    monkeypatch.setenv(variable, value)
    assert main(["plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dubbo-sidecar: {variable} must be ")
    assert rule in err
    assert err.count("\n") == 1
