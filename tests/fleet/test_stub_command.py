"""`luxxon-agent stub --operator-dispatch/--no-operator-dispatch`: the real command and
the capability it advertises in /config (the behaviour each way: test_stub_fleet.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.stub.stub_process import stub_process


@pytest.mark.parametrize(
    ("options", "features"),
    [
        ((), ["per-operator-dispatch"]),
        (("--operator-dispatch",), ["per-operator-dispatch"]),
        (("--no-operator-dispatch",), []),
    ],
    ids=["default", "on", "off"],
)
def test_the_flag_sets_the_advertised_features(
    tmp_path: Path, options: tuple[str, ...], features: list[str]
) -> None:
    with stub_process(tmp_path, "--no-video", *options) as origin:
        config = httpx.get(f"{origin}/api/v1/config", timeout=5)
        assert config.status_code == 200, config.text
        assert config.json()["data"]["features"] == features
