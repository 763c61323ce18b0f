"""The App Home: my open incidents, what waits on me, overdue invoices for billing staff."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.actors import resolve_actor
from bot.slack.home_blocks import build_home_view, build_unknown_home_view
from storage.home_queries import my_open_incidents, overdue_invoices, pending_approvals
from workflows.clock import local_date
from workflows.permissions import Permission


def register(app: AsyncApp, runtime: Runtime) -> None:
    @app.event("app_home_opened")
    async def handle_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = event["user"]
        actor = await resolve_actor(runtime, client, user_id)
        if actor is None or actor.staff_id is None:
            await client.views_publish(user_id=user_id, view=build_unknown_home_view())
            return
        today = local_date(runtime.clock.now(), runtime.settings.tz)
        async with runtime.reads() as store:
            session = store.session
            incidents = await my_open_incidents(session, actor.staff_id)
            approvals = (
                await pending_approvals(session)
                if actor.can(Permission.OVERRIDE_CLAIM_CAP)
                else None
            )
            billing = actor.can(Permission.RECORD_PAYMENTS) or actor.can(
                Permission.VIEW_FINANCIAL_REPORTS
            )
            overdue = await overdue_invoices(session, today) if billing else None
        await client.views_publish(
            user_id=user_id, view=build_home_view(actor.name, incidents, approvals, overdue)
        )
