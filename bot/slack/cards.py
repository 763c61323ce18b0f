"""Queueing Slack posts about incidents through the outbox, and delivering the generic ones.

The incident card itself is rendered by the incidents feature when the worker delivers
`slack.incident_card`; anything that changes an incident queues a refresh here, in the same
transaction as the change.
"""

from __future__ import annotations

import uuid
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.channel_errors import channel_error, give_up_on_channel
from bot.slack.ids import SlackPostKind
from storage.uow import SqlUnitOfWork

INCIDENT_CARD = "slack.incident_card"
THREAD_MESSAGE = "slack.thread_message"


class CardNotPostedYet(RuntimeError):
    """The incident's card isn't in Slack yet; the outbox retries the thread message later."""


async def queue_incident_card(store: SqlUnitOfWork, incident_id: int) -> None:
    """Post the card (first time) or update it in place (every later change)."""
    await store.outbox.enqueue(
        INCIDENT_CARD,
        f"incident-card:{incident_id}:{uuid.uuid4().hex}",
        {"incident_id": incident_id},
        fresh_key=True,
    )


async def queue_thread_message(
    store: SqlUnitOfWork, incident_id: int, text: str, *, dedupe_key: str | None = None
) -> None:
    """A message in the incident's thread (its conversation), e.g. "override approved"."""
    key = dedupe_key or f"thread:{incident_id}:{uuid.uuid4().hex}"
    await store.outbox.enqueue(
        THREAD_MESSAGE, key, {"incident_id": incident_id, "text": text}, fresh_key=not dedupe_key
    )


def thread_message_handler(runtime: Runtime, client: AsyncWebClient) -> Any:
    async def deliver(payload: dict[str, Any]) -> None:
        incident_id = int(payload["incident_id"])
        async with runtime.stores() as store:
            post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id)
            await store.commit()
        if post is None:
            raise CardNotPostedYet(f"incident #{incident_id} has no card yet")
        try:
            await client.chat_postMessage(
                channel=post.channel, thread_ts=post.ts, text=payload["text"]
            )
        except SlackApiError as exc:
            error = channel_error(exc)
            if error is None:
                raise
            raise await give_up_on_channel(
                runtime,
                client,
                channel=post.channel,
                error=error,
                what=f"a message in the thread of incident #{incident_id}",
            ) from exc

    return deliver
