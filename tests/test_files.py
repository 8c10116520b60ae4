"""write_atomic: owner-only, atomic replacement, nothing left behind on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from luxxon_agent.files import write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_owner_only_file_in_owner_only_directory(tmp_path: Path) -> None:
    target = tmp_path / "new" / "secret.json"
    write_atomic(target, '{"k": "é"}')
    assert target.read_bytes() == '{"k": "é"}'.encode()
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["secret.json"]


def test_replaces_and_applies_a_public_mode(tmp_path: Path) -> None:
    target = tmp_path / "unit.service"
    write_atomic(target, b"old")
    write_atomic(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
