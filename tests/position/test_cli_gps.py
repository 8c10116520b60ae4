"""`luxxon-agent gps check` and `gps dump`: exit codes and output, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from luxxon_agent.cli.agent import app
from tests.position.conftest import CORPUS

AGENT_CLI = str(Path(sys.executable).parent / "luxxon-agent")
runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENT_CLI, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_exits_0_with_a_usable_fix_and_shows_the_panel() -> None:
    result = run_cli(
        "gps", "check", "sim://?lat=4.711&lng=-74.072&hz=20", "--seconds", "5", "--stop-on-fix"
    )
    assert result.returncode == 0, result.stderr
    for label in ("usable fix", "accuracy", "sentence rate", "sentence types", "checksum"):
        assert label in result.stdout


def test_check_exits_1_without_a_fix_and_counts_checksum_failures() -> None:
    result = run_cli("gps", "check", f"nmea-file://{CORPUS / 'holux-gm-210.log'}?speed=0", "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["usable"] is False and summary["fixes"] == 0
    assert summary["checksum_failures"] == 1  # the truncated last sentence
    assert summary["sentence_types"]["RMC"] > 0
    assert "RMC status V" in summary["no_fix_reasons"]


def test_check_json_on_a_capture_with_fixes() -> None:
    result = runner.invoke(
        app, ["gps", "check", f"nmea-file://{CORPUS / 'ublox-zed-f9p-nmea.log'}?speed=0", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["usable"] is True
    assert summary["last_fix"]["lat"] < 0 and summary["last_fix"]["accuracy_m"] < 100
    assert {"GGA", "RMC", "GST", "GSA", "VTG"} <= set(summary["sentence_types"])


def test_check_gives_no_usable_fix_when_accuracy_is_unknown() -> None:
    # magellan-ec10 sends RMC only: positions, but no HDOP or GST to size the error
    result = runner.invoke(
        app, ["gps", "check", f"nmea-file://{CORPUS / 'magellan-ec10.log'}?speed=0", "--json"]
    )
    summary = json.loads(result.stdout)
    assert summary["fixes"] > 0 and summary["usable"] is False
    assert result.exit_code == 1


def test_dump_stops_after_seconds_and_prints_one_json_line_per_fix() -> None:
    result = runner.invoke(app, ["gps", "dump", "sim://?lat=1&lng=2&hz=50", "--seconds", "0.3"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert 3 <= len(lines) <= 30
    assert {"time", "lat", "lng", "accuracy_m", "quality", "source"} <= set(lines[0])
    assert lines[0]["source"] == "sim" and lines[0]["time"].endswith("Z")


def test_bad_source_is_a_one_line_error() -> None:
    result = run_cli("gps", "dump", "gps://nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown position source")
    assert len(result.stderr.strip().splitlines()) == 1
