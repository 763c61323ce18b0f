"""The syncs' Slack messages, delivered from the outbox: each nightly run's summary and the
alerts of runs that failed or were held, in SYNC_CHANNEL (else the billing channel)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.blocks import Block
from bot.slack.sync_blocks import build_sync_alert, build_sync_summary
from bot.sync.runner import SYNC_ALERT_KIND, SYNC_SUMMARY_KIND

log = logging.getLogger("devicecare.slack")


def register(app: AsyncApp, runtime: Runtime) -> None:
    """Nothing to listen to: the syncs only post."""


def sync_channel(runtime: Runtime) -> str | None:
    return runtime.settings.sync_channel or runtime.settings.slack_billing_channel


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    def poster(
        build: Callable[[dict[str, Any]], tuple[str, list[Block]]],
    ) -> Callable[[dict[str, Any]], Any]:
        async def deliver(payload: dict[str, Any]) -> None:
            channel = sync_channel(runtime)
            if not channel:
                log.info(
                    "sync message for %s not posted: no SYNC_CHANNEL or SLACK_BILLING_CHANNEL",
                    payload.get("source"),
                )
                return
            text, blocks = build(payload)
            await client.chat_postMessage(channel=channel, text=text, blocks=blocks)

        return deliver

    return {
        SYNC_SUMMARY_KIND: poster(build_sync_summary),
        SYNC_ALERT_KIND: poster(build_sync_alert),
    }
