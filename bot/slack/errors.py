"""The one place domain errors become messages: ephemeral replies or modal field errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.metadata import ForgedPayload
from workflows.errors import DomainError, PermissionDenied
from workflows.i18n import _
from workflows.permissions import Actor

log = logging.getLogger("devicecare.slack")


class FormErrors(Exception):
    """A form's own errors, by block, found when it is read (before any rule is checked)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def channel_of(body: Mapping[str, Any]) -> str | None:
    channel = body.get("channel") or body.get("channel_id")
    if isinstance(channel, dict):
        return channel.get("id")
    if channel:
        return str(channel)
    container = body.get("container") or {}
    return container.get("channel_id")


def user_of(body: Mapping[str, Any]) -> str | None:
    # Interactivity payloads carry {"user": {"id": …}}; slash commands a top-level user_id.
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    user_id = body.get("user_id")
    return str(user_id) if user_id else None


async def tell_user(
    client: AsyncWebClient,
    body: Mapping[str, Any],
    text: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """An ephemeral message where the user is, or a DM when there is no channel (modals)."""
    user = user_of(body)
    if user is None:
        return
    channel = channel_of(body)
    extra: dict[str, Any] = {} if blocks is None else {"blocks": blocks}
    try:
        if channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, **extra)
        else:
            await client.chat_postMessage(channel=user, text=text, **extra)
        return
    except SlackApiError as exc:
        # e.g. not_in_channel: fall back to the app's DM with the user.
        log.info("ephemeral reply failed (%s); sending a DM", exc.response.get("error"))
    await client.chat_postMessage(channel=user, text=text, **extra)


async def record_refusal(runtime: Runtime, actor: Actor | None, what: str, reason: str) -> None:
    """Refused actions are logged and kept in the activity log for audit."""
    log.warning("refused %s for %s: %s", what, actor.name if actor else "unknown user", reason)
    if actor is None:
        return
    async with runtime.stores() as store:
        await store.activity.log_refusal(actor, what, reason)
        await store.commit()


def is_refusal(exc: DomainError) -> bool:
    """A refused permission or a forged payload: kept for audit, unlike a broken rule."""
    return isinstance(exc, PermissionDenied | ForgedPayload)


async def _told(
    runtime: Runtime,
    client: AsyncWebClient,
    body: Mapping[str, Any],
    what: str,
    actor: Actor | None,
    exc: DomainError,
    text: str,
) -> None:
    if is_refusal(exc):
        await record_refusal(runtime, actor, what, exc.message)
    await tell_user(client, body, text)


@asynccontextmanager
async def reported(
    runtime: Runtime,
    client: AsyncWebClient,
    body: Mapping[str, Any],
    what: str,
    actor: Actor | None = None,
) -> AsyncIterator[None]:
    """Run a listener's work after ack(); domain errors reach the user, nothing else leaks."""
    try:
        yield
    except DomainError as exc:
        await _told(runtime, client, body, what, actor, exc, f":warning: {exc.message}")


@asynccontextmanager
async def after_ack(
    runtime: Runtime,
    client: AsyncWebClient,
    body: Mapping[str, Any],
    what: str,
    actor: Actor | None = None,
) -> AsyncIterator[None]:
    """The work a lazy listener does once Slack has its answer. Bolt only logs what a lazy
    listener raises, so everything ends here: a broken rule reaches the person, and so does an
    unexpected failure (logged); either way the transaction was rolled back."""
    try:
        yield
    except DomainError as exc:
        text = _(
            ":warning: Couldn't {what}: {reason} Nothing was changed.",
            what=_(what),
            reason=exc.message,
        )
        await _told(runtime, client, body, what, actor, exc, text)
    except Exception:
        log.exception("%s failed after the ack", what)
        await tell_user(
            client,
            body,
            _(
                ":x: Couldn't {what}: something went wrong on our side. It was logged and "
                "nothing was changed; please try again.",
                what=_(what),
            ),
        )


def modal_errors(exc: DomainError, blocks: Mapping[str, str], default: str) -> dict[str, str]:
    """`response_action="errors"` content: the message next to the field it is about."""
    return {blocks.get(exc.field or "", default): exc.message}
