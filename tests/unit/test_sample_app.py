"""The sample app (testbed/provider.py) finds its registry as Dubbo does."""

from __future__ import annotations

import pytest

from testbed.provider import parse_args, registry_from


@pytest.mark.parametrize(
    ("value", "connect"),
    [("zookeeper://127.0.0.1:2181", "127.0.0.1:2181"),
     ("zookeeper://zk1:2181,zk2:2181/prod?timeout=5000", "zk1:2181,zk2:2181/prod"),
     ("", None)],
)  # fmt: skip
def test_registry_address_comes_from_the_environment(value: str, connect: str | None) -> None:
    """DUBBO_REGISTRY_ADDRESS gives the connect string; its parameters are Dubbo's."""
    assert registry_from({"DUBBO_REGISTRY_ADDRESS": value}) == connect


def test_another_registry_is_refused_with_its_value() -> None:
    """A registry that is not ZooKeeper stops the app with the value quoted."""
    with pytest.raises(ValueError, match="nacos://nacos:8848"):
        registry_from({"DUBBO_REGISTRY_ADDRESS": "nacos://nacos:8848"})


def test_the_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--zookeeper wins over DUBBO_REGISTRY_ADDRESS; without either the app stops."""
    monkeypatch.setenv("DUBBO_REGISTRY_ADDRESS", "zookeeper://127.0.0.1:2181")
    assert parse_args(["--zookeeper", "zk:2181"]).zookeeper == "zk:2181"
    assert parse_args([]).zookeeper == "127.0.0.1:2181"
    monkeypatch.delenv("DUBBO_REGISTRY_ADDRESS")
    with pytest.raises(SystemExit):
        parse_args([])
