"""The state file: what cannot be used is reported once, in one line naming the file, and
left out; the file and its lock are readable by their owner only (they hold a password)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sidecar.state import State, StateFile

PASSWORD = bytes(range(16))
ENTRY = {"data": "e30=", "marker": {"original": "x", "container": "c"}}


def saved(tmp_path: Path, **doc: object) -> StateFile:
    """A state file holding a valid document with ``doc``'s keys replaced."""
    path = tmp_path / "state.json"
    full = {"session_id": 0x1001, "password": PASSWORD.hex(), "engine": "E",
            "managed": {"/dubbo/x/providers/n": ENTRY}} | doc  # fmt: skip
    path.write_text(json.dumps(full))
    return StateFile(path)


def test_a_saved_state_is_loaded_back(tmp_path: Path) -> None:
    """What was saved is what is loaded, with no problem reported."""
    state_file = StateFile(tmp_path / "state.json")
    state = State(0x1001, PASSWORD, "E", {"/p/n": (b"{}", {"original": "x"})})
    state_file.save(state)
    assert state_file.load() == (state, None)


def test_a_missing_file_is_a_first_start(tmp_path: Path) -> None:
    """No file: an empty state and nothing to report."""
    assert StateFile(tmp_path / "none.json").load() == (State(), None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"session_id": 4097, "passw', "is not JSON (truncated?)"),
        ("[1, 2]", "is not a JSON object"),
        ("\udcff", "can't decode byte 0xff"),
    ],
)
def test_an_unreadable_file_is_reported_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    """A truncated or garbled file gives an empty state and one problem naming the file."""
    path = tmp_path / "state.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    state, found = StateFile(path).load()
    assert state == State()
    assert found is not None
    assert found.startswith(f"state file {path}")
    assert problem in found


@pytest.mark.parametrize(
    "doc",
    [
        {"session_id": 2**64},
        {"session_id": 2**63},
        {"session_id": -(2**63) - 1},
        {"session_id": "0x1001"},
        {"session_id": True},
        {"password": "00" * 8},
        {"password": "not hex"},
        {"password": None},
    ],
)
def test_a_session_that_cannot_be_resumed_is_left_out(
    tmp_path: Path, doc: dict[str, object]
) -> None:
    """A session id outside a signed 64-bit long (kazoo's connection thread dies on one) or a
    password that is not ZooKeeper's 16 bytes is not resumed, and said so; the rewrite
    entries are still used."""
    state, problem = saved(tmp_path, **doc).load()
    assert (state.session_id, state.password) == (0, b"")
    assert state.managed == {"/dubbo/x/providers/n": (b"{}", ENTRY["marker"])}
    assert problem is not None
    assert problem.startswith(f"state file {tmp_path / 'state.json'}: session not resumed")
    assert PASSWORD.hex() not in problem


def test_unreadable_rewrite_entries_are_counted_and_left_out(tmp_path: Path) -> None:
    """Entries without base64 data or a marker object are dropped and counted."""
    managed = {
        "/a/n": ENTRY,
        "/b/n": {"data": "!!", "marker": {}},
        "/c/n": "junk",
        "/d/n": {"data": None, "marker": {}},
        "/e/n": {"data": "", "marker": {"x": 1}},
    }
    state, problem = saved(tmp_path, managed=managed).load()
    assert list(state.managed) == ["/a/n"]
    assert problem == f"state file {tmp_path / 'state.json'}: 4 rewrite entries unreadable"


def test_state_file_and_lock_are_private(tmp_path: Path) -> None:
    """The state file and its lock are created 0600, and an older 0644 file becomes 0600."""
    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0o644)
    state_file = StateFile(path)
    state_file.lock()
    state_file.save(State(0x1001, PASSWORD))
    for made in (path, tmp_path / "state.json.lock"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o600


@pytest.mark.timeout(10)
@pytest.mark.parametrize("where", ["state", "temporary"])
def test_a_fifo_in_the_state_files_place_is_refused_without_blocking(
    tmp_path: Path, where: str
) -> None:
    """A FIFO where the state file (or the file it is written through) should be: loading
    and saving refuse it at once, with the reason, instead of waiting for a writer or a
    reader that never comes."""
    path = tmp_path / "state.json"
    os.mkfifo(path if where == "state" else path.with_name("state.json.tmp"))
    if where == "state":
        state, found = StateFile(path).load()
        assert state == State()
        assert found is not None
        assert "a FIFO" in found
    else:
        with pytest.raises(OSError, match=r"state\.json\.tmp"):
            StateFile(path).save(State(session_id=4097, password=b"p" * 16))


def test_the_file_holds_only_the_session_once_rewrites_are_recorded(tmp_path: Path) -> None:
    """A state with no earlier version's rewrites left is saved as the session alone: the
    sidecar keeps what it manages in ZooKeeper, not on disk."""
    state_file = StateFile(tmp_path / "state.json")
    state_file.save(State(0x1001, PASSWORD, "E"))
    doc = json.loads(state_file.path.read_text())
    assert set(doc) == {"session_id", "password", "engine"}
    assert state_file.load() == (State(0x1001, PASSWORD, "E"), None)
