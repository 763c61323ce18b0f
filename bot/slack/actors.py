"""Who is clicking: staff are recognised by Slack user id, or on first contact by email."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.incident_blocks import escape_mrkdwn
from bot.slack.shared_lookup import SharedLookup
from workflows.district_facts import DistrictFacts, facts_from
from workflows.i18n import N_, _
from workflows.permissions import Actor

log = logging.getLogger("devicecare.slack")

NOT_SET_UP = N_("You're not set up in DeviceCare yet.")


def who_to_ask(facts: DistrictFacts) -> str:
    """What a Slack user DeviceCare doesn't know is told: whom to ask (the district's IT
    contact from its settings), never a command to run."""
    name = escape_mrkdwn(facts.it_contact_name)
    contact = facts.it_contact
    in_channel = True
    if contact.startswith(("C", "G")) and "@" not in contact:
        # a channel id: Slack shows it as a link
        where = _("in <#{channel}>", channel=contact)
    elif contact.startswith("#"):
        where = _("in {channel}", channel=contact)
    elif contact:
        where, in_channel = f"({escape_mrkdwn(contact)})", False
    else:
        where, in_channel = "", False
    if name and where:
        ask = _("Ask {name} {where} to add you.", name=name, where=where)
    elif name:
        ask = _("Ask {name} to add you.", name=name)
    elif in_channel:
        ask = _("Ask {where} to be added.", where=where)
    elif where:
        ask = _("Ask your district's IT team {where} to add you.", where=where)
    else:
        ask = _("Ask your district's DeviceCare administrator to add you.")
    return f"{_(NOT_SET_UP)} {ask}"


async def not_set_up_text(runtime: Runtime) -> str:
    async with runtime.reads() as store:
        return who_to_ask(facts_from(await store.settings.get()))


def slack_profile_name(user: Mapping[str, Any]) -> str:
    """The name Slack shows for a person: their display name, else their full name."""
    profile = user.get("profile") or {}
    for name in (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    ):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return ""


# A name changed in Slack arrives as a `user_change` event; this re-check covers events missed
# while DeviceCare was down or not yet subscribed.
NAME_CHECK_INTERVAL = timedelta(days=1)


class NameRefresher:
    """Re-reads a person's Slack profile name in the background, at most once per interval,
    so the ack never waits for users.info."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._running: dict[str, asyncio.Task[None]] = {}

    def due(self, checked_at: datetime | None) -> bool:
        return checked_at is None or self.runtime.clock.now() - checked_at >= NAME_CHECK_INTERVAL

    def start(self, client: AsyncWebClient, user_id: str) -> None:
        if user_id in self._running:
            return
        task = asyncio.create_task(self._refresh(client, user_id))
        self._running[user_id] = task
        task.add_done_callback(lambda _: self._running.pop(user_id, None))

    async def _refresh(self, client: AsyncWebClient, user_id: str) -> None:
        try:
            info = await client.users_info(user=user_id)
            name = slack_profile_name(info.get("user") or {})
            async with self.runtime.stores() as store:
                await store.people.set_slack_name(user_id, name)
                await store.commit()
        except Exception:  # noqa: BLE001 - a stale name is harmless; tried again next contact
            log.warning("couldn't refresh the Slack name of %s", user_id, exc_info=True)


async def resolve_actor(
    runtime: Runtime,
    client: AsyncWebClient,
    user_id: str,
    names: NameRefresher | None = None,
) -> Actor | None:
    async with runtime.reads() as store:
        found = await store.people.slack_contact(user_id)
    if found is not None:
        actor, checked_at = found
        if names is not None and names.due(checked_at):
            names.start(client, user_id)
        return actor
    try:
        info = await client.users_info(user=user_id)
    except SlackApiError as exc:
        log.warning("users.info failed for %s: %s", user_id, exc.response.get("error"))
        return None
    user = info.get("user") or {}
    email = (user.get("profile") or {}).get("email")
    if not email:
        return None
    async with runtime.stores() as store:
        result = await store.people.link_slack_user(email, user_id, slack_profile_name(user))
        await store.commit()
        return result


async def on_user_change(runtime: Runtime, event: Mapping[str, Any]) -> None:
    """Slack's `user_change` event: a person edited their profile; staff take the new name."""
    user = event.get("user")
    if not isinstance(user, Mapping) or not isinstance(user.get("id"), str):
        return
    name = slack_profile_name(user)
    if not name:
        return
    async with runtime.stores() as store:
        if await store.people.set_slack_name(user["id"], name):
            log.info("staff %s now shown as their new Slack name", user["id"])
        await store.commit()


ACTOR_CACHE_SECONDS = 5.0


class ActorCache(SharedLookup[str, Actor | None]):
    """Recently resolved staff, so a burst of clicks doesn't query the store for each one, and
    requests from the same person that miss together share one lookup. Someone DeviceCare
    doesn't know is looked up again next time.

    Kept short on purpose: a role change or removal reaches Slack within ACTOR_CACHE_SECONDS.
    """

    def __init__(self, ttl: float = ACTOR_CACHE_SECONDS) -> None:
        super().__init__(ttl, keep=lambda actor: actor is not None)


class ActorMiddleware(AsyncMiddleware):
    """Puts `context["actor"]` on every request, or answers unknown users and stops.

    A middleware class rather than a function: bolt builds a function's arguments from some
    thirty candidates on every request, which was a measurable share of a burst."""

    def __init__(
        self, runtime: Runtime, cache: ActorCache | None = None, names: NameRefresher | None = None
    ) -> None:
        self.runtime = runtime
        self.cache = cache or ActorCache()
        self.names = names or NameRefresher(runtime)

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        context, body = req.context, req.body
        user_id = context.user_id
        if body.get("type") == "event_callback":
            # Events (e.g. photos in a thread) resolve their own author, when they need one.
            return await next()
        if not user_id:
            # Every command, click and form comes from someone; the listeners act as them.
            log.warning("slack request refused (400): it names no user")
            return BoltResponse(status=400, body="")
        client = context.client
        assert client is not None  # bolt gives every request one
        actor = await self.cache.cached(
            user_id, lambda: resolve_actor(self.runtime, client, user_id, self.names)
        )
        if actor is not None:
            context["actor"] = actor
            return await next()
        log.info("request from unknown Slack user %s refused", user_id)
        text = await not_set_up_text(self.runtime)
        kind = body.get("type")
        if kind == "block_suggestion":
            return BoltResponse(status=200, body={"options": []})
        if body.get("command"):
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
        try:
            await client.chat_postMessage(channel=user_id, text=text)
        except SlackApiError:
            log.warning("couldn't tell unknown user %s why they were refused", user_id)
        if kind == "view_submission":
            return BoltResponse(status=200, body={"response_action": "clear"})
        return BoltResponse(status=200, body="")


def actor_middleware(
    runtime: Runtime, cache: ActorCache | None = None, names: NameRefresher | None = None
) -> ActorMiddleware:
    return ActorMiddleware(runtime, cache, names)
