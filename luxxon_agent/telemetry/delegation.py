"""The operator delegation: a workspace wallet authorising one device key (EIP-712).

A drone can be lost or captured, so the wallet that receives the earnings
never lives on it. The wallet signs, once, on the operator's own computer:

    OperatorDelegation(string workspaceId, string label, address deviceAddress,
                       uint64 issuedAtMs, uint64 expiresAtMs)

under the domain {name: "Luxxon Operator Delegation", version: "1", chainId}.
The server then accepts telemetry signed by that device key for that
workspace until `expiresAtMs` or until the operator is revoked. `issuedAtMs`
makes every delegation distinct, so one that was revoked cannot be
registered again by replaying it (the server refuses a digest it has seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from luxxon_agent.eip712 import (
    KeySigner,
    StructType,
    normalize_address,
    recover_address,
    signature_bytes,
)
from luxxon_agent.models import DeviceKind, Operator, RegisterOperatorRequest
from luxxon_agent.telemetry.signing import datetime_to_ms, ms_to_datetime

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient

DELEGATION_DOMAIN_NAME = "Luxxon Operator Delegation"
DELEGATION_DOMAIN_VERSION = "1"
DELEGATION_TYPE = StructType(
    "OperatorDelegation",
    (
        ("string", "workspaceId"),
        ("string", "label"),
        ("address", "deviceAddress"),
        ("uint64", "issuedAtMs"),
        ("uint64", "expiresAtMs"),
    ),
)


@dataclass(frozen=True, slots=True)
class Delegation:
    """What the workspace wallet signs to let a device key sign telemetry."""

    workspace_id: str
    label: str
    device_address: str
    issued_at_ms: int
    expires_at_ms: int

    @classmethod
    def create(
        cls,
        workspace_id: str,
        label: str,
        device_address: str,
        issued_at: datetime,
        expires_at: datetime,
    ) -> Delegation:
        if expires_at <= issued_at:
            raise ValueError("a delegation must expire after it is issued")
        return cls(
            workspace_id=workspace_id,
            label=label,
            device_address=normalize_address(device_address),
            issued_at_ms=datetime_to_ms(issued_at),
            expires_at_ms=datetime_to_ms(expires_at),
        )

    @property
    def issued_at(self) -> datetime:
        return ms_to_datetime(self.issued_at_ms)

    @property
    def expires_at(self) -> datetime:
        return ms_to_datetime(self.expires_at_ms)

    def message(self) -> dict[str, object]:
        return {
            "workspaceId": self.workspace_id,
            "label": self.label,
            "deviceAddress": self.device_address,
            "issuedAtMs": self.issued_at_ms,
            "expiresAtMs": self.expires_at_ms,
        }

    def typed_data(self, chain_id: int) -> dict[str, object]:
        """The eth_signTypedData_v4 JSON (for a hardware or browser wallet)."""
        return DELEGATION_TYPE.typed_data(
            DELEGATION_DOMAIN_NAME, DELEGATION_DOMAIN_VERSION, chain_id, self.message()
        )

    def digest(self, chain_id: int) -> bytes:
        return DELEGATION_TYPE.digest(
            DELEGATION_DOMAIN_NAME, DELEGATION_DOMAIN_VERSION, chain_id, self.message()
        )

    def sign(self, wallet: KeySigner, chain_id: int) -> str:
        """The wallet's `0x…` signature over this delegation."""
        return "0x" + wallet.sign_digest(self.digest(chain_id)).hex()

    def recover(self, signature: str, chain_id: int) -> str:
        """The address that signed this delegation (compare with the workspace wallet)."""
        return recover_address(self.digest(chain_id), signature_bytes(signature))


# ---- registering the device (`luxxon operators register`) ----------------------------------


async def register_operator(
    client: AsyncLuxxonClient,
    *,
    workspace_id: str,
    label: str,
    kind: DeviceKind,
    device_address: str,
    wallet: KeySigner,
    chain_id: int,
    issued_at: datetime,
    lifetime: timedelta,
) -> Operator:
    """Sign the delegation with the workspace wallet and register the device."""
    delegation = Delegation.create(
        workspace_id, label, device_address, issued_at, issued_at + lifetime
    )
    request = RegisterOperatorRequest(
        label=label,
        kind=kind,
        device_address=delegation.device_address,
        issued_at=delegation.issued_at,
        expires_at=delegation.expires_at,
        signature=delegation.sign(wallet, chain_id),
    )
    return await client.register_operator(workspace_id, request)
