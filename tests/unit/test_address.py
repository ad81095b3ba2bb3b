"""The advertised address: every source's value is an IP literal or a host name; a value fixed
at start that is not one stops the sidecar (exit 2, naming it), a source read at runtime that
answers garbage fails over to the next; metadata requests have one deadline and a small cap."""

from __future__ import annotations

import os
import time

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, load_settings
from sidecar.sources import address as advertise
from testbed.metadata import MetadataService


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DUBBO_SIDECAR_") or name == "HOST_IP":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("value", ["foo bar", "10.0.0.1,10.0.0.2", "10.0.0.1:80", "h" * 300])
def test_an_invalid_host_ip_exits_2_naming_it(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HOST_IP that is not an IP address or host name stops `run` and `plan` at start with
    exit 2 and one line naming HOST_IP (it registered `dubbo://foo bar:30880/…` before)."""
    monkeypatch.setenv("HOST_IP", value)
    for argv in (["run", "--listen", ""], ["plan"]):
        assert main([*argv, "--zookeeper", "127.0.0.1:1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dubbo-sidecar: HOST_IP: ")
        assert err.count("\n") == 1
        assert len(err) < 400


def test_host_ip_is_normalised() -> None:
    """A valid HOST_IP is advertised in its normal form (brackets, case, spaces dropped)."""
    settings = load_settings({"zookeeper": "127.0.0.1:2181"})
    for value, expected in (
        (" 10.0.0.7\n", "10.0.0.7"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("Node-1.Example", "node-1.example"),
    ):
        assert advertise.resolve(settings, {"HOST_IP": value}).address == expected


def test_an_env_source_holding_garbage_stops_the_start_even_behind_an_answering_one() -> None:
    """The environment cannot change while the sidecar runs: an `env:` source that holds no
    address is a configuration error at start, even when an earlier source answers (it
    would only be read later, when that one fails)."""
    settings = load_settings({"advertise_from": "value:10.0.0.9,env:PUBLIC_IP"})
    with pytest.raises(ConfigError) as raised:
        advertise.resolve(settings, {"PUBLIC_IP": "10.0.0.1,10.0.0.2"})
    assert str(raised.value) == (
        "env:PUBLIC_IP: '10.0.0.1,10.0.0.2' is neither an IP address nor a host name"
    )


def test_a_url_answering_garbage_fails_over_to_the_next_source() -> None:
    """A metadata URL whose body is not an address makes that source fail, with the reason,
    and the next source is used."""
    with MetadataService("foo bar") as metadata:
        settings = load_settings({"advertise_from": f"url:{metadata.url},value:10.0.0.9"})
        assert advertise.resolve(settings, {}) == advertise.AdvertiseHost(
            "10.0.0.9", "value:10.0.0.9"
        )
        with pytest.raises(advertise.AddressUnavailable) as raised:
            advertise.read_source(f"url:{metadata.url}", {}, 2.0)
        assert str(raised.value) == "'foo bar' is neither an IP address nor a host name"


@pytest.mark.parametrize(
    ("trouble", "troubled"),
    [("drip", "address"), ("drip", "token"), ("flood", "address"), ("flood", "token")],
)
def test_a_misbehaving_metadata_service_costs_one_deadline_per_request(
    trouble: str, troubled: str
) -> None:
    """One byte every half second, or an endless body, for the address or the IMDSv2 token:
    the source fails within the timeout (not per read: one byte per 0.5 s took 19.5 s with
    a 2 s timeout before), and no more than a few KB of body is read (a 300 MiB token grew
    the sidecar by 900 MiB before)."""
    with MetadataService("10.0.0.7", require_token=troubled == "token") as metadata:
        metadata.trouble, metadata.troubled = trouble, troubled
        started = time.monotonic()
        with pytest.raises(advertise.AddressUnavailable) as raised:
            advertise.read_source(f"url:{metadata.url}", {}, 2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0 + 1.5
    expected = "within 2 s" if trouble == "drip" else "larger than 4096 bytes"
    assert expected in str(raised.value)
