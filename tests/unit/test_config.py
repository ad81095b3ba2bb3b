"""Configuration: flags beat environment beat file; invalid input is one line and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, Settings, load_settings
from sidecar.sources import address as advertise


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DUBBO_SIDECAR_") or name == "HOST_IP":
            monkeypatch.delenv(name)


def test_defaults() -> None:
    """With nothing configured: local ZooKeeper, /dubbo, Docker as the docker CLI finds it,
    the scope detected, 60 s resync."""
    settings = load_settings({})
    assert settings.zookeeper == "127.0.0.1:2181"
    assert settings.root == ("/dubbo",)
    assert settings.docker_url is None
    assert settings.scope == "auto"
    assert settings.advertise_host is None
    assert settings.advertise_from == ()
    assert settings.resync_seconds == 60


def test_flags_beat_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value set in all three places comes from the flag; file values fill the rest."""
    config = tmp_path / "sidecar.toml"
    config.write_text(
        'zookeeper = "zk-file:2181"\nroot = ["/a", "/b"]\nresync_seconds = 5\n'
        'advertise_host = "10.0.0.1"\n'
    )
    monkeypatch.setenv("DUBBO_SIDECAR_ZOOKEEPER", "zk-env:2181/chroot")
    monkeypatch.setenv("DUBBO_SIDECAR_ADVERTISE_HOST", "10.0.0.2")
    settings = load_settings({"advertise_host": "10.0.0.3"}, config)
    assert settings.advertise_host == "10.0.0.3"
    assert settings.zookeeper == "zk-env:2181/chroot"
    assert settings.root == ("/a", "/b")
    assert settings.resync_seconds == 5


def test_roots_from_environment_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """DUBBO_SIDECAR_ROOT=/dubbo,/other gives two registry roots."""
    monkeypatch.setenv("DUBBO_SIDECAR_ROOT", "/dubbo,/other")
    assert load_settings({}).root == ("/dubbo", "/other")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"zookeeper": "zk:99999"}, "--zookeeper: invalid server 'zk:99999'"),
        ({"zookeeper": "zk:2181//x"}, "--zookeeper: invalid chroot"),
        ({"root": ("dubbo",)}, "--root: invalid path 'dubbo'"),
        ({"root": ("",)}, "--root: invalid path ''"),
        ({"root": ("/",)}, "--root: invalid path '/'"),
        ({"root": ()}, "--root: at least one registry root is needed"),
        ({"mirror_root": ""}, "--mirror-root: invalid path ''"),
        ({"mode": "mirror", "root": ("/a", "/b")}, "--mode mirror mirrors exactly one --root"),
        ({"host_address": "10.0.0.1,nope"}, "--host-address: 'nope' is not an IP address"),
        ({"root": ("/dubbo", "/dubbo")}, "--root: the same root is given twice"),
        ({"advertise_host": "not a host"}, "--advertise-host: 'not a host' is neither"),
        ({"resync_seconds": 0}, "--resync-seconds must be at least 1 seconds"),
        ({"session_timeout": "x"}, "--session-timeout must be a number"),
        ({"jute_maxbuffer": 10}, "--jute-maxbuffer must be at least 1024 bytes"),
        ({"docker_url": "/var/run/docker.sock"}, "--docker-url: '/var/run/docker.sock' is not"),
        ({"advertise_from": "dns:x"}, "--advertise-from: 'dns:x' is not value:ADDRESS"),
        ({"advertise_from": "url:ftp://x/"}, "--advertise-from: 'url:ftp://x/': 'ftp://x/' is"),
        ({"advertise_from": "env:1X"}, "--advertise-from: 'env:1X': '1X' is not an environment"),
        (
            {"advertise_from": "env:IP", "advertise_host": "10.0.0.1"},
            "--advertise-host: give it or --advertise-from, not both",
        ),
        ({"scope": "host", "container": "shop"}, "--container names the app"),
        ({"scope": "pod"}, "--scope must be 'auto', 'host' or 'app'"),
    ],
)
def test_invalid_values_are_named_in_one_line(overrides: dict[str, object], message: str) -> None:
    """Each invalid setting is reported by name, in a single line."""
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    """A typo in the config file is an error, not silently ignored."""
    config = tmp_path / "sidecar.toml"
    config.write_text('zookeeper_hosts = "zk:2181"\n')
    with pytest.raises(ConfigError, match=f"^zookeeper_hosts in {config} is not a setting$"):
        load_settings({}, config)


