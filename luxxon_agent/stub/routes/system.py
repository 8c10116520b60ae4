"""GET /health and GET /config: public."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.models import Health, ServerConfig
from luxxon_agent.stub.openapi import Envelope
from luxxon_agent.stub.runtime import ok, runtime
from luxxon_agent.stub.settlement import SETTLEMENT_CONTRACT, USDC_CONTRACT_BASE

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Envelope[Health])
async def health(request: Request) -> JSONResponse:
    return ok(request, Health(status="ok", time=runtime(request).now()))


@router.get("/config", response_model=Envelope[ServerConfig])
async def config(request: Request) -> JSONResponse:
    cfg = runtime(request).config
    return ok(
        request,
        ServerConfig(
            chain_id=cfg.chain_id,
            settlement_contract=SETTLEMENT_CONTRACT,
            usdc_contract=USDC_CONTRACT_BASE,
            fee_bps=cfg.fee_bps,
            meter=cfg.meter,
            telemetry_max_future_skew_ms=cfg.telemetry_max_future_skew_ms,
            telemetry_freshness_seconds=cfg.telemetry_freshness_seconds,
        ),
    )
