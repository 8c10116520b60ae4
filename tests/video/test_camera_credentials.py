"""A camera's user:password never reaches an error message or a log line."""

from __future__ import annotations

import logging

import pytest

from luxxon_agent.errors import MediaError
from luxxon_agent.secret import redact, redact_url, strip_userinfo
from luxxon_agent.video import open_media_source
from tests.conftest import free_port

PASSWORD = "hunter2-Zq9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:pw@cam:554/s?x=1", "rtsp://***@cam:554/s?x=1"),
        # a raw "@" in the password: everything up to the host's "@" goes
        ("rtsp://admin:p@ss@10.0.0.9/live", "rtsp://***@10.0.0.9/live"),
        (
            "failed: 'rtsps://u:p@h/a' and rtsp://v:q@k",
            "failed: 'rtsps://***@h/a' and rtsp://***@k",
        ),
        ("rtsp://camera/stream", "rtsp://camera/stream"),
        ("user@example.com wrote", "user@example.com wrote"),
    ],
)
def test_strip_userinfo(text: str, expected: str) -> None:
    assert strip_userinfo(text) == expected


async def test_refused_rtsp_camera_error_and_logs_hide_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    with pytest.raises(MediaError) as failure:
        await open_media_source(url)
    message = str(failure.value)
    # FFmpeg's own text quotes the URL it could not open; the host stays for diagnosis
    assert "cannot open media source" in message and "rtsp://***@127.0.0.1" in message
    assert PASSWORD not in message
    # nothing chained to the error (a traceback would print it) quotes the URL either
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


def test_redact_and_redact_url_hide_user_and_password_even_with_a_raw_at() -> None:
    url = "rtsp://admin:p@ss@camera.local/stream"
    assert "p@ss" not in redact(url) and "admin" not in redact(url)
    assert redact_url(url) == "rtsp://camera.local/***"
