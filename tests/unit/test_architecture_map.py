"""The map matches the land: the layer list in docs/architecture.md is the import-linter
contract's, every module of the package is placed in a layer, the layout tree names every
module, and every module below the loop is pure unless it says why not."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _documented_layers() -> list[set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(r"^\d+\. `([^`]+)`", section, flags=re.MULTILINE)
    return [{name.strip() for name in line.split("|")} for line in lines]


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    return [
        {name.strip().removeprefix("sidecar.") for name in layer.split("|")} for layer in layers
    ]


def test_the_documented_layers_are_the_contracts() -> None:
    """docs/architecture.md lists the layers import-linter enforces, in the same order."""
    assert _documented_layers() == _contract_layers()


# Modules at the planner's layer and below that may do I/O or log; every other one there is
# pure, and must be in the purity contract (so a new one is covered unless placed here).
MAY_DO_IO = {
    "config": "reads the environment and the configuration file",
    "logs": "sets up structlog and writes the log",
    "bounded_requests": "asks other hosts over sockets",
    "tls": "reads certificate files, makes TLS contexts",
    "files": "opens the files the sidecar is given",
}


def _pure_contract() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    pure = next(c for c in contracts if c["name"].startswith("The planner and its rules are pure"))
    return {name.removeprefix("sidecar.") for name in pure["source_modules"]}


def test_every_module_below_the_loop_is_pure_unless_said_otherwise() -> None:
    """Every module or package at the planner's layer and below is in the purity contract,
    except those that say why they may do I/O."""
    layers = _contract_layers()
    planner = next(i for i, layer in enumerate(layers) if "plan" in layer)
    lower = set().union(*layers[planner:])
    top_level_pure = {name for name in _pure_contract() if "." not in name}
    assert top_level_pure == lower - MAY_DO_IO.keys()


def test_every_module_of_the_package_is_in_a_layer() -> None:
    """A new top-level module or package must be given its place in the layers."""
    placed = set().union(*_contract_layers())
    package = ROOT / "sidecar"
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert modules <= placed, sorted(modules - placed)


def _laid_out() -> set[str]:
    """The top-level modules and packages the layout tree of docs/architecture.md names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    tree = section.split("    sidecar/\n", 1)[1].split("\n    testbed/", 1)[0]
    return set(re.findall(r"^      ([a-z_]+)(?:\.py|/)", tree, flags=re.MULTILINE))


def test_the_layout_tree_names_every_module_of_the_package() -> None:
    """Every top-level module and package is in the layout tree, and the tree names no
    module that is gone."""
    package = ROOT / "sidecar"
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert _laid_out() == modules
