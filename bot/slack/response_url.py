"""Answering a slash command or a control only to the person who used it: through the
request's response_url, else a fresh ephemeral message, else a DM."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack.blocks import Block
from bot.slack.errors import channel_of, tell_user

log = logging.getLogger("devicecare.slack")

RESPONSE_TIMEOUT = 10


def user_id(body: Mapping[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    return body.get("user_id")


def where(body: Mapping[str, Any]) -> dict[str, Any]:
    """Who and where, in the shape `bot.slack.errors` reads (commands carry bare ids)."""
    return {"user": {"id": user_id(body)}, "channel_id": channel_of(body)}


async def reply(
    client: AsyncWebClient,
    body: Mapping[str, Any],
    text: str,
    blocks: list[Block] | None,
    *,
    replace: bool = False,
) -> None:
    """An ephemeral answer through the response_url (replacing the message the control was in,
    when `replace`), else a fresh ephemeral message, else a DM."""
    url = body.get("response_url")
    if url:
        try:
            webhook = AsyncWebhookClient(url, timeout=RESPONSE_TIMEOUT, session=client.session)
            sent = await webhook.send(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=replace
            )
            if sent.status_code == 200:
                return
            log.info("response_url answered %s; posting a fresh ephemeral", sent.status_code)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("response_url failed (%s); posting a fresh ephemeral", exc)
    await tell_user(client, body, text, blocks=blocks)
