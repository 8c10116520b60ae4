"""Each package's public face is its `__all__`, checked both ways.

- everything listed exists and is documented (a class or function with its
  own docstring) or used or named outside the package (other packages, tests,
  benchmarks, docs): an export nobody needs and nobody explains is dead;
- every public name the package's `__init__` binds is listed: nothing is
  public by accident.
"""

from __future__ import annotations

import importlib
import re
import types
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "luxxon_agent"
PACKAGES = ["agent", "api", "identity", "position", "stub", "telemetry", "video"]


@cache
def _text_outside(package: str) -> str:
    inside = PACKAGE_DIR / package
    files = [
        path
        for top in ("luxxon_agent", "tests", "benchmarks", "docs")
        for path in (ROOT / top).rglob("*")
        if path.suffix in (".py", ".md") and inside not in path.parents
    ]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_names_what_exists(package: str) -> None:
    module = importlib.import_module(f"luxxon_agent.{package}")
    exported = module.__all__
    assert exported == sorted(set(exported)), f"{package}.__all__ is not sorted and unique"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def _has_own_docstring(value: object) -> bool:
    if not isinstance(value, type | types.FunctionType):
        return False  # constants have no runtime docstring: they must be used or named
    doc = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
    # a dataclass without a docstring gets its signature as one
    return bool(doc) and not doc.startswith(f"{value.__name__}(")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_is_documented_or_used_outside(package: str) -> None:
    module = importlib.import_module(f"luxxon_agent.{package}")
    text = _text_outside(package)
    unused = [
        name
        for name in module.__all__
        if not _has_own_docstring(getattr(module, name)) and not re.search(rf"\b{name}\b", text)
    ]
    assert not unused, f"{package} exports undocumented names nobody outside uses: {unused}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_init_is_exported(package: str) -> None:
    module = importlib.import_module(f"luxxon_agent.{package}")
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    unlisted = sorted(public - set(module.__all__))
    assert not unlisted, (
        f"{package}/__init__.py binds public names missing from __all__: {unlisted}"
    )
