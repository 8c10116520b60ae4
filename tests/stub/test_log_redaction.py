"""Secrets never reach a log line: RedactingFilter on records, and a real `luxxon-agent stub -v`."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import httpx

from luxxon_agent.secret import RedactingFilter, install_redaction, redact
from tests.conftest import free_port
from tests.support import wait_healthy

LUXXON_AGENT = str(Path(sys.executable).with_name("luxxon-agent"))
STARTUP_TIMEOUT = 30.0

TOKEN = "Tk" + "q7Zr" * 8
API_KEY = "lxxn_test_" + "A1b2C3d4E5" * 4
COOKIE = "s3ss10nC00k1eValue_abc"
PRIVATE_KEY = "0x" + "4f" * 32
PASSWORD = "hunter2pass"
SECRETS = (TOKEN, API_KEY.removeprefix("lxxn_test_"), COOKIE, PRIVATE_KEY, PASSWORD)


def _record(msg: object, args: object = None) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None)
    record.args = args  # type: ignore[assignment]  # LogRecord accepts a tuple or a mapping
    return record


def _filtered(record: logging.LogRecord) -> str:
    assert RedactingFilter().filter(record) is True  # never drops a record
    text = logging.Formatter("%(message)s").format(record)
    for secret in SECRETS:
        assert secret not in text, text
    return text


def test_every_kind_of_secret_in_a_message_is_redacted() -> None:
    text = _filtered(
        _record(
            f"POST http://127.0.0.1:9/whip/{TOKEN} and /whep/{TOKEN}/res key {API_KEY}"
            f" Cookie: lx_session={COOKIE}; theme=dark wallet {PRIVATE_KEY}"
            f" upstream rtsp://cam:{PASSWORD}@10.0.0.2/live"
        )
    )
    assert text == (
        "POST http://127.0.0.1:9/whip/*** and /whep/***/res key lxxn_test_***"
        " Cookie: lx_session=***; theme=dark wallet 0x***"
        " upstream rtsp://***@10.0.0.2/live"
    )


def test_args_are_redacted_in_place_so_access_formatters_still_unpack_them() -> None:
    # uvicorn's access record: (client, method, path, http version, status)
    record = _record(
        '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "POST", f"/whip/{TOKEN}", "1.1", 404)
    )
    assert _filtered(record) == '127.0.0.1:5 - "POST /whip/*** HTTP/1.1" 404'
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.args[4] == 404


def test_non_string_args_and_mappings_are_redacted() -> None:
    url = httpx.URL(f"http://127.0.0.1:9/whip/{TOKEN}")
    assert _filtered(_record("HTTP Request: %s %s", ("POST", url))) == (
        "HTTP Request: POST http://127.0.0.1:9/whip/***"
    )
    assert _filtered(_record("key %(key)s", {"key": API_KEY})) == "key lxxn_test_***"


def test_a_secret_assembled_from_message_and_args_is_still_caught() -> None:
    assert _filtered(_record("url /whip/%s", (TOKEN,))) == "url /whip/***"


def test_exception_text_is_redacted() -> None:
    try:
        raise RuntimeError(f"could not reach http://h/whep/{TOKEN}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = _filtered(record)
    assert "RuntimeError: could not reach http://h/whep/***" in text


def test_redact_leaves_ordinary_text_and_short_hex_alone() -> None:
    text = "session ses_0123 ended, 600 s, signature 0x" + "ab" * 65 + " addr 0x" + "cd" * 20
    assert redact(text) == text


def test_install_redaction_adds_one_filter() -> None:
    logger = logging.getLogger("tests.stub.redaction")
    install_redaction(logger)
    install_redaction(logger)
    try:
        assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    finally:
        for found in list(logger.filters):
            logger.removeFilter(found)


async def test_verbose_stub_never_prints_a_whip_token(tmp_path: Path) -> None:
    port = free_port()
    whip_token = secrets.token_urlsafe(24)
    # a wide console: rich must not wrap a line and so split a token past the check
    env = os.environ | {"XDG_DATA_HOME": str(tmp_path / "data"), "COLUMNS": "1000"}
    proc = await asyncio.create_subprocess_exec(
        LUXXON_AGENT,
        "stub",
        "-v",
        "--port",
        str(port),
        "--db",
        ":memory:",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(f"{base}/api/v1/health", proc, STARTUP_TIMEOUT)
        async with httpx.AsyncClient(base_url=base) as http:
            offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            headers = {"Content-Type": "application/sdp"}
            whip = await http.post(f"/whip/{whip_token}", content=offer, headers=headers)
            assert whip.status_code == 404
            # an unrouted path under /whep/ goes through the app's own 404 handler
            deep = await http.post(f"/whep/{whip_token}/x/y", content=offer, headers=headers)
            assert deep.status_code == 404
            assert whip_token not in deep.text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    output = out.decode() + err.decode()
    assert proc.returncode in (0, -signal.SIGTERM), output[-2000:]
    # the access log did run (-v), and it shows the path with the token cut out
    assert "/whip/***" in output, output[-2000:]
    assert "/whep/***" in output, output[-2000:]
    assert whip_token not in output
    assert whip_token[:12] not in output
