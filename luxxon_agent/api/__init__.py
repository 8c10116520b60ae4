"""The Luxxon API client: `AsyncLuxxonClient` over every endpoint of the contract.

    async with AsyncLuxxonClient(base_url, api_key=Secret(key)) as client:
        sessions = await client.list_sessions()

Envelopes are unwrapped (bare payloads accepted too), error bodies raise
`luxxon_agent.errors.ApiError`, transport failures `RequestTimeout` /
`NetworkError`; idempotent calls retry per `RetryPolicy`. `LuxxonClient` is
the same client, blocking (`with LuxxonClient(base_url) as c: c.health()`).
"""

from luxxon_agent.api._client import AsyncLuxxonClient
from luxxon_agent.api._envelope import unwrap
from luxxon_agent.api._retry import RETRY_STATUSES, RetryPolicy
from luxxon_agent.api._sync_client import LuxxonClient

__all__ = [
    "AsyncLuxxonClient",
    "LuxxonClient",
    "RETRY_STATUSES",
    "RetryPolicy",
    "unwrap",
]
