"""luxxon-agent: the operator side of the Luxxon live-video marketplace.

Packages, one per concern (see docs/architecture.md):
api (HTTP client), identity (keys, SIWE), position (GPS), telemetry (signing,
spool, upload), video (WHIP), agent (supervisor), stub (local API server),
cli (the two commands). Shared here: models, errors, meter, clock, backoff.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
