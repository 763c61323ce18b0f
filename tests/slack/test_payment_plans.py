"""Payment plans through the Slack stand-in: the plan on `/billing invoice`, the modal and its
field errors, redelivery, refusals checked on the server, clearing, and the thread messages."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from bot.slack.payment_plan_blocks import PlanAction, PlanBlock, PlanMenu, PlanModalId
from bot.slack.reply_blocks import ReplyPostKind
from storage import models as m
from storage.payment_plans import PlanRows
from tests.integration.billing_helpers import add_family, add_invoice, at_run_time, runner
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.money_helpers import (
    action_ids,
    blocks_of,
    merge,
    picked_date,
    submission,
    typed,
    view_of,
)
from tests.slack.test_billing_reports import action_payload, all_text, answer, refusals
from workflows.payment_plans import SetPaymentPlan, set_payment_plan
from workflows.ports import Context

CLERK, TECH = "U_CLERK", "U_TECH"
NOW_DAY = date(2026, 3, 2)  # the harness clock's district day


async def setup(slack: SlackHarness) -> int:
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Technician", TECH)
    (student,), _ = await add_family(slack.runtime.stores, "Okafor", guardians=2)
    return await add_invoice(
        slack.runtime.stores,
        student,
        created=date(2026, 1, 5),
        due=date(2026, 4, 1),
        total_cents=20_000,
    )


def plan_section(view: dict[str, Any]) -> dict[str, Any]:
    [block] = [
        b
        for b in view["blocks"]
        if b.get("type") == "section" and "*Payment plan*" in (b.get("text") or {}).get("text", "")
    ]
    return block


async def press(
    slack: SlackHarness,
    user: str,
    block: dict[str, Any],
    *,
    choice: str | None = None,
    block_id: str | None = None,
) -> None:
    """The plan section's button, or an option of its overflow menu."""
    accessory = block["accessory"]
    action: dict[str, Any] = {
        "type": accessory["type"],
        "block_id": block_id or block["block_id"],
        "action_id": accessory["action_id"],
    }
    if choice is None:
        action["value"] = accessory["value"]
    else:
        action["selected_option"] = {"value": choice}
    response = await slack.sender.interaction(action_payload(slack, user, action, "unused"))
    assert response.status_code == 200


async def open_modal(slack: SlackHarness, user: str) -> dict[str, Any]:
    before = len(slack.fake.calls_to("views.open"))
    await press(slack, user, plan_section(await answer(slack, "invoice INV-000001", user)))
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    return view_of(calls[-1])


def values(count: str, first_due: date, note: str = "", frequency: str = "monthly") -> dict:
    return merge(
        typed(PlanBlock.COUNT, count),
        picked_date(PlanBlock.FIRST_DUE, first_due),
        {
            PlanBlock.FREQUENCY: {
                PlanBlock.FREQUENCY: {
                    "type": "static_select",
                    "selected_option": {"value": frequency},
                }
            }
        },
        typed(PlanBlock.NOTE, note),
    )


async def submit(
    slack: SlackHarness, user: str, view: dict[str, Any], view_id: str, state: dict[str, Any]
) -> dict[str, Any]:
    """Submit the plan form; when it is accepted, the plan replaces the answer's "Setting the
    plan" (it is written after the answer): returned with that view."""

    def mine(c: Any) -> bool:
        return bool(c.args.get("view_id") == view_id)

    before = len([c for c in slack.fake.calls_to("views.update") if mine(c)])
    response = await slack.sender.interaction(submission(user, view, view_id, state))
    assert response.status_code == 200
    answer = response.json() if response.content not in (b"", b"{}") else {}
    if answer.get("response_action") == "update":
        calls = await slack.fake.wait_for("views.update", mine, count=before + 1)
        answer = {**answer, "view": view_of(calls[-1])}
    return answer


async def installments(slack: SlackHarness) -> list[tuple[date, int]]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(select(m.Installment).order_by(m.Installment.position))
        await store.commit()
        return [(r.due_on, r.amount_cents) for r in rows.scalars()]


async def notices(slack: SlackHarness, template: str) -> list[m.Notice]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(select(m.Notice).where(m.Notice.template == template))
        await store.commit()
        return list(rows.scalars())


