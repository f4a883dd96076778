"""Operational endpoints: health (database, engine, workers; 503 when degraded) and metrics.

The engine check is degraded while executions are parked (the store refused their state
repeatedly) or a commit failed in the last minute; ``python_threads`` while a python node's
function runs on after its attempt was cancelled or timed out.

Neither is rate limited. ``/health`` and ``/metrics`` are open (probes and scrapers);
``/v1/health`` follows the /v1 rule and needs a key when keys are configured.

In scale-out mode the health report adds what Redis says about the cluster (``redis``,
``orchestrators``, ``reaper``, ``queues``, ``dlq``, ``circuits``, and ``workers`` from their
heartbeats), and is degraded when PostgreSQL or Redis does not answer or no orchestrator or no
worker is alive (executions would not move), or no reaper is (the tasks of a worker that dies
would wait forever). A non-empty DLQ or an open circuit is reported, not degraded:
the service works, an operator or a downstream has to act. ``/metrics`` refreshes the cluster
gauges at scrape time, and answers even when Redis does not.
"""

from __future__ import annotations

import asyncio
import logging
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
from orchestrion.cluster.status import REDIS_TIMEOUT, Cluster
from orchestrion.errors import DispatchError
from orchestrion.handlers import function_threads

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

_DATABASE_TIMEOUT = 2.0
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthResponse, "description": "Degraded: a check failed"},
}


async def _database(ctx: ApiContext) -> HealthCheck:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_DATABASE_TIMEOUT):
            await ctx.engine.reads.check()
    except TimeoutError:
        return HealthCheck(status="fail", detail=f"no answer within {_DATABASE_TIMEOUT:g} s")
    except Exception as exc:  # any failure of the store is what this check reports
        return HealthCheck(status="fail", detail=f"{type(exc).__name__}: the store failed")
    latency = round((time.perf_counter() - started) * 1000, 3)
    return HealthCheck(status="ok", info={"latency_ms": latency})


def _engine(ctx: ApiContext) -> HealthCheck:
    if not ctx.engine_running:
        return HealthCheck(status="fail", detail="the engine is not running")
    faults = ctx.engine.commit_faults
    info: dict[str, Any] = {"owner": ctx.engine.owner, "commit_failures": faults.total}
    if faults.parked:
        info["parked"] = dict(faults.parked)
        detail = (
            f"{len(faults.parked)} execution(s) parked: the store refused their state"
            " repeatedly (see 'parked'); they move again after a restart"
        )
        return HealthCheck(status="fail", detail=detail, info=info)
    if faults.recent():
        detail = "a commit of the engine failed in the last minute (see the service log)"
        return HealthCheck(status="fail", detail=detail, info=info)
    return HealthCheck(status="ok", info=info)


def _python_threads() -> HealthCheck:
    """The threads of python nodes' sync functions (``handlers/function_threads.py``)."""
    stuck = function_threads.stuck()
    info = {
        "size": function_threads.size(),
        "busy": function_threads.busy(),
        "stuck": stuck,
    }
    if stuck:
        detail = (
            f"{stuck} python function(s) still running after their attempt was cancelled or"
            " timed out: each holds a thread until it returns (restart to free them)"
        )
        return HealthCheck(status="fail", detail=detail, info=info)
    return HealthCheck(status="ok", info=info)


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


def _unreachable(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"Redis did not answer within {REDIS_TIMEOUT:g} s"
    if isinstance(exc, DispatchError):
        return f"Redis is unreachable ({exc.kind})"
    return f"Redis answered something unreadable ({type(exc).__name__})"


async def _snapshot(ctx: ApiContext) -> tuple[float, Cluster]:
    """PING latency (ms) and the cluster snapshot, within ``REDIS_TIMEOUT`` together."""
    assert ctx.redis is not None
    async with asyncio.timeout(REDIS_TIMEOUT):
        latency = await ctx.redis.ping()
        return latency, await ctx.redis.read_cluster()


def _scaleout_workers(cluster: Cluster) -> HealthCheck:
    workers = cluster.workers
    info = {
        "mode": "scale-out",
        "live": len(workers),
        "concurrency": sum(w["concurrency"] for w in workers),
        "in_flight": sum(w["in_flight"] for w in workers),
        "queue_depth": sum(s.waiting for s in cluster.streams),
        "by_handler": cluster.workers_by_handler(),
        "by_capability": cluster.workers_by_capability(),
        "workers": workers,
    }
    if not workers:
        detail = "no live worker: nothing runs node attempts (start `orchestrion worker`)"
        return HealthCheck(status="fail", detail=detail, info=info)
    return HealthCheck(status="ok", info=info)


def _orchestrators(cluster: Cluster) -> HealthCheck:
    info = {"live": len(cluster.orchestrators), "orchestrators": cluster.orchestrators}
    if not cluster.orchestrators:
        detail = "no live orchestrator: executions do not move (start `orchestrion orchestrator`)"
        return HealthCheck(status="fail", detail=detail, info=info)
    return HealthCheck(status="ok", info=info)


def _reapers(cluster: Cluster) -> HealthCheck:
    info = {"live": len(cluster.reapers), "reapers": cluster.reapers}
    if not cluster.reapers:
        detail = (
            "no live reaper: the tasks of a worker that dies are never run again"
            " (start `orchestrion reaper`)"
        )
        return HealthCheck(status="fail", detail=detail, info=info)
    return HealthCheck(status="ok", info=info)


async def _scaleout_checks(ctx: ApiContext) -> dict[str, HealthCheck]:
    """The checks only scale-out has, and the workers seen through their heartbeats."""
    try:
        latency, cluster = await _snapshot(ctx)
    except Exception as exc:  # unreachable, slow, or answering nonsense: all fail the check
        detail = _unreachable(exc)
        logger.warning("health: %s: %s", detail, exc)
        down = HealthCheck(status="fail", detail=detail)
        return {
            name: down
            for name in ("redis", "workers", "orchestrators", "reaper", "queues", "dlq", "circuits")
        }
    open_circuits = cluster.open_circuits()
    queues = {s.name: {"length": s.length, "pending": s.pending} for s in cluster.streams}
    return {
        "redis": HealthCheck(
            status="ok", info={"latency_ms": latency, "prefix": ctx.settings.redis_prefix}
        ),
        "workers": _scaleout_workers(cluster),
        "orchestrators": _orchestrators(cluster),
        "reaper": _reapers(cluster),
        "queues": HealthCheck(status="ok", info={"streams": queues}),
        "dlq": HealthCheck(status="ok", info={"size": cluster.dlq_size}),
        "circuits": HealthCheck(
            status="ok",
            info={
                "total": len(cluster.circuits),
                "open": len(open_circuits),
                "circuits": open_circuits,
            },
        ),
    }


async def _health(ctx: ApiContext) -> JSONResponse:
    checks = {"database": await _database(ctx), "engine": _engine(ctx)}
    if ctx.redis is None:
        checks["workers"] = _workers(ctx)
    else:
        checks.update(await _scaleout_checks(ctx))
    checks["python_threads"] = _python_threads()
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
    if ctx.redis is not None:
        snapshot: Cluster | None = None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                snapshot = await ctx.redis.read_cluster()
        except Exception as exc:  # a scrape never fails because of Redis
            logger.warning("metrics: %s: %s", _unreachable(exc), exc)
        ctx.metrics.observe_cluster(snapshot)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
