"""Imports run down the layers only, read from the real import graph (every module, by ast).

Low to high:

    ground floor   models, errors, clock, backoff, secret, geo, meter, eip712,
                   files, wire, signals (and the package root)
    1              api, position, identity
    2              telemetry, video
    3              agent
    4              cli

A module may import its own layer and those below. Lazy imports inside
functions and `TYPE_CHECKING` imports count too: a newcomer reads them alike.
The stub is beside the stack: it may import the ground floor, api (the
identity helpers it drives do), identity, telemetry and video; only cli and
the agent's local-stub launcher and demo may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "luxxon_agent"

GROUND_FLOOR = frozenset(
    {
        "backoff",
        "clock",
        "eip712",
        "errors",
        "files",
        "geo",
        "meter",
        "models",
        "secret",
        "signals",
        "wire",
    }
)
LAYER = {"api": 1, "position": 1, "identity": 1, "telemetry": 2, "video": 2, "agent": 3, "cli": 4}
STUB_MAY_IMPORT = frozenset({"api", "identity", "telemetry", "video"})
MAY_IMPORT_STUB = frozenset({"luxxon_agent.agent.localstub", "luxxon_agent.agent.demo"})

KNOWN_UPWARD_IMPORTS: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    base = PACKAGE_DIR / relative
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Every luxxon_agent module `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; write luxxon_agent.… in full"
            assert node.module is not None
            found.add(node.module)
            # `from luxxon_agent.x import y` may name a submodule y
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if _exists(f"{node.module}.{alias.name}")
            )
    return {name for name in found if name.split(".")[0] == "luxxon_agent"}


def _unit(module: str) -> str:
    """The package (or ground-floor module) a module belongs to; "" for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(unit: str) -> int:
    if unit == "" or unit in GROUND_FLOOR:
        return 0
    return LAYER[unit]


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for importer, imported in graph.items():
        source = _unit(importer)
        for target in imported:
            unit = _unit(target)
            if unit == source:
                continue
            if unit == "stub":
                allowed = source == "cli" or importer in MAY_IMPORT_STUB
            elif source == "stub":
                allowed = _layer(unit) == 0 or unit in STUB_MAY_IMPORT
            else:
                allowed = _layer(unit) <= _layer(source)
            if not allowed:
                found.add((importer, target))
    return found


def test_every_package_and_ground_floor_module_has_a_layer() -> None:
    units = {_unit(module) for module in _graph()}
    unknown = units - GROUND_FLOOR - set(LAYER) - {"", "stub"}
    assert not unknown, f"place these in the layer order of tests/test_layers.py: {unknown}"
    assert {"models", "eip712", "files", "api", "agent", "cli", "stub"} <= units


def test_imports_run_down_the_layers() -> None:
    violations = _violations(_graph()) - KNOWN_UPWARD_IMPORTS
    assert not violations, "imports up the layers: " + ", ".join(
        f"{a} -> {b}" for a, b in sorted(violations)
    )


def test_known_exceptions_are_still_real() -> None:
    # an entry whose import is gone must leave the list, so the list only shrinks
    stale = KNOWN_UPWARD_IMPORTS - _violations(_graph())
    assert not stale, f"remove from KNOWN_UPWARD_IMPORTS: {sorted(stale)}"


def test_the_checker_sees_an_upward_import() -> None:
    graph = {
        "luxxon_agent.models": {"luxxon_agent.api"},
        "luxxon_agent.video.publish": {"luxxon_agent.stub.app"},
        "luxxon_agent.stub.app": {"luxxon_agent.agent.config", "luxxon_agent.video"},
        "luxxon_agent.cli.stub": {"luxxon_agent.stub"},
    }
    assert _violations(graph) == {
        ("luxxon_agent.models", "luxxon_agent.api"),
        ("luxxon_agent.video.publish", "luxxon_agent.stub.app"),
        ("luxxon_agent.stub.app", "luxxon_agent.agent.config"),
    }
