"""Protocol constants of the Luxxon API and the agent's on-disk layout, defined once.

Client, stub, agent and CLI import them from here. Plain strings, stdlib only:
`luxxon --help` shows the production URL without loading pydantic (`models`).
"""

from __future__ import annotations

API_PREFIX = "/api/v1"
"""Every API route lives under this path."""

PRODUCTION_BASE_URL = "https://api.luxxon.dev/api/v1"
"""The API base URL used when none is configured."""

CONSISTENCY_HEADER = "X-Lx-Consistency-Token"
"""Set by the server on writes; the client echoes the latest one (read-your-writes)."""

SESSION_COOKIE = "lx_session"
"""The cookie a wallet (SIWE) login sets."""

SPOOL_FILE_NAME = "telemetry.sqlite3"
"""The agent keeps each operator's telemetry in `<state_dir>/<operator label>/` under this name."""