def test_cli_exits_2_with_one_line_on_invalid_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run` with a bad flag value prints one line on stderr and exits with code 2."""
    assert main(["run", "--resync-seconds", "-1", "--advertise-host", "10.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("dubbo-sidecar: --resync-seconds must be at least 1")


def test_cli_exits_2_on_unknown_flags_and_missing_config_file(tmp_path: Path) -> None:
    """Usage errors (unknown flag, missing file) exit 2 with one line, from the real entry point."""
    for argv in (["run", "--no-such-flag"], ["plan", "--config", str(tmp_path / "missing.toml")]):
        done = subprocess.run(
            [sys.executable, "-m", "sidecar", *argv], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1, done.stderr


def test_advertise_host_comes_from_flag_then_host_ip_then_route() -> None:
    """Explicit value first, then HOST_IP, then the address routing to ZooKeeper; a route
    that only leaves from loopback is refused, naming the settings that fix it, while a
    loopback address given explicitly is used."""
    settings = load_settings({"zookeeper": "127.0.0.1:2181"})
    assert advertise.resolve(settings, {"HOST_IP": "10.0.0.7"}).address == "10.0.0.7"
    assert advertise.resolve(settings, {"HOST_IP": "127.0.0.1"}).address == "127.0.0.1"
    for local in ("127.0.0.1:2181", "[::1]:2181", "localhost:2181"):
        with pytest.raises(ConfigError, match=r"^--advertise-host or HOST_IP is needed: "):
            advertise.resolve(load_settings({"zookeeper": local}), {})
    loopback = load_settings({"zookeeper": "127.0.0.1:2181", "advertise_host": "127.0.0.1"})
    assert advertise.resolve(loopback, {}) == advertise.AdvertiseHost(
        "127.0.0.1", "--advertise-host"
    )
    explicit = load_settings({"advertise_host": "[2001:db8::1]"})
    assert advertise.resolve(explicit, {"HOST_IP": "10.0.0.7"}).address == "2001:db8::1"


def test_docs_document_every_setting() -> None:
    """Each setting's flag, environment variable and file key appear in the configuration
    reference (docs/configuration.md), and it names no flag that does not exist."""
    reference = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`--{name.replace('_', '-')}`" in reference, name
        assert f"`DUBBO_SIDECAR_{name.upper()}`" in reference, name
        assert f"`{name}`" in reference, name
    known = {f"--{n.replace('_', '-')}" for n in Settings.model_fields} | {"--config"}
    assert set(re.findall(r"`(--[a-z-]+)`", reference)) <= known


def test_advertise_sources_are_tried_in_order_of_preference() -> None:
    """The first source that answers wins; the decision names it; a source that does not
    answer says why, and when none answers every reason is given."""
    settings = load_settings(
        {"advertise_from": "env:PUBLIC_IP,interface:no-such-if0,interface:lo,value:10.0.0.9"}
    )
    assert advertise.resolve(settings, {"PUBLIC_IP": " 203.0.113.5\n"}) == advertise.AdvertiseHost(
        "203.0.113.5", "env:PUBLIC_IP"
    )
    assert advertise.resolve(settings, {}) == advertise.AdvertiseHost("127.0.0.1", "interface:lo")
    nothing = load_settings({"advertise_from": "env:PUBLIC_IP,interface:no-such-if0"})
    with pytest.raises(advertise.AddressUnavailable) as raised:
        advertise.resolve(nothing, {})
    assert str(raised.value) == (
        "env:PUBLIC_IP: PUBLIC_IP is not set; "
        "interface:no-such-if0: interface no-such-if0 has no address (or does not exist)"
    )
    assert not advertise.changes_over_time(load_settings({"advertise_host": "10.0.0.1"}))
    assert advertise.changes_over_time(settings)


def test_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy's address and captured ports come from the environment like the others; a
    capture without a proxy, a port out of range or a bad address is one line."""
    monkeypatch.setenv("DUBBO_SIDECAR_PROXY_LISTEN", "127.0.0.1:2181")
    monkeypatch.setenv("DUBBO_SIDECAR_PROXY_CAPTURE", "2181, 2182")
    settings = load_settings({})
    assert (settings.proxy_listen, settings.proxy_capture) == ("127.0.0.1:2181", (2181, 2182))
    assert settings.jute_maxbuffer == 0xFFFFF
    monkeypatch.delenv("DUBBO_SIDECAR_PROXY_LISTEN")
    for overrides, message in [
        ({}, "DUBBO_SIDECAR_PROXY_CAPTURE redirects to the proxy: give --proxy-listen"),
        ({"proxy_listen": "127.0.0.1:2181", "proxy_capture": "0"}, "--proxy-capture: 0 is not"),
        ({"proxy_listen": "zk"}, "--proxy-listen: 'zk' is not HOST:PORT"),
        ({"proxy_listen": "10.0.0.5:2181", "proxy_capture": "2181"}, "--proxy-listen 10.0.0.5"),
        ({"proxy_listen": "localhost:2181", "proxy_capture": "2181"}, "--proxy-listen local"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(overrides)


@pytest.mark.parametrize("listen", ["127.0.0.1:2181", "[::1]:2181", "0.0.0.0:2181", "[::]:2181"])
def test_a_captured_proxy_listens_on_loopback_or_everywhere(listen: str) -> None:
    """Captured connections arrive at the loopback address of their family: a proxy on
    loopback (either family) or on every address can serve them."""
    settings = load_settings({"proxy_listen": listen, "proxy_capture": "2181"})
    assert settings.proxy_capture == (2181,)


@pytest.mark.parametrize(
    ("argv", "environment", "name"),
    [(["--root", ""], {}, "--root"), ([], {"DUBBO_SIDECAR_ROOT": ","}, "DUBBO_SIDECAR_ROOT")],
)
def test_empty_roots_exit_2(
    argv: list[str],
    environment: dict[str, str],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--root ''` (it behaved as `/`) and `DUBBO_SIDECAR_ROOT=','` (it gave no roots) are
    invalid configuration: exit 2, one line naming the flag or the variable."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["plan", *argv, "--advertise-host", "10.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dubbo-sidecar: {name}: ")
    assert err.count("\n") == 1
