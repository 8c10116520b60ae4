"""The stub's route modules, one per resource; app.ROUTE_MODULES lists them.

A route module exposes `router` (an APIRouter, paths relative to /api/v1) and
may declare `SCHEMA` (SQL the store runs at start, `CREATE TABLE IF NOT EXISTS`).
"""