async def test_a_clerk_sets_a_plan_from_the_invoice_view(slack: SlackHarness) -> None:
    invoice_id = await setup(slack)
    assert PlanAction.OPEN not in action_ids(await answer(slack, "invoice INV-000001", TECH))
    assert "_None: reminders follow the due date._" in all_text(
        await answer(slack, "invoice INV-000001", CLERK)
    )

    modal = await open_modal(slack, CLERK)
    assert modal["callback_id"] == PlanModalId.SUBMIT
    assert "$200.00* left to pay" in all_text({"blocks": modal["blocks"]})

    for state, block, said in (
        (values("1", date(2026, 4, 1)), PlanBlock.COUNT, "from 2 to 24"),
        (values("three", date(2026, 4, 1)), PlanBlock.COUNT, "whole number"),
        (values("3", date(2026, 3, 1)), PlanBlock.FIRST_DUE, "can't be due in the past"),
        (values("3", date(2026, 4, 1), frequency="daily"), PlanBlock.FREQUENCY, "monthly"),
        (values("3", date(2026, 4, 1), note="x" * 501), PlanBlock.NOTE, "under 500"),
    ):
        errors = (await submit(slack, CLERK, modal, "V_PLAN", state))["errors"]
        assert said in errors[block], errors
    assert await installments(slack) == []

    good = values("3", date(2026, 4, 1), note="As agreed on the phone")
    done = await submit(slack, CLERK, modal, "V_PLAN", good)
    assert done["response_action"] == "update"
    text = all_text({"blocks": done["view"]["blocks"]})
    assert "Payment plan set on INV-000001" in text
    assert "$66.68, then $66.66 each" in text
    # Slack redelivers the submission: nothing happens twice.
    again = await submit(slack, CLERK, modal, "V_PLAN", good)
    assert "already set; nothing was done twice" in all_text({"blocks": again["view"]["blocks"]})
    assert await installments(slack) == [
        (date(2026, 4, 1), 6_668),
        (date(2026, 5, 1), 6_666),
        (date(2026, 6, 1), 6_666),
    ]
    confirmations = await notices(slack, "payment_plan_confirmation")
    assert len(confirmations) == 2  # both guardians, once
    assert confirmations[0].context["note"] == "As agreed on the phone"

    await slack.deliver_outbox()
    [posted] = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == BILLING_CHANNEL
    ]
    said = all_text({"blocks": blocks_of(posted)})
    assert "Payment plan set on INV-000001* by Billing Clerk Person" in said
    assert "As agreed on the phone" in said
    async with slack.runtime.stores() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, invoice_id)
        log = [e.action for e in await store.activity.for_entity("invoice", invoice_id)]
        await store.commit()
    assert thread is not None and thread.channel == BILLING_CHANNEL
    assert log == ["payment_plan_set"]

    shown = await answer(slack, "invoice INV-000001", CLERK)
    section = plan_section(shown)
    assert section["accessory"]["type"] == "overflow"
    assert "1. Apr 1, 2026 $66.68" in section["text"]["text"]


async def test_roles_without_record_payments_and_forged_values_are_refused(
    slack: SlackHarness,
) -> None:
    await setup(slack)
    clerk_view = await answer(slack, "invoice INV-000001", CLERK)
    section = plan_section(clerk_view)

    # A technician pressing a genuine button taken from the clerk's view.
    await press(slack, TECH, section)
    [told] = await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == TECH)
    assert "does not have the Record Payments permission" in told.args["text"]
    assert slack.fake.calls_to("views.open") == []

    # A block id that DeviceCare didn't sign.
    body = section["block_id"].rsplit(".", 1)[0]
    await press(slack, CLERK, section, block_id=f"{body}.AAAAAAAAAAAAAAAAAAAAAA")
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "didn't come from DeviceCare" in c.args["text"]
    )

    # A technician submitting the clerk's modal: refused next to the field, nothing written.
    modal = await open_modal(slack, CLERK)
    errors = (await submit(slack, TECH, modal, "V_T", values("3", date(2026, 4, 1))))["errors"]
    assert "Record Payments" in errors[PlanBlock.COUNT]
    forged = {**modal, "private_metadata": "v1.PlanModal.e30.AAAAAAAAAAAAAAAAAAAAAA"}
    errors = (await submit(slack, CLERK, forged, "V_F", values("3", date(2026, 4, 1))))["errors"]
    assert "didn't come from DeviceCare" in errors[PlanBlock.COUNT]
    assert await installments(slack) == []
    assert len(await refusals(slack)) == 4


async def test_clearing_from_the_menu_and_a_missed_installment_alert(
    slack: SlackHarness,
) -> None:
    invoice_id = await setup(slack)
    async with slack.runtime.stores() as store:
        clerk = await store.people.actor_by_slack_id(CLERK)
        assert clerk is not None
        await set_payment_plan(
            Context(store, slack.clock, slack.runtime.settings.tz),
            PlanRows(store.session, slack.clock),
            clerk,
            SetPaymentPlan(invoice_id, count=2, first_due=date(2026, 3, 3)),
        )
        await store.commit()

    # The billing run finds installment 1 (due March 3) unpaid on March 4.
    day = date(2026, 3, 4)
    slack.clock.set(at_run_time(day))
    await runner(slack.runtime.engine, slack.clock).run(day)
    assert len(await notices(slack, "installment_missed")) == 2
    await slack.deliver_outbox()
    posts = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == BILLING_CHANNEL
    ]
    [alert] = [
        c for c in posts if "installment 1 of 2 missed" in all_text({"blocks": blocks_of(c)})
    ]
    assert "INV-000001: installment 1 of 2 missed" in all_text({"blocks": blocks_of(alert)})
    assert alert.args.get("thread_ts")  # in the invoice's thread the plan message started

    section = plan_section(await answer(slack, "invoice INV-000001", CLERK))
    assert ":warning: missed (flagged Mar 4, 2026)" in section["text"]["text"]
    await press(slack, CLERK, section, choice=PlanMenu.CLEAR)
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Payment plan on INV-000001 cleared" in c.args["text"]
    )
    assert await installments(slack) == []
    # The same click delivered again changes nothing.
    await press(slack, CLERK, section, choice=PlanMenu.CLEAR)
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "has no payment plan; nothing was changed" in c.args["text"]
    )
    await slack.deliver_outbox()
    last = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == BILLING_CHANNEL
    ][-1]
    assert "cleared* by Billing Clerk Person" in all_text({"blocks": blocks_of(last)})
    async with slack.runtime.stores() as store:
        log = [e.action for e in await store.activity.for_entity("invoice", invoice_id)]
        await store.commit()
    assert log.count("payment_plan_cleared") == 1 and "installment_missed" in log
