"""Queueing Slack posts about incidents through the outbox, and delivering the generic ones.

The incident card itself is rendered by the incidents feature when the worker delivers
`slack.incident_card`; anything that changes an incident queues a refresh here, in the same
transaction as the change.
"""

from __future__ import annotations

import uuid
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.ids import SlackPostKind
from storage.store import SqlStore

INCIDENT_CARD = "slack.incident_card"
THREAD_MESSAGE = "slack.thread_message"


class CardNotPostedYet(RuntimeError):
    """The incident's card isn't in Slack yet; the outbox retries the thread message later."""


async def queue_incident_card(store: SqlStore, incident_id: int) -> None:
    """Post the card (first time) or update it in place (every later change)."""
    await store.enqueue(
        INCIDENT_CARD,
        f"incident-card:{incident_id}:{uuid.uuid4().hex}",
        {"incident_id": incident_id},
        fresh_key=True,
    )


async def queue_thread_message(
    store: SqlStore, incident_id: int, text: str, *, dedupe_key: str | None = None
) -> None:
    """A message in the incident's thread (its conversation), e.g. "override approved"."""
    key = dedupe_key or f"thread:{incident_id}:{uuid.uuid4().hex}"
    await store.enqueue(
        THREAD_MESSAGE, key, {"incident_id": incident_id, "text": text}, fresh_key=not dedupe_key
    )


def thread_message_handler(runtime: Runtime, client: AsyncWebClient) -> Any:
    async def deliver(payload: dict[str, Any]) -> None:
        async with runtime.stores() as store:
            post = await store.slack_post(SlackPostKind.INCIDENT_CARD, payload["incident_id"])
        if post is None:
            raise CardNotPostedYet(f"incident #{payload['incident_id']} has no card yet")
        await client.chat_postMessage(channel=post.channel, thread_ts=post.ts, text=payload["text"])

    return deliver
