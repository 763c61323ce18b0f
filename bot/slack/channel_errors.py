"""When Slack refuses a post because of its channel: the app isn't in it, it doesn't exist (or
is private without the app), or it is archived.

Retrying can't fix any of these, so the outbox row fails at once (`GiveUp`) instead of being
retried for hours. The refusal is logged as an error and kept in the activity log (entity
`slack_channel`), the row shows in `devicecare outbox failed`, and the person whose work was to
appear there is told what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.worker import GiveUp
from bot.runtime import Runtime
from workflows.i18n import N_, _
from workflows.permissions import Actor

log = logging.getLogger("devicecare.slack")

# Slack's error codes (chat.postMessage, chat.update) and what to do about each.
CHANNEL_ERRORS: dict[str, str] = {
    "not_in_channel": N_(
        "the DeviceCare app isn't in {channel}. Anyone in that channel can add it with "
        "`/invite @DeviceCare`"
    ),
    "channel_not_found": N_(
        "Slack can't find {channel}: it was deleted, or it is private and the DeviceCare app "
        "isn't in it. Invite the app there with `/invite @DeviceCare`, or ask an administrator "
        "to set another channel"
    ),
    "is_archived": N_(
        "{channel} is archived. Unarchive it, or ask an administrator to set another channel"
    ),
}
ALERT_ACTOR = "Slack delivery"


class ChannelUnavailable(GiveUp):
    """The post can't be made in its channel; the outbox row fails without more retries."""


def channel_error(exc: BaseException) -> str | None:
    """Slack's error code when `exc` is one of the channel refusals, else None."""
    if not isinstance(exc, SlackApiError):
        return None
    error = exc.response.get("error")
    return error if isinstance(error, str) and error in CHANNEL_ERRORS else None


def explain(channel: str, error: str) -> str:
    return _(CHANNEL_ERRORS[error], channel=f"<#{channel}>")


async def give_up_on_channel(
    runtime: Runtime,
    client: AsyncWebClient,
    *,
    channel: str,
    error: str,
    what: str,
    notify: str | None = None,
    told: str | None = None,
) -> ChannelUnavailable:
    """Alert (error log and activity entry), tell `notify` (a Slack user id) by DM, and return
    the exception the outbox handler raises. `told` is `what` as the DM names it, in the staff
    language (the log and the activity keep `what`)."""
    log.error("slack: %s not posted in %s: %s", what, channel, error)
    async with runtime.stores() as store:
        await store.activity.log(
            Actor.system(ALERT_ACTOR),
            "slack_channel",
            None,
            "post_refused",
            after={"channel": channel, "error": error},
            comment=what,
        )
        await store.commit()
    if notify:
        what_ = told or what[:1].upper() + what[1:]
        text = _(
            ":warning: {what} couldn't be posted: {reason}.",
            what=what_,
            reason=explain(channel, error),
        )
        try:
            await client.chat_postMessage(channel=notify, text=text)
        except SlackApiError as exc:
            log.warning("couldn't tell %s: %s", notify, exc.response.get("error"))
    return ChannelUnavailable(f"{error}: {what} not posted in {channel}")


OutboxHandler = Callable[[dict[str, Any]], Awaitable[None]]


def guarded(runtime: Runtime, client: AsyncWebClient, kind: str, handler: Any) -> Any:
    """A Slack outbox handler whose channel refusals fail the row at once, with an alert.

    Handlers that know whom to tell (the incident card) raise `ChannelUnavailable` themselves;
    this catches the rest (approvals, billing and digest channels).
    """
    if not callable(handler) or hasattr(handler, "deliver"):
        return handler

    async def deliver(payload: dict[str, Any]) -> None:
        try:
            await handler(payload)
        except SlackApiError as exc:
            error = channel_error(exc)
            if error is None:
                raise
            channel = str(exc.response.get("channel") or _channel_of(exc) or "its channel")
            raise await give_up_on_channel(
                runtime, client, channel=channel, error=error, what=f"a post ({kind})"
            ) from exc

    return deliver


def _channel_of(exc: SlackApiError) -> str | None:
    """The channel the refused call named (slack_sdk keeps the request's arguments)."""
    request = getattr(exc.response, "req_args", None) or {}
    for part in ("json", "data", "params"):
        args = request.get(part) or {}
        if isinstance(args, dict) and args.get("channel"):
            return str(args["channel"])
    return None
