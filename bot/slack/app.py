"""The Slack app: one bolt AsyncApp, its middleware, its features and its error handler."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack import (
    billing_command,
    billing_reports,
    billing_run,
    billing_settings,
    collect,
    devices,
    enrollment,
    fees,
    home,
    incidents,
    invoices,
    overrides,
    payment_plans,
    replies,
    reports,
    stripe_payments,
    sync_posts,
    waivers,
)
from bot.slack.actors import actor_middleware, on_user_change
from bot.slack.cards import THREAD_MESSAGE, thread_message_handler
from bot.slack.channel_errors import guarded
from bot.slack.client import build_web_client, pooled_client_middleware
from bot.slack.errors import tell_user
from bot.slack.gate import WorkspaceIdentity, socket_mode_middleware
from workflows.i18n import _

log = logging.getLogger("devicecare.slack")

OutboxHandler = Callable[[dict[str, Any]], Awaitable[None]]

# Each feature module has `register(app, runtime)` and may have
# `outbox_handlers(runtime, client) -> dict[kind, handler]` for what it posts through the outbox.
FEATURES: tuple[ModuleType, ...] = (
    home,
    incidents,
    billing_command,
    billing_settings,
    billing_run,
    billing_reports,
    invoices,
    overrides,
    devices,
    replies,
    collect,
    waivers,
    fees,
    enrollment,
    reports,
    stripe_payments,
    payment_plans,
    sync_posts,
)


def build_slack_app(runtime: Runtime, client: AsyncWebClient | None = None) -> AsyncApp:
    settings = runtime.settings
    assert settings.slack_signing_secret is not None, "Slack is off without a signing secret"
    client = client or build_web_client(settings)
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        ignoring_self_events_enabled=True,
    )
    app.use(pooled_client_middleware)
    if settings.slack_app_token is not None:
        # Over HTTP the gate in front of /slack/events checks the workspace; over Socket Mode
        # this does, before anyone is looked up.
        identity = WorkspaceIdentity(client, settings.slack_team_id, settings.slack_app_id)
        app.use(socket_mode_middleware(identity))
    app.use(actor_middleware(runtime))
    for feature in FEATURES:
        feature.register(app, runtime)

    @app.event("user_change")
    async def handle_user_change(event: dict[str, Any]) -> None:
        """Someone edited their Slack profile: staff are shown by their new name."""
        await on_user_change(runtime, event)

    @app.event("message")
    async def handle_other_message() -> None:
        """Channel messages no feature acts on are acknowledged, or Slack would retry them."""

    @app.error
    async def handle_unexpected_error(
        error: Exception, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        log.exception("Slack request failed", exc_info=error)
        try:
            await tell_user(
                client,
                body,
                _(
                    ":x: Something went wrong on our side; it was logged "
                    "and nothing was half-done. Please try again."
                ),
            )
        except Exception:  # noqa: BLE001 - the original error is what matters
            log.warning("couldn't report the error to the user")

    return app


def slack_outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, OutboxHandler]:
    handlers: dict[str, OutboxHandler] = {THREAD_MESSAGE: thread_message_handler(runtime, client)}
    for feature in FEATURES:
        make = getattr(feature, "outbox_handlers", None)
        if make is not None:
            handlers.update(make(runtime, client))
    # A channel Slack refuses (not_in_channel, channel_not_found, is_archived) fails the row
    # at once, with an alert, whichever feature posts there.
    return {kind: guarded(runtime, client, kind, handler) for kind, handler in handlers.items()}
