"""The one ASGI app: health, Slack events, and the routes each web feature adds."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from types import ModuleType

from slack_bolt.async_app import AsyncApp
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import family_page, stripe_checkout, stripe_webhooks
from bot.runtime import Runtime

# Each module adds its routes: `routes(runtime: Runtime) -> list[BaseRoute]`.
WEB_FEATURES: tuple[ModuleType, ...] = (stripe_checkout, stripe_webhooks, family_page)


def create_web_app(runtime: Runtime, slack_app: AsyncApp | None = None) -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        try:
            engine = runtime.read_engine or runtime.engine
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return JSONResponse(
                {"status": "error", "database": f"unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        return JSONResponse(
            {"status": "ok", "database": runtime.engine.dialect.name, "parts": runtime.parts}
        )

    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    for feature in WEB_FEATURES:
        routes.extend(feature.routes(runtime))
    if slack_app is not None:
        from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

        slack_handler = AsyncSlackRequestHandler(slack_app)

        async def slack_events(request: Request) -> Response:
            return await slack_handler.handle(request)

        # One URL for commands, interactivity, options and events.
        routes.append(Route("/slack/events", slack_events, methods=["POST"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Everything built at start-up lives as long as the process: moving it out of the
        # collector's reach keeps full collections short, and with them the slowest acks.
        gc.collect()
        gc.freeze()
        yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    return app
