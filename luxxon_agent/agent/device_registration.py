"""Register a device key as an operator of a workspace (the wallet-signed delegation).

What `luxxon operators register` does from the operator's own computer; the
demo and the tests do it in code. The wallet signs an OperatorDelegation for
the device address; the server then accepts that device's telemetry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from luxxon_agent.agent.provision import Account
from luxxon_agent.errors import ApiError
from luxxon_agent.models import DeviceKind, RegisterOperatorRequest
from luxxon_agent.secret import Secret

DELEGATION_DAYS = 30


async def register_device(
    base_url: str,
    account: Account,
    device_key: Secret,
    *,
    label: str,
    kind: DeviceKind = DeviceKind.LAPTOP,
) -> bool:
    """True once registered; False when the server has no operator endpoint (404)."""
    from luxxon_agent.api import AsyncLuxxonClient, unwrap
    from luxxon_agent.telemetry import Delegation, KeySigner

    assert account.api_key is not None
    async with AsyncLuxxonClient(base_url, api_key=account.api_key) as client:
        chain_id = (await client.config()).chain_id
    now = datetime.now(UTC)
    delegation = Delegation.create(
        account.workspace_id,
        label,
        KeySigner(device_key).address,
        now,
        now + timedelta(days=DELEGATION_DAYS),
    )
    body = RegisterOperatorRequest(
        label=label,
        kind=kind,
        device_address=delegation.device_address,
        issued_at=delegation.issued_at,
        expires_at=delegation.expires_at,
        signature=delegation.sign(KeySigner(account.wallet_key), chain_id),
    )
    path = f"/workspaces/{account.workspace_id}/operators"
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.post(
            base_url + path,
            json=body.to_wire(),
            headers={"Authorization": f"Bearer {account.api_key.reveal()}"},
        )
    if response.status_code == 404 and "WORKSPACE_NOT_FOUND" not in response.text:
        return False
    if not response.is_success:
        data = unwrap(response.json()) if response.content else {}
        raise ApiError(
            response.status_code,
            str(data.get("code", "UNKNOWN")),
            str(data.get("message", response.reason_phrase)),
            data.get("detail"),
            method="POST",
            path=path,
        )
    return True
