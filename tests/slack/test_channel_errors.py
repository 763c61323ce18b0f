"""Slack refusing a post because of its channel, answered by the Web API stand-in exactly as
Slack answers (HTTP 200, ok false, and the error code from chat.postMessage / chat.update):
the row fails at once, the technician is told what to do, and an alert is kept. A card deleted
in Slack is posted again."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot.slack.cards import queue_incident_card, queue_thread_message
from bot.slack.ids import SlackPostKind
from storage import models as m
from tests.builders import add_district
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.test_incidents import blocks_text
from workflows.incidents import OpenIncident, open_incident
from workflows.ports import Context


async def open_one(slack: SlackHarness) -> int:
    """A technician (U_TECH) opens an incident; its card is queued."""
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", "U_TECH")
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        cmd = OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 27), flags=("screen",))
        opened = await open_incident(ctx, tech, cmd)
        await queue_incident_card(store, opened.incident.id)
        await store.commit()
        return opened.incident.id


async def rows(slack: SlackHarness, kind: str) -> list[m.OutboxMessage]:
    async with slack.runtime.stores() as store:
        stmt = select(m.OutboxMessage).where(m.OutboxMessage.kind == kind)
        result = list((await store.session.execute(stmt.order_by(m.OutboxMessage.id))).scalars())
        await store.commit()
        return result


async def alerts(slack: SlackHarness) -> list[m.ActivityEntry]:
    async with slack.runtime.stores() as store:
        stmt = select(m.ActivityEntry).where(m.ActivityEntry.entity_type == "slack_channel")
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


def dms(slack: SlackHarness, user: str = "U_TECH") -> list[Call]:
    return [c for c in slack.fake.calls_to("chat.postMessage") if c.args.get("channel") == user]


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (
            "not_in_channel",
            "the DeviceCare app isn't in <#C_INCIDENTS>. Anyone in that "
            "channel can add it with `/invite @DeviceCare`.",
        ),
        (
            "channel_not_found",
            "Slack can't find <#C_INCIDENTS>: it was deleted, or it is "
            "private and the DeviceCare app isn't in it.",
        ),
        (
            "is_archived",
            "<#C_INCIDENTS> is archived. Unarchive it, or ask an administrator "
            "to set another channel.",
        ),
    ],
)
async def test_a_card_slack_refuses_fails_once_and_the_technician_is_told(
    slack: SlackHarness, error: str, advice: str
) -> None:
    incident_id = await open_one(slack)
    slack.fake.answer_error("chat.postMessage", error, channel=INCIDENTS_CHANNEL)
    await slack.deliver_outbox()

    [row] = await rows(slack, "slack.incident_card")
    assert (row.status, row.attempts) == ("failed", 1)  # no retries: retrying can't fix it
    assert (
        row.last_error == f"{error}: the card for incident #{incident_id} not posted in "
        f"{INCIDENTS_CHANNEL}"
    )
    [told] = dms(slack)
    assert told.args["text"].startswith(
        f":warning: The card for incident #{incident_id} couldn't be posted: "
    )
    assert advice in told.args["text"]
    [alert] = await alerts(slack)
    assert (alert.action, alert.actor_label) == ("post_refused", "Slack delivery")
    assert alert.after == {"channel": INCIDENTS_CHANNEL, "error": error}

    # Once the app is invited, the incident's next change posts the card.
    async with slack.runtime.stores() as store:
        await queue_incident_card(store, incident_id)
        await store.commit()
    await slack.deliver_outbox()
    async with slack.runtime.stores() as store:
        assert await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id) is not None
        await store.commit()


async def test_an_update_refused_later_fails_too(slack: SlackHarness) -> None:
    incident_id = await open_one(slack)
    await slack.deliver_outbox()  # the card is posted
    slack.fake.answer_error("chat.update", "is_archived")
    async with slack.runtime.stores() as store:
        await queue_incident_card(store, incident_id)
        await store.commit()
    await slack.deliver_outbox()

    failed = [r for r in await rows(slack, "slack.incident_card") if r.status == "failed"]
    assert len(failed) == 1 and failed[0].attempts == 1
    [told] = dms(slack)
    assert "<#C_INCIDENTS> is archived" in told.args["text"]


async def test_a_thread_message_refused_fails_with_an_alert(slack: SlackHarness) -> None:
    incident_id = await open_one(slack)
    await slack.deliver_outbox()
    async with slack.runtime.stores() as store:
        await queue_thread_message(store, incident_id, "Override approved")
        await store.commit()
    slack.fake.answer_error("chat.postMessage", "not_in_channel", channel=INCIDENTS_CHANNEL)
    await slack.deliver_outbox()

    [row] = await rows(slack, "slack.thread_message")
    assert (row.status, row.attempts) == ("failed", 1)
    [alert] = await alerts(slack)
    assert alert.comment == f"a message in the thread of incident #{incident_id}"


async def test_other_errors_are_still_retried(slack: SlackHarness) -> None:
    await open_one(slack)
    slack.fake.answer_error("chat.postMessage", "internal_error", channel=INCIDENTS_CHANNEL)
    await slack.deliver_outbox()
    [row] = await rows(slack, "slack.incident_card")
    assert (row.status, row.attempts) == ("pending", 1)
    assert await alerts(slack) == [] and dms(slack) == []


async def test_a_deleted_card_is_posted_again(slack: SlackHarness) -> None:
    incident_id = await open_one(slack)
    await slack.deliver_outbox()
    async with slack.runtime.stores() as store:
        first = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id)
        await store.commit()
    assert first is not None

    slack.fake.answer_error("chat.update", "message_not_found")
    async with slack.runtime.stores() as store:
        await queue_incident_card(store, incident_id)
        await store.commit()
    await slack.deliver_outbox()

    cards = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == INCIDENTS_CHANNEL
    ]
    assert len(cards) == 2 and "Incident #1" in blocks_text(cards[1].args["blocks"])
    async with slack.runtime.stores() as store:
        moved = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id)
        await store.commit()
    assert moved is not None and moved.ts != first.ts
    assert all(r.status == "sent" for r in await rows(slack, "slack.incident_card"))

    # The next change updates the new card in place.
    async with slack.runtime.stores() as store:
        await queue_incident_card(store, incident_id)
        await store.commit()
    await slack.deliver_outbox()
    update = slack.fake.calls_to("chat.update")[-1]
    assert update.args["ts"] == moved.ts


async def test_any_feature_post_a_channel_refuses_fails_with_an_alert(slack: SlackHarness) -> None:
    """Posts without a person to tell (approvals, billing, digests) fail once, with an alert."""
    from bot.slack.channel_errors import ChannelUnavailable, guarded

    client = slack.worker_client

    async def post_digest(payload: dict[str, object]) -> None:
        await client.chat_postMessage(channel="C_GONE", text=str(payload["text"]))

    deliver = guarded(slack.runtime, client, "slack.example_digest", post_digest)
    slack.fake.answer_error("chat.postMessage", "channel_not_found", channel="C_GONE")
    with pytest.raises(ChannelUnavailable, match="channel_not_found"):
        await deliver({"text": "This week"})
    [alert] = await alerts(slack)
    assert alert.after == {"channel": "C_GONE", "error": "channel_not_found"}
    assert alert.comment == "a post (slack.example_digest)"
    assert dms(slack) == []

    await deliver({"text": "Next week"})  # the channel is back: delivered as usual
    assert slack.fake.calls_to("chat.postMessage")[-1].args["text"] == "Next week"
