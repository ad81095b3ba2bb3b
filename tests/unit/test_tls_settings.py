"""TLS to ZooKeeper: the CA bundle, the client certificate and its key are checked at start
(exit 2, one line naming the setting as given), and read again when they change on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, load_settings
from sidecar.tls import ClientTls, TlsFiles, TlsProblem
from testbed.tls import Issued, TestCA

# Past the configuration, plan fails to reach ZooKeeper (exit 1).
PLAN = ["plan", "--zookeeper", "127.0.0.1:1", "--connect-timeout", "0.5", "--docker-url", "none"]
PLAN += ["--static-ports", "20880:30880", "--advertise-host", "10.0.0.1"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DUBBO_SIDECAR_") or name == "HOST_IP":
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA with a good, an expired and a foreign (another CA's) certificate, made once."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other = TestCA(directory), TestCA(directory / "other", "other-ca")
    good, expired = ca.issue("good"), ca.issue("expired", days=-1)
    foreign: Issued = other.issue("foreign")
    encrypted = directory / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(good.key), "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return {
        "encrypted_key": encrypted,
        "ca": ca.cert, "cert": good.cert, "key": good.key, "both": good.both,
        "expired": expired.cert, "expired_key": expired.key,
        "foreign": foreign.cert, "foreign_key": foreign.key,
    }  # fmt: skip


def _flags(pki: dict[str, Path], **chosen: str) -> list[str]:
    files = {"ca": "ca", "cert": "cert", "key": "key"} | chosen
    args: list[str] = []
    for setting, name in files.items():
        if name:
            args += [f"--zookeeper-tls-{setting}", str(pki[name]) if name in pki else name]
    return args


def test_good_files_pass_and_the_key_may_share_the_certificate_file(
    pki: dict[str, Path],
) -> None:
    """A certificate that verifies against the CA, with its key apart or in the same file."""
    settings = load_settings(
        {
            "zookeeper_tls_ca": pki["ca"],
            "zookeeper_tls_cert": pki["cert"],
            "zookeeper_tls_key": pki["key"],
        }
    )
    assert settings.zookeeper_tls_ca == pki["ca"]
    load_settings({"zookeeper_tls_ca": pki["ca"], "zookeeper_tls_cert": pki["both"]})
    load_settings({"zookeeper_tls_ca": pki["ca"]})  # TLS without a client certificate


@pytest.mark.parametrize(
    ("chosen", "named", "says"),
    [
        ({"cert": "expired", "key": "expired_key"}, "--zookeeper-tls-cert", "has expired"),
        ({"cert": "foreign", "key": "foreign_key"}, "--zookeeper-tls-cert", "does not verify"),
        ({"key": "expired_key"}, "--zookeeper-tls-key", "is not the key of"),
        ({"key": "/nonexistent/client.key"}, "--zookeeper-tls-key", "No such file"),
        ({"ca": "key"}, "--zookeeper-tls-ca", "holds no PEM CA certificate"),
        ({"cert": "key"}, "--zookeeper-tls-cert", "holds no PEM certificate"),
        ({"key": "cert"}, "--zookeeper-tls-key", "holds no PEM private key"),
        ({"key": "encrypted_key"}, "--zookeeper-tls-key", "without a password"),
        ({"ca": ""}, "--zookeeper-tls-cert", "give --zookeeper-tls-ca too"),
    ],
)
def test_a_file_that_cannot_serve_exits_2_naming_the_setting(
    chosen: dict[str, str],
    named: str,
    says: str,
    pki: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An expired certificate, another CA's, a key that is not the certificate's, a missing
    or wrong file, an encrypted key (refused, never prompted for): exit 2 before anything
    connects, one line naming the setting and why."""
    assert main(PLAN + _flags(pki, **chosen)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dubbo-sidecar: {named}"), err
    assert says in err
    assert err.count("\n") == 1


def test_a_variable_is_named_as_given(
    pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting is named as the user gave it: here its environment variable."""
    monkeypatch.setenv("DUBBO_SIDECAR_ZOOKEEPER_TLS_CERT", str(pki["expired"]))
    with pytest.raises(ConfigError) as raised:
        load_settings({"zookeeper_tls_ca": pki["ca"], "zookeeper_tls_key": pki["expired_key"]})
    assert str(raised.value).startswith("DUBBO_SIDECAR_ZOOKEEPER_TLS_CERT: ")


def test_rotated_files_are_read_again_and_a_bad_one_is_refused(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    """A certificate replaced on disk makes the next connection's context anew; one that no
    longer verifies is refused with the reason, and the good one after it is taken again."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    shutil.copy(pki["cert"], cert)
    shutil.copy(pki["key"], key)
    tls = ClientTls(TlsFiles(pki["ca"], cert, key))
    first, changed = tls.context()
    assert tls.context() == (first, False)
    _replace(pki["expired"], cert)
    _replace(pki["expired_key"], key)
    with pytest.raises(TlsProblem) as refused:
        tls.context()
    assert refused.value.setting == "zookeeper_tls_cert"
    assert "has expired" in refused.value.reason
    _replace(pki["cert"], cert)
    _replace(pki["key"], key)
    again, changed = tls.context()
    assert changed
    assert again is not first


def _replace(source: Path, target: Path) -> None:
    """As a secret volume does: a new file moved in place (a new inode)."""
    staged = target.with_suffix(".new")
    shutil.copy(source, staged)
    os.replace(staged, target)
