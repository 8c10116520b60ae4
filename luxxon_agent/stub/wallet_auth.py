"""Wallet signatures: SIWE (EIP-4361) login messages and the workspace-creation challenge.

`siwe` pulls in web3 (seconds to import), so it is loaded on first use only.
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
    return siwe


def preload() -> None:
    """Import siwe now (the server calls this at start so no login waits on it)."""
    _siwe()


def _bad_signature(detail: str) -> HttpError:
    return HttpError(401, ErrorCode.INVALID_TOKEN, "wallet signature verification failed", detail)


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
    try:
        parsed.verify(signature, domain=config.siwe_domain, nonce=nonce, timestamp=now)
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
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except ValueError:
        raise _bad_signature("signature is malformed") from None
    if signer != address:
        raise _bad_signature("signature does not recover to the wallet")
