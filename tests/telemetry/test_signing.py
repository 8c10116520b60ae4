"""EIP-712 telemetry signatures: the vector, two independent digests, rounding, tampering."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from luxxon_agent.eip712 import SECP256K1_N, KeySigner, domain_separator
from luxxon_agent.errors import SignatureError
from luxxon_agent.models import TelemetrySample
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import (
    TelemetryPayload,
    recover_signer,
    sign_sample,
    telemetry_digest,
    telemetry_typed_data,
)
from luxxon_agent.telemetry.signing import TELEMETRY_TYPE

VECTOR = json.loads((Path(__file__).parent / "vector.json").read_text())
DOC = Path(__file__).parents[2] / "docs" / "telemetry-signing.md"
KEY = Secret(VECTOR["privateKey"])
CHAIN = VECTOR["chainId"]


def vector_payload() -> TelemetryPayload:
    reading = VECTOR["reading"]
    return TelemetryPayload.from_reading(
        VECTOR["sessionId"],
        datetime.fromisoformat(reading["capturedAt"].replace("Z", "+00:00")),
        reading["lat"],
        reading["lng"],
        reading["accuracyMeters"],
        reading["source"],
    )


def hand_built_digest(message: dict, chain_id: int) -> bytes:
    """EIP-712 from the spec with eth_abi + keccak only (no code shared with the package)."""
    domain_type = b"EIP712Domain(string name,string version,uint256 chainId)"
    separator = keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256"],
            [keccak(domain_type), keccak(b"Luxxon Telemetry"), keccak(b"1"), chain_id],
        )
    )
    type_hash = keccak(
        b"Telemetry(string sessionId,uint64 capturedAtMs,int32 latE7,int32 lngE7,"
        b"uint32 accuracyCm,string source)"
    )
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "bytes32", "uint64", "int32", "int32", "uint32", "bytes32"],
            [
                type_hash,
                keccak(message["sessionId"].encode()),
                message["capturedAtMs"],
                message["latE7"],
                message["lngE7"],
                message["accuracyCm"],
                keccak(message["source"].encode()),
            ],
        )
    )
    return keccak(b"\x19\x01" + separator + struct_hash)


def test_the_worked_example_vector():
    signer = KeySigner(KEY)
    assert signer.address == VECTOR["address"]
    payload = vector_payload()
    assert payload.message() == VECTOR["message"]
    assert "0x" + TELEMETRY_TYPE.type_hash.hex() == VECTOR["typeHash"]
    separator = domain_separator("Luxxon Telemetry", "1", CHAIN)
    assert "0x" + separator.hex() == VECTOR["domainSeparator"]
    assert "0x" + TELEMETRY_TYPE.hash_struct(payload.message()).hex() == VECTOR["structHash"]
    assert "0x" + telemetry_digest(payload, CHAIN).hex() == VECTOR["digest"]
    sample = sign_sample(signer, payload, CHAIN)
    assert sample.to_wire() == VECTOR["wire"]
    wire = TelemetrySample.model_validate(VECTOR["wire"])
    assert recover_signer(VECTOR["sessionId"], wire, CHAIN) == VECTOR["address"]


def test_the_doc_carries_the_same_vector():
    text = DOC.read_text()
    for field in ("privateKey", "address", "typeHash", "domainSeparator", "structHash", "digest"):
        assert VECTOR[field] in text, field
    assert VECTOR["wire"]["signature"] in text
    # the doc's JSON wire example parses to the vector's body
    block = re.search(r"```json\n(\{\s*\"capturedAt\".*?)```", text, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == VECTOR["wire"]


def test_digest_equals_a_hand_built_eth_abi_construction_and_eth_account():
    from eth_account.messages import encode_typed_data

    payload = vector_payload()
    ours = telemetry_digest(payload, CHAIN)
    assert ours == hand_built_digest(payload.message(), CHAIN)
    signable = encode_typed_data(full_message=telemetry_typed_data(payload, CHAIN))
    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == ours


@settings(max_examples=60, deadline=None)
@given(
    session_id=st.text(min_size=1, max_size=40),
    ms=st.integers(0, 2**64 - 1),
    lat_e7=st.integers(-900_000_000, 900_000_000),
    lng_e7=st.integers(-1_800_000_000, 1_800_000_000),
    acc=st.integers(0, 2**32 - 1),
    source=st.text(min_size=1, max_size=32),
    chain=st.integers(1, 2**64),
)
def test_digest_matches_hand_built_for_any_values(
    session_id, ms, lat_e7, lng_e7, acc, source, chain
):
    payload = TelemetryPayload(session_id, ms, lat_e7, lng_e7, acc, source)
    assert telemetry_digest(payload, chain) == hand_built_digest(payload.message(), chain)


def test_signature_equals_eth_account_and_recovers_there():
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    payload = vector_payload()
    sample = sign_sample(KeySigner(KEY), payload, CHAIN)
    typed = telemetry_typed_data(payload, CHAIN)
    theirs = Account.sign_typed_data(KEY.reveal(), full_message=typed)
    assert theirs.signature.hex().removeprefix("0x") == sample.signature[2:]
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=sample.signature) == VECTOR["address"]


def test_eth_account_runs_on_coincurve():
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend

    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-90, 90, allow_nan=False),
    lng=st.floats(-180, 180, allow_nan=False),
    acc=st.floats(0, 10_000, allow_nan=False),
    micros=st.integers(0, 10**15),
)
def test_server_recomputes_the_signed_integers_from_the_wire_json(lat, lng, acc, micros):
    captured = datetime.fromtimestamp(1_700_000_000, UTC).replace(microsecond=micros % 10**6)
    payload = TelemetryPayload.from_reading("s1", captured, lat, lng, acc, "gps")
    sample = payload.to_sample(b"\x00" * 65)
    # what crosses the wire is JSON text; the server parses it back to floats
    received = TelemetrySample.model_validate_json(json.dumps(sample.to_wire()))
    assert TelemetryPayload.from_sample("s1", received) == payload
    # the JSON numbers carry at most 7 decimals
    for value in (received.point.lat, received.point.lng):
        assert Decimal(repr(value)).as_tuple().exponent >= -7


def test_rounding_happens_before_signing_and_sending():
    captured = datetime(2026, 5, 13, 8, 42, 0, 999_999, tzinfo=UTC)
    payload = TelemetryPayload.from_reading("s1", captured, 4.711000049, -74.07200005, 3.456, "gps")
    assert (payload.lat_e7, payload.lng_e7, payload.accuracy_cm) == (47110000, -740720000, 346)
    sample = sign_sample(KeySigner(KEY), payload, CHAIN)
    wire = sample.to_wire()
    assert wire["point"] == {"lat": 4.711, "lng": -74.072}
    assert wire["capturedAt"] == "2026-05-13T08:42:00.999Z"
    assert wire["accuracyMeters"] == 3.46


def test_any_change_recovers_someone_else():
    signer = KeySigner(KEY)
    sample = sign_sample(signer, vector_payload(), CHAIN)
    sid = VECTOR["sessionId"]
    assert recover_signer(sid, sample, CHAIN) == signer.address
    nudged = sample.model_copy(update={"point": sample.point.model_copy(update={"lat": 4.7110002})})
    assert recover_signer(sid, nudged, CHAIN) != signer.address
    assert recover_signer("ses_other", sample, CHAIN) != signer.address
    assert recover_signer(sid, sample, 1) != signer.address
    relabelled = sample.model_copy(update={"source": "sim"})
    assert recover_signer(sid, relabelled, CHAIN) != signer.address


def test_malformed_and_high_s_signatures_are_refused():
    signer = KeySigner(KEY)
    sample = sign_sample(signer, vector_payload(), CHAIN)
    raw = bytes.fromhex(sample.signature[2:])
    s = int.from_bytes(raw[32:64], "big")
    flipped_v = 27 + (1 - (raw[64] - 27))
    high_s = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped_v])
    sid = VECTOR["sessionId"]
    with pytest.raises(SignatureError, match="canonical"):
        recover_signer(sid, sample.model_copy(update={"signature": "0x" + high_s.hex()}), CHAIN)
    with pytest.raises(SignatureError, match="65 bytes"):
        recover_signer(sid, sample.model_copy(update={"signature": "0x1234"}), CHAIN)
    for v in (5, 0, 1):  # 0/1 would be a second encoding of the one valid signature
        bad_v = raw[:64] + bytes([v])
        with pytest.raises(SignatureError, match="v must be"):
            recover_signer(sid, sample.model_copy(update={"signature": "0x" + bad_v.hex()}), CHAIN)
    assert raw[64] in (27, 28) and recover_signer(sid, sample, CHAIN) == signer.address


def test_signer_never_shows_its_key():
    signer = KeySigner(KEY)
    assert VECTOR["privateKey"][2:] not in repr(signer)
    assert repr(signer) == f"KeySigner({VECTOR['address']})"
    with pytest.raises(SignatureError):
        KeySigner(Secret("0x" + "00" * 32))


def test_delegation_digest_matches_eth_account_and_recovers_the_wallet():
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from luxxon_agent.telemetry import Delegation

    issued = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
    delegation = Delegation.create(
        "ws_1", "drone-7", VECTOR["address"].lower(), issued, issued.replace(year=2027)
    )
    assert delegation.device_address == VECTOR["address"]  # checksummed
    signable = encode_typed_data(full_message=delegation.typed_data(CHAIN))
    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == (
        delegation.digest(CHAIN)
    )
    wallet = KeySigner(Secret("0x" + "31" * 32))
    signature = delegation.sign(wallet, CHAIN)
    assert Account.recover_message(signable, signature=signature) == wallet.address
    assert delegation.recover(signature, CHAIN) == wallet.address
    with pytest.raises(ValueError):
        Delegation.create("ws_1", "d", VECTOR["address"], issued, issued)
