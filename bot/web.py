"""The one ASGI app: health now; Slack events, webhooks and invoice pages plug in here."""

from __future__ import annotations

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.runtime import Runtime


def create_web_app(runtime: Runtime) -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        try:
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return JSONResponse(
                {"status": "error", "database": f"unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        return JSONResponse(
            {"status": "ok", "database": runtime.engine.dialect.name, "parts": runtime.parts}
        )

    app = Starlette(routes=[Route("/healthz", healthz)])
    app.state.runtime = runtime
    return app
