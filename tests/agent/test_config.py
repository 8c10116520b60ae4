"""AgentConfig: layers (TOML, env, overrides) and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from luxxon_agent.agent.config import (
    AssignedOnRestart,
    OnSigterm,
    env_name,
    load_config,
)
from luxxon_agent.errors import ConfigError
from luxxon_agent.position.fixed_source import parse_fixed_url

BASE = """
[api]
base_url = "http://127.0.0.1:9/api/v1"

[agent]
on_sigterm = "leave"

[[operators]]
label = "cam-1"
position = "fixed://?lat=52.5&lng=13.4&accuracy_m=2"
video = "testsrc://?size=320x240&fps=10"
device_kind = "FIXED"
coverage = { lat = 52.5, lng = 13.4, radius_m = 300 }

[[operators]]
label = "cam-2"
position = "sim://?lat=52.5&lng=13.4"
video = "testsrc://"
coverage = { lat = 52.5, lng = 13.4, radius_m = 300 }
on_sigterm = "end"
[operators.auto_accept]
enabled = true
min_rate_micro_usdc = 50
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(BASE)
    return path


def test_layers_toml_env_overrides(config_path: Path) -> None:
    env = {
        "LUXXON_AGENT_API_TIMEOUT_SECONDS": "3.5",
        "LUXXON_AGENT_OPERATORS_1_AUTO_ACCEPT_MIN_RATE_MICRO_USDC": "70",
        "LUXXON_AGENT_AGENT_RECLAIM_STUCK": "false",
        "LUXXON_AGENT_DEBUG": "1",  # not a setting of ours: ignored
        "PATH": "/usr/bin",
    }
    config = load_config(config_path, env, {"api.base_url": "http://127.0.0.1:1/api/v1/"})
    assert config.api.base_url == "http://127.0.0.1:1/api/v1"
    assert config.api.timeout_seconds == 3.5
    assert config.agent.reclaim_stuck is False
    cam1, cam2 = config.operators
    assert cam2.auto_accept.enabled and cam2.auto_accept.min_rate_micro_usdc == 70
    assert config.on_sigterm_for(cam1) is OnSigterm.LEAVE
    assert config.on_sigterm_for(cam2) is OnSigterm.END
    assert config.assigned_on_restart_for(cam1) is AssignedOnRestart.START
    assert cam1.coverage.contains(52.501, 13.4) and not cam1.coverage.contains(52.51, 13.4)
    with pytest.raises(ValueError):
        config.api.__setattr__("timeout_seconds", 1.0)  # frozen


def test_config_path_from_env(config_path: Path) -> None:
    config = load_config(None, {"LUXXON_AGENT_CONFIG": str(config_path)})
    assert [op.label for op in config.operators] == ["cam-1", "cam-2"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LUXXON_AGENT_AGENT_ON_SIGTERM": "pause"}, "agent.on_sigterm: Input should be 'end'"),
        ({"LUXXON_AGENT_API_BASEURL": "x"}, "LUXXON_AGENT_API_BASEURL: no such setting in [api]"),
        ({"LUXXON_AGENT_OPERATORS_0_NAME": "x"}, "LUXXON_AGENT_OPERATORS_0_NAME: no such operator"),
        ({"LUXXON_AGENT_AGENT_RECLAIM_STUCK": "maybe"}, "expected true or false"),
        ({"LUXXON_AGENT_OPERATORS_1_COVERAGE_RADIUS_M": "0"}, "operators[1].coverage.radius_m"),
        ({"LUXXON_AGENT_OPERATORS_0_VIDEO": "hdmi://0"}, "operators[0].video: unknown video"),
        ({"LUXXON_AGENT_API_BASE_URL": "ftp://x"}, "api.base_url: must be an http(s) URL"),
        ({"LUXXON_AGENT_STATUS_LISTEN": "8765"}, "status.listen: must be HOST:PORT"),
        (
            {"LUXXON_AGENT_STATUS_LISTEN": "0.0.0.0:8765"},
            "status.listen: 0.0.0.0 is not a loopback address",
        ),
        ({"LUXXON_AGENT_STATUS_LISTEN": "[::]:8765"}, "status.listen: [::] is not a loopback"),
        ({"LUXXON_AGENT_STATUS_LISTEN": "agent.lan:8765"}, "agent.lan is not a loopback"),
    ],
)
def test_env_errors_name_the_key(config_path: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_path, env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[api]\nbase_url = 'http://x/api/v1'\n", "operators: at least one [[operators]]"),
        ("[api\n", "not valid TOML"),
        ("[apii]\n", "apii: unknown key"),
        (BASE.replace('label = "cam-2"', 'label = "cam-1"'), "label 'cam-1' is used twice"),
        (
            BASE.replace("coverage = { lat = 52.5, lng = 13.4, radius_m = 300 }\n\n", "\n", 1),
            "operators[0].coverage: missing required key",
        ),
        (BASE.replace("fixed://?lat=52.5&", "fixed://?"), "operators[0].position: fixed://"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert expected in str(info.value)
    assert info.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", {})


def test_env_names_and_fixed_url() -> None:
    assert env_name(("operators", 2, "auto_accept", "enabled")) == (
        "LUXXON_AGENT_OPERATORS_2_AUTO_ACCEPT_ENABLED"
    )
    fixed = parse_fixed_url("fixed://?lat=1.5&lng=-2&accuracy_m=0.5")
    assert (fixed.lat, fixed.lng, fixed.accuracy_m) == (1.5, -2.0, 0.5)


@pytest.mark.parametrize("listen", ["127.0.0.1:8765", "127.0.0.2:1", "[::1]:8765", "localhost:9"])
def test_loopback_listen_accepted(config_path: Path, listen: str) -> None:
    config = load_config(config_path, {"LUXXON_AGENT_STATUS_LISTEN": listen})
    assert config.status.listen == listen
