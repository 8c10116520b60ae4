"""Bad input answers like a production server: a 4xx naming what was wrong, never a 500,
the keep-alive connection intact, and nothing stored (issue 12, items 1, 2 and 6)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from luxxon_agent.eip712 import KeySigner
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, sign_sample
from tests.stub.conftest import Harness, ServedHarness, data, error

UNRECOVERABLE = [
    "0x" + "11" * 64 + "1b",  # r = s = 0x1111…, v = 27: no point on the curve recovers
    "0x" + "00" * 65,  # all zeros
]


@pytest.mark.parametrize("signature", UNRECOVERABLE)
async def test_a_signature_that_recovers_to_no_key_is_401_invalid_signature_at_login(
    harness: Harness, signature: str
) -> None:
    actor = harness.actor()
    challenge = await actor.challenge()
    before = harness.snapshot()
    response = await actor.http.post(
        "/auth/wallet/login",
        json={
            "walletAddress": actor.account.address,
            "nonce": challenge["nonce"],
            "signature": signature,
        },
    )
    assert "signature" in error(response, 401, "INVALID_SIGNATURE")["message"]
    assert harness.snapshot() == before  # the nonce is still unused
    await actor.login()


@pytest.mark.parametrize("signature", UNRECOVERABLE)
async def test_a_signature_that_recovers_to_no_key_is_401_invalid_signature_at_workspaces(
    harness: Harness, signature: str
) -> None:
    actor = harness.actor()
    challenge = await actor.challenge("workspaces")
    before = harness.snapshot()
    body = {
        "slug": "nokey",
        "name": "No key",
        "walletAddress": actor.account.address,
        "signature": signature,
        "nonce": challenge["nonce"],
        "roles": ["SUPPLIER"],
    }
    error(await actor.http.post("/workspaces", json=body), 401, "INVALID_SIGNATURE")
    assert harness.snapshot() == before


async def _exchange(origin: str, requests: list[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    """Send `requests` one after another on ONE TCP connection; each response in order."""
    parts = urlsplit(origin)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    answers = []
    try:
        for raw in requests:
            writer.write(raw)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answers.append((int(status_line.split()[1]), headers, body))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def _request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEALTH = _request("GET", "/api/v1/health")


async def test_infinite_accuracy_in_a_signed_sample_is_400_and_the_connection_lives_on(
    served: ServedHarness,
) -> None:
    operator, _, started = await served.live()
    sid = started["session"]["id"]
    actor_key = operator.headers["Authorization"]
    await served.clock.advance(5)
    payload = TelemetryPayload.from_reading(sid, served.clock.now(), 4.711, -74.072, 3.0, "gps")
    sample = sign_sample(KeySigner(Secret("0x" + "42" * 32)), payload, 8453).to_wire()
    sample["accuracyMeters"] = float("inf")
    body = json.dumps(sample, allow_nan=True).encode()
    assert b"Infinity" in body
    before = served.snapshot()
    first, second = await _exchange(
        served.origin,
        [
            _request(
                "POST",
                f"/api/v1/sessions/{sid}/telemetry",
                body,
                Authorization=actor_key,
                Content_Type="application/json",
            ),
            HEALTH,
        ],
    )
    assert first[0] == 400, first
    problem = json.loads(first[2])
    assert problem["code"] == "INVALID_INPUT" and "Infinity" in problem["message"]
    assert second[0] == 200  # the same connection answers the next request
    assert served.snapshot() == before


@pytest.mark.parametrize(
    ("path", "field", "raw"),
    [
        ("/workspaces/{ws}/location", "lat", "NaN"),
        ("/workspaces/{ws}/location", "accuracyMeters", "1e999"),
        ("/workspaces/{ws}", "coverageRadiusMeters", "-Infinity"),
    ],
)
async def test_non_finite_numbers_are_refused_at_the_edge(
    served: ServedHarness, path: str, field: str, raw: str
) -> None:
    actor, operator = await served.supplier()
    body = {"lat": 4.7, "lng": -74.0, "accuracyMeters": 3.0, "sequence": 1}
    text = json.dumps(body | {field: "X"}).replace('"X"', raw)
    method = "PATCH" if path == "/workspaces/{ws}" else "POST"
    before = served.snapshot()
    response = await operator.request(
        method,
        path.format(ws=actor.workspace_id),
        content=text,
        headers={"Content-Type": "application/json"},
    )
    assert raw.lstrip("-") in error(response, 400, "INVALID_INPUT")["message"]
    assert served.snapshot() == before


async def test_405_says_which_methods_are_allowed(harness: Harness) -> None:
    async with harness.client() as http:
        response = await http.put("/health")
        assert error(response, 405, "METHOD_NOT_ALLOWED")["message"].startswith("PUT")
        assert response.headers["Allow"] == "GET"
        response = await http.patch("/sessions")
        error(response, 405, "METHOD_NOT_ALLOWED")
        assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_a_body_over_64_kib_is_413_before_it_is_read(served: ServedHarness) -> None:
    limit = 64 * 1024
    # a declared length far past the limit is refused at once: the 10 MB are never sent
    (declared,) = await _exchange(
        served.origin,
        [
            b"POST /api/v1/auth/wallet/challenge HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        ],
    )
    assert declared[0] == 413 and str(limit) in json.loads(declared[2])["message"]
    assert declared[1]["connection"] == "close"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):  # 40 x 4 KiB, chunked: no Content-Length to go by
            yield b" " * 4096

    async with served.client() as http:
        streamed = await http.post(
            "/auth/wallet/challenge", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert str(limit) in error(streamed, 413, "INVALID_INPUT")["message"]
        # just under the limit is read and validated as usual
        padded = json.dumps({"walletAddress": "0x" + "ab" * 20}).ljust(limit - 1)
        assert len(padded) < limit
        ok = await http.post(
            "/auth/wallet/challenge", content=padded, headers={"Content-Type": "application/json"}
        )
        assert data(ok)["nonce"]


async def test_the_openapi_document_lists_every_status_with_the_error_body(
    harness: Harness,
) -> None:
    async with harness.client() as http:
        document = data_free(await http.get("/docs-json"))
    telemetry = document["paths"]["/api/v1/sessions/{session_id}/telemetry"]["post"]
    assert set(telemetry["responses"]) == {
        "200", "201", "400", "401", "403", "404", "409", "413", "422"
    }  # fmt: skip
    for status in ("400", "401", "403", "404", "409", "413", "422"):
        schema = telemetry["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(document["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "code", "message", "detail"
    }  # fmt: skip
    ok = telemetry["responses"]["201"]["content"]["application/json"]["schema"]
    envelope = document["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/TelemetryReceipt"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"] or "TelemetryReceipt" in str(operation), (
                f"{method} {path} still lists FastAPI's 422"
            )


def data_free(response: object) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response) and response.status_code == 200
    document: dict[str, object] = response.json()
    return document
