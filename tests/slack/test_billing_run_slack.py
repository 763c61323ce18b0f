"""The billing run in Slack: `/billing pause`, `/billing preview`, and the digest and failure
messages in the billing channel, delivered from the outbox.

Signed requests through the real app; every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from datetime import date

from sqlalchemy import func, select

from bot.jobs.scheduler import run_billing_day
from bot.slack.billing_run import outbox_handlers
from services.billing_run import SLACK_RUN_KIND
from storage import models as m
from tests.integration.billing_helpers import add_family, add_invoice, at_run_time
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import all_text, blocks_of, eventually, refusals

DIRECTOR = "U_FD"
CLERK = "U_CLERK"
JAN1 = date(2026, 1, 1)
TODAY = date(2026, 3, 2)  # the harness clock: 09:00 in Chicago


async def _answer(slack: SlackHarness, user: str, count: int) -> Call:
    """The `count`th follow-up answer (after the ack) to `user`."""
    calls = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: c.args.get("user") == user, count=count
    )
    return calls[count - 1]


def _text(call: Call) -> str:
    return f"{call.args.get('text', '')}\n{all_text(blocks_of(call))}"


async def _count(slack: SlackHarness, model: type, *where: object) -> int:
    async with slack.runtime.stores() as store:
        stmt = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
        result = int((await store.session.execute(stmt)).scalar_one())
        await store.commit()
        return result


async def _pauses(slack: SlackHarness) -> list[m.BillingPause]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(select(m.BillingPause).order_by(m.BillingPause.id))
        await store.commit()
        return list(rows.scalars())


async def _billing_posts(slack: SlackHarness) -> list[Call]:
    return [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]


async def _invoices(slack: SlackHarness) -> tuple[int, int]:
    """One invoice whose 14-day reminder is today, one a week and a half overdue."""
    (student,), _ = await add_family(slack.runtime.stores, "Rivera")
    reminder = await add_invoice(slack.runtime.stores, student, created=JAN1, due=date(2026, 3, 16))
    overdue = await add_invoice(slack.runtime.stores, student, created=JAN1, due=date(2026, 2, 20))
    return reminder, overdue


# --- /billing pause -------------------------------------------------------------------------


async def test_pause_add_list_remove(slack: SlackHarness) -> None:
    director = await slack.staff("Finance Director", DIRECTOR)
    response = await slack.sender.command(
        "/billing", "pause add 2026-12-21 2027-01-01 Winter break", user=DIRECTOR
    )
    assert response.status_code == 200
    added = _text(await _answer(slack, DIRECTOR, 1))
    (pause,) = await _pauses(slack)
    assert (pause.starts_on, pause.ends_on, pause.reason) == (
        date(2026, 12, 21),
        date(2027, 1, 1),
        "Winter break",
    )
    assert pause.created_by_id == director.staff_id
    assert f"Billing paused: #{pause.id} 2026-12-21 to 2027-01-01 (12 days): Winter break" in added
    assert f"/billing pause remove {pause.id}" in added

    await slack.sender.command("/billing", "pause list", user=DIRECTOR)
    listed = _text(await _answer(slack, DIRECTOR, 2))
    assert "Current and coming billing pauses" in listed and "Winter break" in listed

    await slack.sender.command("/billing", f"pause remove #{pause.id}", user=DIRECTOR)
    removed = _text(await _answer(slack, DIRECTOR, 3))
    assert f"Removed billing pause #{pause.id}" in removed
    assert await _pauses(slack) == []

    await slack.sender.command("/billing", "pause list", user=DIRECTOR)
    assert "no current or coming billing pauses" in _text(await _answer(slack, DIRECTOR, 4))
    async with slack.runtime.stores() as store:
        log = await store.activity.for_entity("billing_pause", pause.id)
        await store.commit()
    assert [(e.action, e.actor_staff_id) for e in log] == [
        ("billing_pause_added", director.staff_id),
        ("billing_pause_removed", director.staff_id),
    ]


async def test_bad_pause_input_is_answered_and_changes_nothing(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", DIRECTOR)
    for text, message in [
        ("pause add 2026-13-01 2027-01-01 Winter break", "isn't a date"),
        ("pause add 2027-01-01 2026-12-21 Winter break", "end on or after"),
        ("pause add 2026-12-21 2027-01-01", "Say what the pause is for"),
        ("pause add 2026-12-21", "Give the first and the last paused day"),
        ("pause remove three", "isn't a pause number"),
        ("pause list everything", "takes nothing, or `all`"),
    ]:
        response = await slack.sender.command("/billing", text, user=DIRECTOR)
        body = response.json()
        assert body["response_type"] == "ephemeral", text
        assert message in body["text"] and "Nothing was changed." in body["text"], text
    usage = (await slack.sender.command("/billing", "pause", user=DIRECTOR)).json()["text"]
    assert "/billing pause add 2026-12-21 2027-01-01 Winter break" in usage
    assert await _pauses(slack) == []
    assert slack.fake.calls_to("chat.postEphemeral") == []


async def test_overlapping_or_unknown_pauses_are_refused_after_the_ack(
    slack: SlackHarness,
) -> None:
    await slack.staff("Finance Director", DIRECTOR)
    await slack.sender.command(
        "/billing", "pause add 2026-12-21 2027-01-01 Winter break", user=DIRECTOR
    )
    await _answer(slack, DIRECTOR, 1)
    await slack.sender.command(
        "/billing", "pause add 2026-12-31 2027-01-04 Holidays", user=DIRECTOR
    )
    assert "overlaps the pause" in _text(await _answer(slack, DIRECTOR, 2))
    await slack.sender.command("/billing", "pause remove 999", user=DIRECTOR)
    assert "no billing pause #999" in _text(await _answer(slack, DIRECTOR, 3))
    assert [p.reason for p in await _pauses(slack)] == ["Winter break"]


async def test_without_manage_settings_nothing_happens_and_the_refusal_is_kept(
    slack: SlackHarness,
) -> None:
    clerk = await slack.staff("Billing Clerk", CLERK)
    await _invoices(slack)
    for text in ("pause add 2026-12-21 2027-01-01 Winter break", "pause list", "preview"):
        response = await slack.sender.command("/billing", text, user=CLERK)
        body = response.json()
        assert body["response_type"] == "ephemeral"
        assert "Manage Settings" in body["text"] and "Nothing was changed" in body["text"]

    async def three_refusals() -> bool:
        return len(await refusals(slack, clerk)) == 3

    await eventually(three_refusals, what="the refusals in the activity log")
    assert await _pauses(slack) == []
    assert slack.fake.calls_to("chat.postEphemeral") == []


# --- /billing preview -----------------------------------------------------------------------


async def test_preview_counts_steps_and_lists_the_first_twenty(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", DIRECTOR)
    reminder, overdue = await _invoices(slack)
    (student,), _ = await add_family(slack.runtime.stores, "Chen")
    for _ in range(20):
        await add_invoice(slack.runtime.stores, student, created=JAN1, due=date(2026, 3, 9))

    response = await slack.sender.command("/billing", "preview", user=DIRECTOR)
    assert "Working out what the billing run for Monday, Mar 2, 2026" in response.json()["text"]
    call = await _answer(slack, DIRECTOR, 1)
    said = _text(call)
    assert "Billing run preview for Monday, Mar 2, 2026" in said
    assert "nothing has been sent or changed" in said
    assert "14-day pre-due reminder: 1" in said and "7-day pre-due reminder: 20" in said
    assert "1st overdue notice: 1" in said and "to 1st Notice: 1" in said
    assert "Planned steps* (22)" in said and "…and 2 more." in said
    assert "INV-000002` 1st overdue notice: Unpaid → 1st Notice (10 days overdue)" in said
    assert said.count("pre-due reminder, 1 recipient") == 19
    # A dry run: nothing claimed, queued or recorded.
    assert await _count(slack, m.BillingStep) == 0
    assert await _count(slack, m.Notice) == 0
    assert await _count(slack, m.BillingRun) == 0
    assert reminder and overdue


async def test_preview_of_another_day_and_of_a_paused_one(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", DIRECTOR)
    await _invoices(slack)
    await slack.sender.command("/billing", "preview 2026-03-09", user=DIRECTOR)
    said = _text(await _answer(slack, DIRECTOR, 1))
    assert "Monday, Mar 9, 2026" in said and "7-day pre-due reminder: 1" in said

    await slack.sender.command("/billing", "pause add 2026-03-09 2026-03-13 Spring", user=DIRECTOR)
    await _answer(slack, DIRECTOR, 2)
    await slack.sender.command("/billing", "preview 2026-03-10", user=DIRECTOR)
    assert "paused that day" in _text(await _answer(slack, DIRECTOR, 3))

    bad = await slack.sender.command("/billing", "preview 2026-02-30", user=DIRECTOR)
    assert "isn't a date" in bad.json()["text"]
    usage = (await slack.sender.command("/billing", "", user=DIRECTOR)).json()["text"]
    assert "`/billing pause`" in usage and "`/billing preview`" in usage


# --- the digest and failures in the billing channel -----------------------------------------


async def test_digest_after_the_run(slack: SlackHarness) -> None:
    await _invoices(slack)
    result = await run_billing_day(slack.runtime)
    assert result is not None and result.ran
    assert await slack.deliver_outbox() >= 1
    (post,) = await _billing_posts(slack)
    said = _text(post)
    assert "Billing run · Monday, Mar 2, 2026" in said
    assert "Reminders and notices sent" in said
    assert "14-day pre-due reminder: 1" in said and "1st overdue notice: 1" in said
    assert "Statuses advanced" in said and "to 1st Notice: 1" in said
    assert "Emails queued:* 1, 1 digest among them" in said
    assert "Caught up" not in said
    assert post.args["text"].startswith("Billing run for Monday, Mar 2, 2026: 2 reminders")
    assert await slack.deliver_outbox() == 0  # posted once


async def test_digest_after_downtime_names_the_days_covered(slack: SlackHarness) -> None:
    await _invoices(slack)
    slack.clock.set(at_run_time(date(2026, 2, 26)))
    await run_billing_day(slack.runtime)
    slack.clock.set(at_run_time(TODAY))
    await run_billing_day(slack.runtime)
    await slack.deliver_outbox()
    posts = await _billing_posts(slack)
    assert len(posts) == 2
    said = _text(posts[-1])
    assert "Caught up after downtime: this run covered Feb 27, 2026 to Mar 2, 2026" in said
    assert "(3 missed days)" in said


async def test_a_redelivered_digest_updates_its_message(slack: SlackHarness) -> None:
    await _invoices(slack)
    await run_billing_day(slack.runtime)
    async with slack.runtime.stores() as store:
        row = (
            await store.session.execute(
                select(m.OutboxMessage).where(m.OutboxMessage.kind == SLACK_RUN_KIND)
            )
        ).scalar_one()
        await store.commit()
    deliver = outbox_handlers(slack.runtime, slack.worker_client)[SLACK_RUN_KIND]
    await deliver(dict(row.payload))
    await deliver(dict(row.payload))  # as after a crash before the row was settled
    assert len(await _billing_posts(slack)) == 1
    (update,) = slack.fake.calls_to("chat.update")
    assert update.args["channel"] == BILLING_CHANNEL


async def test_a_failed_run_is_posted(slack: SlackHarness) -> None:
    await _invoices(slack)
    async with slack.runtime.stores() as store:
        (await store.settings.get()).overdue_days = [7]  # a hand edit past validation
        await store.commit()
    assert await run_billing_day(slack.runtime) is None
    await slack.deliver_outbox()
    (post,) = await _billing_posts(slack)
    said = _text(post)
    assert post.args["text"] == "The billing run for Monday, Mar 2, 2026 failed (attempt 1)."
    assert "IndexError" in said and "tries again within 15 minutes" in said
    assert await _count(slack, m.OutboxMessage, m.OutboxMessage.status == "sent") == 1


async def test_without_a_billing_channel_nothing_is_posted(slack: SlackHarness) -> None:
    await _invoices(slack)
    await run_billing_day(slack.runtime)
    async with slack.runtime.stores() as store:
        row = (
            await store.session.execute(
                select(m.OutboxMessage).where(m.OutboxMessage.kind == SLACK_RUN_KIND)
            )
        ).scalar_one()
        await store.commit()
    settings = slack.runtime.settings.model_copy(update={"slack_billing_channel": None})
    runtime = dataclasses.replace(slack.runtime, settings=settings)
    handlers = outbox_handlers(runtime, slack.worker_client)
    await handlers[SLACK_RUN_KIND](dict(row.payload))
    await handlers["slack.billing_run_failed"](
        {"day": "2026-03-02", "attempt": 1, "error": "IndexError", "retrying": True}
    )
    assert slack.fake.calls_to("chat.postMessage") == []
