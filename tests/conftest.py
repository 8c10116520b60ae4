"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import shutil

import pytest

from luxxon_agent.agent.localstub import free_port

__all__ = ["REQUIRE_SYSTEM_TOOLS", "free_port", "require_tool"]

REQUIRE_SYSTEM_TOOLS = os.environ.get("LUXXON_REQUIRE_SYSTEM_TOOLS") == "1"


def require_tool(name: str) -> str:
    """Path of a system tool a test needs; skip without it, except in CI where it must exist."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (bash .ci/system-deps installs it)"
    if REQUIRE_SYSTEM_TOOLS:
        pytest.fail(message)
    pytest.skip(message)
