"""Slack posts about online payments, delivered from the outbox.

"Paid online: …" goes in the invoice's thread: the billing channel's thread about the invoice
when one exists (parents' emails start it), else the incident card's thread where the invoice
was announced, else it starts the invoice's thread in the billing channel. Alerts about money
staff must refund or place go to the billing channel.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.blocks import esc
from bot.slack.ids import SlackPostKind
from bot.slack.replies import BillingChannelMissing, post_in_invoice_thread
from bot.slack.reply_blocks import ReplyPostKind
from storage.online_payments import PAYMENT_ALERT_KIND, PAYMENT_POST_KIND

log = logging.getLogger("devicecare.slack")


def register(app: AsyncApp, runtime: Runtime) -> None:
    """Nothing to click: these posts only inform."""


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    def billing_channel() -> str:
        channel = runtime.settings.slack_billing_channel
        if not channel:
            raise BillingChannelMissing("set SLACK_BILLING_CHANNEL to show online payments")
        return channel

    async def deliver_payment_post(payload: dict[str, Any]) -> None:
        invoice_id = int(payload["invoice_id"])
        text = esc(str(payload["text"]))
        async with runtime.stores() as store:
            invoice = await store.invoices.get(invoice_id)
            if invoice is None:
                await store.commit()
                return
            thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, invoice_id)
            if thread is None and invoice.incident_id is not None:
                thread = await store.slack_posts.get(
                    SlackPostKind.INCIDENT_CARD, invoice.incident_id
                )
            await store.commit()
        await post_in_invoice_thread(
            runtime, client, invoice_id, thread, text=text, needs="show online payments"
        )

    async def deliver_alert(payload: dict[str, Any]) -> None:
        await client.chat_postMessage(
            channel=billing_channel(), text=f":warning: {esc(str(payload['text']))}"
        )

    return {PAYMENT_POST_KIND: deliver_payment_post, PAYMENT_ALERT_KIND: deliver_alert}
