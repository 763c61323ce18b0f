"""Messages posted once and then kept current (a day's digest): where each went is kept in
`slack_posts`, so a retry or a later delivery updates the message instead of posting it again."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.blocks import Block


async def post_or_update(
    runtime: Runtime,
    client: AsyncWebClient,
    kind: str,
    key: int,
    *,
    channel: str,
    text: str,
    blocks: list[Block],
) -> None:
    """Post the `kind` message for `key` in `channel`, or update it where it was posted."""
    async with runtime.stores() as store:
        posted = await store.slack_posts.get(kind, key)
        await store.commit()
    if posted is not None:
        await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
        return
    await post_and_keep(runtime, client, kind, key, channel=channel, text=text, blocks=blocks)


async def post_and_keep(
    runtime: Runtime,
    client: AsyncWebClient,
    kind: str,
    key: int,
    *,
    channel: str,
    text: str,
    blocks: list[Block] | None,
) -> None:
    """Post the `kind` message for `key` and keep where it went (DuplicateRow when `key`
    already has one)."""
    response = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    async with runtime.stores() as store:
        await store.slack_posts.save(
            kind, key, str(response.get("channel") or channel), str(response["ts"])
        )
        await store.commit()
