"""The documentation stays true: generated pages match their sources, every log event the
code emits is catalogued (and nothing else is), and the site builds without a broken link."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from sidecar.cli import _parser
from sidecar.model import Connection
from sidecar.plan import Action
from sidecar.report.catalogue import EVENTS
from tests import docs_gen

ROOT = docs_gen.ROOT
_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
# Other programs' flags the pages show: docker run, dockerd, pip-compile, mkdocs, bench/run,
# scripts/lock.
_OTHER_FLAGS = {"--group-add", "--name", "--network", "--bip", "--generate-hashes", "--strict"}
_OTHER_FLAGS |= {
    "--quick",
    "--instances",
    "--fleet-chaos",
    "--upgrade",
    "--upgrade-package",
    "--tls",
    "--nat",
    "--one-sidecar",
}
_OTHER_FLAGS |= {"--label", "--now", "--time"}  # podman's and systemctl's (deployment.md)
_OTHER_FLAGS |= {"--cap-add", "--cap-drop", "--read-only"}  # docker run
_OTHER_FLAGS |= {"--dport", "--to-destination", "--bounding-set"}  # iptables, setpriv


def _text(node: ast.expr) -> str | None:
    """A literal string, or an f-string with each placeholder shown as ``<name>``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                assert isinstance(value, ast.FormattedValue)
                parts.append(f"<{ast.unparse(value.value).rpartition('.')[2]}>")
        return "".join(parts)
    return None


def _emitted(tree: ast.AST) -> set[str]:
    """Event names one module logs: a logger method (or a ``log`` picked from them) called
    with a literal name (Events' own methods pass on names made as below);
    ``Events.connection(system, state)`` logs ``<system>_<state>`` and
    ``Events.recovered(system)`` ``<system>_answering``; a name chosen between literals and
    assigned to ``event``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "event" for t in node.targets
        ):
            names |= {
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = _text(node.args[0])
        if (method in _LEVELS or method == "log") and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))  # a name made at run time is Events' own
        elif method == "connection" and first is not None and len(node.args) > 1:
            second = node.args[1]
            states = _text(second)
            if states is None:  # ``state.value``: the connection states the client reports
                assert isinstance(second, ast.Attribute)
                assert second.attr == "value"
                names |= {f"{first}_{c.value}" for c in Connection}
            else:
                names.add(f"{first}_{states}")
        elif method == "recovered" and first is not None:
            names.add(f"{first}_answering")
    return names


def emitted_events() -> set[str]:
    """Every event name the sidecar's code can log."""
    names: set[str] = set()
    for path in (ROOT / "sidecar").rglob("*.py"):
        names |= _emitted(ast.parse(path.read_text(), str(path)))
    # Events.applied logs each decision that writes under its action's name; a forgotten
    # record is deleted by a write too.
    return names | {str(a) for a in Action if a.writes or a is Action.FORGET}


def test_every_emitted_event_is_in_the_catalogue_and_no_other() -> None:
    """An operator can look up every event name a log line can carry, and the catalogue
    lists no name the sidecar never logs."""
    emitted = emitted_events()
    assert emitted - EVENTS.keys() == set(), "add these to sidecar/report/catalogue/"
    assert EVENTS.keys() - emitted == set(), "no code logs these: remove them from the catalogue"


def test_scanner_finds_each_way_an_event_is_logged() -> None:
    """The scan sees literal names, connection states, recoveries and names chosen between
    literals (the drift check above would pass vacuously if it saw nothing)."""
    source = (
        "log.info('a_b')\nself.x.warning(f'{s}_{t}')\nlog('c', x=1)\n"
        "events.connection(f'rec {node.path}', 'bad')\n"
        "events.connection('zk', state.value)\nevents.connection('lease', 'held')\n"
        "events.recovered('docker')\nevent = 'd' if x else 'e'\nlog.info(name)\n"
    )
    assert _emitted(ast.parse(source)) == {
        "a_b", "rec <path>_bad", "c", "lease_held", "docker_answering", "d", "e",
        *(f"zk_{c.value}" for c in Connection),
    }  # fmt: skip


def test_generated_pages_match_their_sources() -> None:
    """The configuration, events and metrics pages and the README's troubleshooting table
    say what the settings model, the catalogue and the metrics registry say now."""
    stale = [
        str(path.relative_to(ROOT))
        for path, text in docs_gen.pages().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"out of date: {', '.join(stale)}; regenerate with `{docs_gen.COMMAND}`"


def test_site_builds_without_warnings(tmp_path: Path) -> None:
    """`mkdocs build --strict` turns every page into the site: no broken link or anchor,
    no page left out of the navigation."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "configuration" / "index.html").exists()


def test_docs_name_only_flags_that_exist() -> None:
    """A flag the README or a page names is one the command line accepts."""
    parser = _parser()
    known = {"--help", "--version", *_OTHER_FLAGS}
    for action in parser._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        known |= {o for a in action._actions for o in a.option_strings}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", page.read_text()))
        assert named <= known, f"{page.name}: {sorted(named - known)}"


def test_developing_section_starts_with_the_two_commands() -> None:
    """The README's "Developing" section opens with the demo, then the whole test suite."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Developing\n", 1)[1]
    commands = re.findall(r"^    (scripts/\S+)", section, re.MULTILINE)
    assert commands[:2] == ["scripts/demo", "scripts/test"]


def test_readme_links_lead_to_pages() -> None:
    """Every page the README links to exists (the site build checks the pages' own links)."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert targets
    assert [t for t in targets if not (ROOT / t).is_file()] == []
