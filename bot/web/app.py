"""The one ASGI app: health, Slack events, and the routes each web feature adds."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from types import ModuleType

from slack_bolt.async_app import AsyncApp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.runtime import Runtime
from bot.slack.gate import SlackGate, WorkspaceIdentity
from bot.web import family_page, monitoring, photo_page, stripe_checkout, stripe_webhooks
from bot.web.http_edge import Receive, Scope, Send, StrictTransportSecurity
from bot.web.proxies import trusted_proxy_middleware
from storage.db import ping

# Each module adds its routes: `routes(runtime: Runtime) -> list[BaseRoute]`.
WEB_FEATURES: tuple[ModuleType, ...] = (
    stripe_checkout,
    stripe_webhooks,
    family_page,
    photo_page,
    monitoring,
)


def create_web_app(runtime: Runtime, slack_app: AsyncApp | None = None) -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        try:
            engine = runtime.read_engine or runtime.engine
            await ping(engine)
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
    gate: SlackGate | None = None
    if slack_app is not None:
        from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

        slack_handler = AsyncSlackRequestHandler(slack_app)

        async def slack_events(scope: Scope, receive: Receive, send: Send) -> None:
            response = await slack_handler.handle(Request(scope, receive))
            await response(scope, receive, send)

        settings = runtime.settings
        assert settings.slack_signing_secret is not None
        identity = WorkspaceIdentity(
            slack_app.client, settings.slack_team_id, settings.slack_app_id
        )
        gate = SlackGate(slack_events, settings.slack_signing_secret.get_secret_value(), identity)
        # One URL for commands, interactivity, options and events, all through the gate.
        routes.append(Route("/slack/events", gate, methods=["POST"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Everything built at start-up lives as long as the process: moving it out of the
        # collector's reach keeps full collections short, and with them the slowest acks.
        gc.collect()
        gc.freeze()
        yield

    # Outermost: everything inside sees the real client (behind a trusted proxy).
    middleware: list[Middleware] = trusted_proxy_middleware(runtime.settings.trusted_proxies)
    if runtime.settings.public_base_url.lower().startswith("https://"):
        middleware.append(Middleware(StrictTransportSecurity))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.runtime = runtime
    monitoring.instrument(app)  # request latency for /metrics
    # Whom the Slack gate serves: `devicecare serve` asks Slack at start (see cli._serve_web).
    app.state.slack_identity = gate.identity if gate is not None else None
    return app
