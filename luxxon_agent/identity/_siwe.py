"""Wallet-signed calls: SIWE login and workspace creation (the signature is the auth)."""

from __future__ import annotations

from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.errors import AuthError
from luxxon_agent.identity._wallet import address_of, sign_message
from luxxon_agent.models import (
    CreateWorkspaceRequest,
    Role,
    WalletChallenge,
    WalletLoginResult,
    Workspace,
)
from luxxon_agent.secret import Secret


def _check_challenge(challenge: WalletChallenge, address: str) -> None:
    """Refuse to sign a message that is not about this wallet and this nonce."""
    if address.lower() not in challenge.message.lower() or challenge.nonce not in challenge.message:
        raise AuthError("the server's challenge does not name this wallet and nonce; not signing")


async def siwe_login(client: AsyncLuxxonClient, private_key: Secret) -> WalletLoginResult:
    """Challenge, sign the SIWE message as given, log in.

    The cookie is then in `client.session_cookie`.
    """
    address = address_of(private_key)
    challenge = await client.wallet_challenge(address)
    _check_challenge(challenge, address)
    signature = sign_message(private_key, challenge.message)
    result = await client.wallet_login(address, challenge.nonce, signature)
    if client.session_cookie is None:
        raise AuthError("login succeeded but the server set no lx_session cookie")
    return result


async def create_workspace_signed(
    client: AsyncLuxxonClient,
    private_key: Secret,
    *,
    slug: str,
    name: str,
    roles: list[Role],
) -> Workspace:
    """Get the workspace challenge, sign it with the wallet, create the workspace."""
    address = address_of(private_key)
    challenge = await client.workspace_challenge(address)
    _check_challenge(challenge, address)
    request = CreateWorkspaceRequest(
        slug=slug,
        name=name,
        wallet_address=address,
        signature=sign_message(private_key, challenge.message),
        nonce=challenge.nonce,
        roles=roles,
    )
    return await client.create_workspace(request)
