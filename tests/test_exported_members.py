"""Each package's public face is its sorted `__all__`, and every listed name exists."""

import importlib

import pytest

PACKAGES = ["api", "identity", "position", "telemetry", "video", "stub", "agent"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(f"luxxon_agent.{package}")
    exported = module.__all__
    assert exported == sorted(exported), f"{package}.__all__ is not sorted"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
