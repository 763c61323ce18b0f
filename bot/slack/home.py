"""The App Home: a workspace of your open incidents and what waits on you, with buttons.

Published when the tab is opened, when a Previous / Next button turns a list's page, and through
the outbox (`slack.home`, see `storage.home_refresh`) when something in one of its lists
changes.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.worker import GiveUp
from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.actors import not_set_up_text, resolve_actor
from bot.slack.errors import user_of
from bot.slack.home_blocks import HomeLists, build_home_view, build_unknown_home_view
from bot.slack.home_lists import PAGE_SIZE, HomeAction, HomeList, HomePages, sees
from bot.slack.ids import IncidentRef
from bot.slack.incident_blocks import build_incident_card_message
from bot.slack.incidents import load_incident_card
from bot.slack.listeners import Click, on_click, wire
from storage.home_queries import (
    my_open_incidents,
    overdue_invoices,
    pending_approvals,
    pending_waivers,
    reported_payments,
)
from storage.home_refresh import HOME_KIND
from workflows.clock import local_date
from workflows.errors import NotFound
from workflows.i18n import _
from workflows.permissions import Actor

log = logging.getLogger("devicecare.slack")

# Slack no longer has this person: there is no home to draw, and nothing to retry.
USER_GONE = frozenset({"user_not_found", "users_not_found", "user_not_visible"})
# Retrying can't fix these (e.g. the app's Home tab is switched off): fail the row at once.
CANNOT_PUBLISH = frozenset({"not_enabled", "invalid_arguments", "invalid_blocks"})


def _sees(actor: Actor, home_list: HomeList) -> bool:
    return sees(home_list, actor.permissions, actor.is_superadmin)


async def load_home_lists(runtime: Runtime, actor: Actor, pages: HomePages) -> HomeLists:
    assert actor.staff_id is not None
    today = local_date(runtime.clock.now(), runtime.settings.tz)
    size = PAGE_SIZE
    async with runtime.reads() as store:
        return HomeLists(
            incidents=await my_open_incidents(store, actor.staff_id, pages.incidents, size),
            overrides=(
                await pending_approvals(store, pages.overrides, size)
                if _sees(actor, HomeList.OVERRIDES)
                else None
            ),
            waivers=(
                await pending_waivers(store, pages.waivers, size)
                if _sees(actor, HomeList.WAIVERS)
                else None
            ),
            payments=(
                await reported_payments(store, pages.payments, size)
                if _sees(actor, HomeList.PAYMENTS)
                else None
            ),
            overdue=(
                await overdue_invoices(store, today, pages.overdue, size)
                if _sees(actor, HomeList.OVERDUE)
                else None
            ),
        )


async def publish_home(
    runtime: Runtime,
    client: AsyncWebClient,
    user_id: str,
    actor: Actor | None,
    pages: HomePages | None = None,
) -> None:
    if actor is None or actor.staff_id is None:
        view = build_unknown_home_view(await not_set_up_text(runtime))
    else:
        pages = pages or HomePages()
        lists = await load_home_lists(runtime, actor, pages)
        secret = signing_keys(runtime.settings)
        view = build_home_view(actor.name, lists, pages=pages, secret=secret)
    await client.views_publish(user_id=user_id, view=view)


@on_click(HomeAction.PAGE, what="turn an App Home page", ref=HomePages)
async def handle_home_page(click: Click[HomePages]) -> None:
    user_id = user_of(click.body)
    if user_id is not None:
        await publish_home(click.runtime, click.client, user_id, click.actor, click.ref)


@on_click(HomeAction.OPEN_INCIDENT, what="open an incident", ref=IncidentRef)
async def handle_open_incident(click: Click[IncidentRef]) -> None:
    """The incident card, with its buttons, by DM (as `/incident N` shows it)."""
    async with click.runtime.reads() as store:
        card = await load_incident_card(click.context(store), store, click.ref.incident_id)
    if card is None:
        raise NotFound(_("That incident isn't in DeviceCare any more."))
    user_id = user_of(click.body)
    if user_id is not None:
        message = build_incident_card_message(card, click.keys)
        await click.client.chat_postMessage(channel=user_id, **message)


def register(app: AsyncApp, runtime: Runtime) -> None:
    @app.event("app_home_opened")
    async def handle_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = event["user"]
        actor = await resolve_actor(runtime, client, user_id)
        await publish_home(runtime, client, user_id, actor)

    wire(app, runtime, handle_home_page, handle_open_incident)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    async def deliver_home(payload: dict[str, Any]) -> None:
        """Republish one person's home (first pages) after something in it changed."""
        user_id = str(payload["user"])
        async with runtime.reads() as store:
            actor = await store.people.actor_by_slack_id(user_id)
        if actor is None:
            return  # no longer on staff: their home already says so when opened
        try:
            await publish_home(runtime, client, user_id, actor)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error in USER_GONE:
                log.info("App Home for %s not redrawn: %s", user_id, error)
                return
            if error in CANNOT_PUBLISH:
                raise GiveUp(f"views.publish refused the App Home: {error}") from exc
            raise

    return {HOME_KIND: deliver_home}
