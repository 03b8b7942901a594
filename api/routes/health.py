"""GET /health: Temporal, the gRPC services and the database, each checked with a timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2
from sqlalchemy import text

from api.deps import ConnectorDep, EngineDep, StubsDep
from api.errors import ApiError
from api.models import ErrorDetail, HealthPublic
from core.db import run_db

log = logging.getLogger("api")
router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 2.0


async def _check(probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except TimeoutError:
        return "down: no answer within 2s"
    except grpc.aio.AioRpcError as err:
        return f"down: {err.code().name}"
    except ApiError:
        return "down: unreachable"
    except Exception as err:
        log.warning("health check failed: %s: %s", type(err).__name__, err)
        return f"down: {type(err).__name__}"
    return "ok"


@router.get(
    "/health",
    response_model=HealthPublic,
    response_model_exclude_none=True,
    responses={503: {"model": HealthPublic, "description": "A part is down; `error` says which"}},
)
async def health(
    connector: ConnectorDep, stubs: StubsDep, engine: EngineDep
) -> HealthPublic | JSONResponse:
    """200 when Temporal, the services and the database all answer; 503 names the ones down."""

    async def temporal() -> None:
        client = await connector.get()
        ok = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT))
        if not ok:
            raise RuntimeError("not serving")

    async def services() -> None:
        try:
            resp = await stubs.health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=CHECK_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            # A server without the health service still answered: it is up.
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            raise
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("not serving")

    async def database() -> None:
        await run_db(engine, lambda s: s.connection().execute(text("SELECT 1")))

    t, s, d = await asyncio.gather(_check(temporal()), _check(services()), _check(database()))
    report = HealthPublic(status="ok", temporal=t, services=s, database=d)
    down = [name for name, v in (("temporal", t), ("services", s), ("database", d)) if v != "ok"]
    if not down:
        return report
    report.status = "unavailable"
    report.error = ErrorDetail(code="UNAVAILABLE", message=f"down: {', '.join(down)}")
    return JSONResponse(report.model_dump(mode="json", exclude_none=True), status_code=503)
