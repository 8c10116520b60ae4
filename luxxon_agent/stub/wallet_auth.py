"""Wallet signatures: SIWE (EIP-4361) login messages and the workspace-creation challenge.

`siwe` pulls in web3 (seconds to import), so it is loaded on first use only.
Every signature is first recovered here (`personal_signer`, EIP-191 over
libsecp256k1): one that is malformed or recovers to no key at all answers
401 INVALID_SIGNATURE (the signature is the credential of these routes),
before any library sees it; one that recovers to another wallet answers
401 INVALID_TOKEN.
"""

from __future__ import annotations

import secrets
import string
import warnings
from datetime import datetime
from types import ModuleType

from luxxon_agent.models import ErrorCode, format_timestamp
from luxxon_agent.stub.config import StubConfig
from luxxon_agent.stub.http_error import HttpError

SIWE_STATEMENT = "Sign in to Luxxon."
_NONCE_ALPHABET = string.ascii_letters + string.digits


def new_nonce() -> str:
    """22 alphanumerics (~131 bits): EIP-4361 wants alphanumeric, at least 8."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(22))


def siwe_message(
    config: StubConfig, address: str, nonce: str, issued_at: datetime, expires_at: datetime
) -> str:
    """The exact EIP-4361 text the wallet signs (no trailing newline)."""
    return "\n".join(
        [
            f"{config.siwe_domain} wants you to sign in with your Ethereum account:",
            address,
            "",
            SIWE_STATEMENT,
            "",
            f"URI: {config.siwe_uri}",
            "Version: 1",
            f"Chain ID: {config.chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {format_timestamp(issued_at)}",
            f"Expiration Time: {format_timestamp(expires_at)}",
        ]
    )


def workspace_message(
    config: StubConfig, address: str, nonce: str, issued_at: datetime, expires_at: datetime
) -> str:
    """The text signed (EIP-191 personal_sign) to create a workspace owned by `address`."""
    return "\n".join(
        [
            f"{config.siwe_domain} asks you to create a Luxxon workspace owned by:",
            address,
            "",
            f"URI: {config.siwe_uri}",
            f"Chain ID: {config.chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {format_timestamp(issued_at)}",
            f"Expiration Time: {format_timestamp(expires_at)}",
        ]
    )


def _siwe() -> ModuleType:
    with warnings.catch_warnings():
        # abnf 2.8 warns about siwe's grammar redefining core rules; harmless
        warnings.filterwarnings("ignore", module=r"abnf\.")
        import siwe
    module: ModuleType = siwe
    return module


def preload() -> None:
    """Import siwe now (the server calls this at start so no login waits on it)."""
    _siwe()


def _bad_signature(detail: str) -> HttpError:
    return HttpError(401, ErrorCode.INVALID_TOKEN, "wallet signature verification failed", detail)


def _unverifiable(detail: str) -> HttpError:
    return HttpError(401, ErrorCode.INVALID_SIGNATURE, "signature: cannot be verified", detail)


def personal_signer(message: str, signature: str) -> str:
    """The checksummed address whose key personal_sign-ed (EIP-191) `message`."""
    from eth_hash.auto import keccak

    from luxxon_agent.eip712 import recover_address, signature_bytes
    from luxxon_agent.errors import SignatureError

    text = message.encode()
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text)
    try:
        raw = signature_bytes(signature)
        # some hardware wallets write v as 0/1; a login nonce is single-use, so both
        # encodings of one signature are fine here (telemetry insists on 27/28)
        if raw[64] in (0, 1):
            raw = raw[:64] + bytes([raw[64] + 27])
        return recover_address(digest, raw)
    except SignatureError as exc:
        raise _unverifiable(str(exc)) from None


def verify_siwe(
    config: StubConfig, message: str, signature: str, *, address: str, nonce: str, now: datetime
) -> None:
    """Check a SIWE login with the `siwe` library: domain, uri, chain id, nonce, expiry, signer."""
    siwe = _siwe()
    try:
        parsed = siwe.SiweMessage.from_message(message)
    except ValueError as exc:
        raise _bad_signature(f"challenge message does not parse: {exc}") from None
    if parsed.uri.rstrip("/") != config.siwe_uri:
        raise _bad_signature("URI mismatch")
    if parsed.chain_id != config.chain_id:
        raise _bad_signature("chain id mismatch")
    if parsed.address != address:
        raise _bad_signature("address mismatch")
    personal_signer(message, signature)  # refuses what recovers to no key
    from eth_keys.exceptions import BadSignature

    try:
        parsed.verify(signature, domain=config.siwe_domain, nonce=nonce, timestamp=now)
    except BadSignature:
        raise _unverifiable("signature does not recover to a public key") from None
    except siwe.ExpiredMessage:
        raise _bad_signature("message expired") from None
    except siwe.DomainMismatch:
        raise _bad_signature("domain mismatch") from None
    except siwe.NonceMismatch:
        raise _bad_signature("nonce mismatch") from None
    except siwe.VerificationError:
        raise _bad_signature("signature does not recover to the wallet") from None


def verify_personal_sign(message: str, signature: str, *, address: str) -> None:
    """EIP-191 personal_sign: the signature over `message` must recover to `address`."""
    if personal_signer(message, signature) != address:
        raise _bad_signature("signature does not recover to the wallet")
