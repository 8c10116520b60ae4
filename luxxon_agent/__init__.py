"""luxxon-agent: the operator side of the Luxxon live-video marketplace.

Packages, one per concern (see docs/architecture.md):
api (HTTP client), identity (keys, SIWE), position (GPS), telemetry (signing,
spool, upload), video (WHIP), agent (supervisor), stub (local API server),
cli (the two commands). The ground floor, shared by all: models, errors, meter,
clock, backoff, secret, geo, eip712, files, signals, wire.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
