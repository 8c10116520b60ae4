"""Register a device key as an operator of a workspace (the wallet-signed delegation).

What `luxxon operators register` does from the operator's own computer; the
demo and the tests do it in code. The wallet signs an OperatorDelegation for
the device address (telemetry.delegation); the server then accepts that
device's telemetry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from luxxon_agent.agent.provision import Account
from luxxon_agent.errors import ApiError
from luxxon_agent.models import DeviceKind
from luxxon_agent.secret import Secret

DELEGATION_LIFETIME = timedelta(days=30)


async def register_device(
    base_url: str,
    account: Account,
    device_key: Secret,
    *,
    label: str,
    kind: DeviceKind = DeviceKind.LAPTOP,
) -> bool:
    """True once registered; False when the server has no operator endpoint (404)."""
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.eip712 import KeySigner
    from luxxon_agent.telemetry.delegation import register_operator

    if account.api_key is None:
        raise ValueError("registering a device needs the operator account's API key")
    async with AsyncLuxxonClient(base_url, api_key=account.api_key) as client:
        server = await client.config()
        try:
            await register_operator(
                client,
                workspace_id=account.workspace_id,
                label=label,
                kind=kind,
                device_address=KeySigner(device_key).address,
                wallet=KeySigner(account.wallet_key),
                chain_id=server.chain_id,
                issued_at=datetime.now(UTC),
                lifetime=DELEGATION_LIFETIME,
            )
        except ApiError as exc:
            if exc.status == 404 and exc.code != "WORKSPACE_NOT_FOUND":
                return False
            raise
    return True
