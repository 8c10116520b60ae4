"""Accounts for a local run: an operator workspace with its API key, and a consumer.

What a person does once with `luxxon wallet new / workspaces create / login /
keys create`, done in code for `luxxon-agent demo` and the agent's tests,
against any server speaking the contract (the stub on loopback here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from luxxon_agent.models import CreateApiKeyRequest, Environment, Role, Scope
from luxxon_agent.secret import Secret

OPERATOR_SCOPES = [Scope.SESSIONS_OPERATE, Scope.SESSIONS_READ, Scope.WALLET_READ]


@dataclass(frozen=True)
class Account:
    """A workspace and the credentials that act for it."""

    workspace_id: str
    slug: str
    wallet_address: str
    wallet_key: Secret = field(repr=False)
    session_cookie: Secret = field(repr=False)
    """The wallet's `lx_session` (consumer calls, key minting)."""
    api_key: Secret | None = field(default=None, repr=False)
    """Operator key with OPERATOR_SCOPES (operators only)."""


def new_private_key() -> Secret:
    """A fresh secp256k1 key as 0x-hex (eth-account's generator, as the CLI's wallet uses)."""
    from eth_account import Account

    return Secret("0x" + bytes(Account.create().key).hex())


async def create_account(base_url: str, slug: str, role: Role, *, timeout: float = 10.0) -> Account:
    """A new wallet, a workspace with `role`, a SIWE login, and for suppliers an API key."""
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import address_of, create_workspace_signed, siwe_login

    key = new_private_key()
    async with AsyncLuxxonClient(base_url, timeout=timeout) as client:
        workspace = await create_workspace_signed(
            client, key, slug=slug, name=slug.replace("-", " ").title(), roles=[role]
        )
        await siwe_login(client, key)
        if client.session_cookie is None:
            raise AssertionError("siwe_login guarantees a cookie")
        cookie = client.session_cookie
        api_key: Secret | None = None
        if role is Role.SUPPLIER:
            minted = await client.create_api_key(
                workspace.id,
                CreateApiKeyRequest(
                    label=f"{slug}-agent", environment=Environment.TEST, scopes=OPERATOR_SCOPES
                ),
            )
            if minted.plaintext is None:
                raise AssertionError("the server returned no plaintext for a new key")
            api_key = Secret(minted.plaintext)
    return Account(
        workspace_id=workspace.id,
        slug=slug,
        wallet_address=address_of(key),
        wallet_key=key,
        session_cookie=cookie,
        api_key=api_key,
    )
