"""/readyz and /metrics, and the request timer behind the latency histograms.

/healthz (bot.web.app) only says the web process is alive and its database answers; /readyz says
whether the whole service is doing its job (bot.web.readiness); /metrics gives the numbers.
"""

from __future__ import annotations

import hmac
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.runtime import Runtime
from bot.web.metrics import RequestMetrics, RequestTimer, SnapshotCollector
from bot.web.readiness import Readiness, assess, unreachable
from storage.monitoring import Snapshot, take_snapshot

log = logging.getLogger("devicecare.web")


async def _snapshot(runtime: Runtime) -> tuple[Snapshot | None, Readiness]:
    try:
        async with runtime.reads() as store:
            snapshot = await take_snapshot(store, runtime.clock.now())
    except Exception as exc:  # noqa: BLE001 - reported as not ready, not raised
        log.warning("readiness: the database didn't answer (%s)", type(exc).__name__)
        return None, unreachable(exc)
    return snapshot, assess(snapshot, runtime.settings)


def _authorized(request: Request, runtime: Runtime) -> bool:
    token = runtime.settings.metrics_token
    if token is None or not token.get_secret_value():
        return True
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    return hmac.compare_digest(given.encode(), expected.encode())


def routes(runtime: Runtime) -> list[BaseRoute]:
    async def readyz(_request: Request) -> JSONResponse:
        _snap, readiness = await _snapshot(runtime)
        return JSONResponse(readiness.as_json(), status_code=readiness.http_status)

    async def metrics(request: Request) -> Response:
        if not _authorized(request, runtime):
            return Response(
                "Set the METRICS_TOKEN bearer token to read metrics.\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
                media_type="text/plain",
            )
        snapshot, readiness = await _snapshot(runtime)
        scrape = CollectorRegistry()
        scrape.register(SnapshotCollector(snapshot, readiness))
        body = generate_latest(scrape)
        own: RequestMetrics | None = getattr(request.app.state, "request_metrics", None)
        if own is not None:
            body += generate_latest(own.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/readyz", readyz), Route("/metrics", metrics)]


def instrument(app: Starlette) -> None:
    """Time every request of `app` for the latency histograms /metrics serves."""
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(RequestTimer, metrics=app.state.request_metrics)
