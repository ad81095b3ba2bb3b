"""Per-container labels: what each asks for, and which values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar import labels
from sidecar.cli import main
from sidecar.sources import static


def parse(**pairs: str) -> labels.ContainerLabels:
    return labels.parse(tuple(sorted((f"dubbo-nat-sidecar.{k}", v) for k, v in pairs.items())))


def test_no_labels_ask_for_nothing() -> None:
    """A container without the sidecar's labels gets the sidecar's own settings."""
    assert labels.parse((("com.docker.compose.service", "app"),)) == labels.ContainerLabels()


def test_every_label_is_read() -> None:
    """Opt-out, advertise host, per-port external port and mode are all understood."""
    found = labels.parse(
        (
            ("dubbo-nat-sidecar.enable", "False"),
            ("dubbo-nat-sidecar.advertise-host", "[2001:DB8::1]"),
            ("dubbo-nat-sidecar.port.20880", "30880"),
            ("dubbo-nat-sidecar.mode", "mirror"),
        )
    )
    assert found == labels.ContainerLabels(False, "2001:db8::1", ((20880, 30880),), "mirror")
    assert found.external_port(20880) == 30880
    assert found.external_port(50051) is None


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"enable": "maybe"}, "label dubbo-nat-sidecar.enable='maybe': expected true or false"),
        ({"mode": "swap"}, "label dubbo-nat-sidecar.mode='swap': expected replace or mirror"),
        ({"port.20880": "70000"}, "label dubbo-nat-sidecar.port.20880: '70000' is not a port"),
        ({"port.20880": "²"}, "label dubbo-nat-sidecar.port.20880: '²' is not a port"),
        ({"port.20880": "+443"}, "label dubbo-nat-sidecar.port.20880: '+443' is not a port"),
        ({"port.٣": "443"}, "label dubbo-nat-sidecar.port.٣: '٣' is not a port"),
        ({"port.http": "8080"}, "label dubbo-nat-sidecar.port.http: 'http' is not a port"),
        ({"advertise-host": "not a host"}, "label dubbo-nat-sidecar.advertise-host='not a host'"),
        ({"advertise-host": "10.0.0.1,10.0.0.2"}, "label dubbo-nat-sidecar.advertise-host="),
        ({"advertise-host": "h" * 5000}, "label dubbo-nat-sidecar.advertise-host='hhh"),
        ({"enabled": "false"}, "unknown label dubbo-nat-sidecar.enabled"),
    ],
)
def test_invalid_labels_are_refused_with_the_label_named(
    pairs: dict[str, str], message: str
) -> None:
    """A value the sidecar cannot follow, or a misspelt key, is an error naming the label."""
    with pytest.raises(labels.InvalidLabels) as raised:
        parse(**pairs)
    assert str(raised.value).startswith(message)


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=6))
def test_any_labels_either_parse_or_raise_invalid_labels(pairs: dict[str, str]) -> None:
    """Whatever labels a container carries, parsing answers or says which label is wrong."""
    keyed = tuple(sorted((f"dubbo-nat-sidecar.{k}", v) for k, v in pairs.items()))
    try:
        labels.parse(keyed)
    except labels.InvalidLabels as exc:
        message = str(exc)
    else:
        return
    assert "dubbo-nat-sidecar." in message


def test_static_mapping_file_carries_labels_for_its_namespace(tmp_path: Path) -> None:
    """The static mapping's [labels] table gives the pseudo-container the same labels a
    Docker container would carry; a key without the prefix is refused in one line."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(
        '[ports]\n20880 = 30880\n[labels]\n"dubbo-nat-sidecar.enable" = false\n'
        '"dubbo-nat-sidecar.port.20880" = 443\n'
    )
    container = static.load(mapping).container(["10.244.1.17"])
    assert container is not None
    assert labels.parse(container.labels) == labels.ContainerLabels(False, None, ((20880, 443),))
    mapping.write_text('[ports]\n20880 = 30880\n[labels]\nenable = "false"\n')
    with pytest.raises(static.StaticMappingError, match="label 'enable' lacks the prefix"):
        static.load(mapping)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[ports]\n20880 = "²"\n', "'20880:²': '²' is not a port (1-65535)"),
        ('[ports]\n"٣" = 30880\n', "'٣:30880': '٣' is not a port (1-65535)"),
        ("[ports]\n20880 = 30880.0\n", "'20880:30880.0': '30880.0' is not a port"),
        ('[ports]\n20880 = 30880\n[labels]\n"dubbo-nat-sidecar.advertise-host" = "foo bar"\n',
         "label dubbo-nat-sidecar.advertise-host='foo bar': not an IP address or host name"),
        ('[ports]\n20880 = 30880\n[labels]\n"dubbo-nat-sidecar.port.20880" = "²"\n',
         "label dubbo-nat-sidecar.port.20880: '²' is not a port"),
    ],
)  # fmt: skip
def test_static_mapping_file_with_a_bad_port_or_label_is_refused(
    tmp_path: Path, content: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that is not ASCII digits in 1-65535, or a label the sidecar cannot follow, in
    the static mapping file refuses the file in one line naming it: exit 2 at start."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(content)
    with pytest.raises(static.StaticMappingError) as raised:
        static.load(mapping)
    assert str(raised.value).startswith(f"static mapping {mapping}: ")
    assert problem in str(raised.value)
    argv = ["plan", "--docker-url", "none", "--static-file", str(mapping)]
    assert main([*argv, "--advertise-host", "10.0.0.1", "--zookeeper", "127.0.0.1:1"]) == 2
    assert problem in capsys.readouterr().err
