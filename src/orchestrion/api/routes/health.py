"""Operational endpoints: health (database, engine, workers; 503 when degraded) and metrics.

Neither is rate limited. ``/health`` and ``/metrics`` are open (probes and scrapers);
``/v1/health`` follows the /v1 rule and needs a key when keys are configured.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrion import __version__
from orchestrion.api.auth import require_role
from orchestrion.api.context import ApiContext
from orchestrion.api.models import HealthCheck, HealthResponse
from orchestrion.api.problems import error_responses
from orchestrion.api.routes import Ctx

__all__ = ["router"]

router = APIRouter(tags=["health"])

_DATABASE_TIMEOUT = 2.0
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthResponse, "description": "Degraded: a check failed"},
}


async def _database(ctx: ApiContext) -> HealthCheck:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_DATABASE_TIMEOUT):
            await ctx.engine.store.list_definitions(limit=1)
    except TimeoutError:
        return HealthCheck(status="fail", detail=f"no answer within {_DATABASE_TIMEOUT:g} s")
    except Exception as exc:  # any failure of the store is what this check reports
        return HealthCheck(status="fail", detail=f"{type(exc).__name__}: the store failed")
    latency = round((time.perf_counter() - started) * 1000, 3)
    return HealthCheck(status="ok", info={"latency_ms": latency})


def _engine(ctx: ApiContext) -> HealthCheck:
    if not ctx.engine_running:
        return HealthCheck(status="fail", detail="the engine is not running")
    return HealthCheck(status="ok", info={"owner": ctx.engine.owner})


def _workers(ctx: ApiContext) -> HealthCheck:
    info = {
        "mode": "embedded",
        "concurrency": ctx.engine.concurrency,
        "in_flight": ctx.metrics.in_flight,
        "queue_depth": ctx.metrics.queue_depth,
    }
    if not ctx.engine_running:
        return HealthCheck(status="fail", detail="the embedded workers are stopped", info=info)
    return HealthCheck(status="ok", info=info)


async def _health(ctx: ApiContext) -> JSONResponse:
    checks = {"database": await _database(ctx), "engine": _engine(ctx), "workers": _workers(ctx)}
    ok = all(check.status == "ok" for check in checks.values())
    body = HealthResponse(status="ok" if ok else "degraded", checks=checks, version=__version__)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get(
    "/health",
    response_model=HealthResponse,
    responses=_HEALTH_RESPONSES,
    summary="Health of the database, the engine and the workers",
)
async def health(ctx: Ctx) -> JSONResponse:
    return await _health(ctx)


@router.get(
    "/v1/health",
    response_model=HealthResponse,
    dependencies=[Depends(require_role("viewer"))],
    responses={**_HEALTH_RESPONSES, **error_responses()},
    summary="Health of the database, the engine and the workers",
)
async def health_v1(ctx: Ctx) -> JSONResponse:
    return await _health(ctx)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    summary="Prometheus metrics",
)
async def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
