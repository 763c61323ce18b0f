"""Waivers and refunds through the Slack stand-in: the buttons on `/billing invoice`, the modals
and their field errors, the approval request, who may decide, first decision wins."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from bot.slack.billing_settings_blocks import BillingSettingsIds
from bot.slack.waiver_blocks import (
    WAIVER_POST_KIND,
    WaiverAction,
    WaiverBlock,
    WaiverRef,
    WaiverView,
)
from storage import models as m
from tests.integration.billing_helpers import add_family, add_invoice
from tests.slack.conftest import APPROVALS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import (
    action_ids,
    blocks_of,
    button_value,
    click,
    eventually,
    merge,
    refusals,
    signed,
    submission,
    typed,
    view_of,
)
from tests.slack.test_billing_reports import CHANNEL, all_text, answer
from tests.slack.test_billing_settings import _open as open_settings
from tests.slack.test_billing_settings import _submit as submit_settings
from tests.slack.test_billing_settings import _values as settings_values
from workflows.ledger import split_money
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

CLERK = "U_CLERK"
DIRECTOR = "U_FD"
TECH = "U_TECH"


async def setup(slack: SlackHarness, total_cents: int = 20_000) -> int:
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Finance Director", DIRECTOR)
    (student,), _ = await add_family(slack.runtime.stores, "Okafor")
    return await add_invoice(
        slack.runtime.stores,
        student,
        created=date(2026, 1, 5),
        due=date(2026, 4, 1),
        total_cents=total_cents,
    )


async def row(slack: SlackHarness, invoice_id: int) -> m.Invoice:
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(invoice_id)
        assert invoice is not None
        assert split_money(invoice).adds_up()
        await store.commit()
        return invoice


async def open_modal(slack: SlackHarness, user: str, action_id: str) -> dict[str, Any]:
    """`/billing invoice`, then the button: the modal Slack was asked to open."""
    view = await answer(slack, "invoice INV-000001", user)
    value = button_value(view["blocks"], action_id)
    before = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.interaction(click(user, action_id, value, channel=CHANNEL))
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    return view_of(calls[-1])


async def submit(
    slack: SlackHarness, user: str, view: dict[str, Any], view_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Submit a waive or refund form; when it is accepted, the result replaces the answer's
    "Working on it" (it is written after the answer): returned with that view."""

    def mine(c: Any) -> bool:
        return bool(c.args.get("view_id") == view_id)

    before = len([c for c in slack.fake.calls_to("views.update") if mine(c)])
    response = await slack.sender.interaction(submission(user, view, view_id, values))
    assert response.status_code == 200
    answer = response.json() if response.content not in (b"", b"{}") else {}
    if answer.get("response_action") == "update":
        calls = await slack.fake.wait_for("views.update", mine, count=before + 1)
        answer = {**answer, "view": view_of(calls[-1])}
    return answer


def waive_values(amount: str | None, reason: str | None = "Family hardship") -> dict[str, Any]:
    return merge(typed(WaiverBlock.AMOUNT, amount), typed(WaiverBlock.REASON, reason))


def approvals(slack: SlackHarness, method: str) -> list[Call]:
    return [c for c in slack.fake.calls_to(method) if c.args.get("channel") == APPROVALS_CHANNEL]


async def test_waive_button_opens_the_modal_and_bad_amounts_change_nothing(
    slack: SlackHarness,
) -> None:
    invoice_id = await setup(slack)
    await slack.staff("Technician", TECH)

    tech_view = await answer(slack, "invoice INV-000001", TECH)
    assert WaiverAction.OPEN_WAIVE not in action_ids(tech_view["blocks"])
    clerk_view = await answer(slack, "invoice INV-000001", CLERK)
    assert WaiverAction.OPEN_WAIVE in action_ids(clerk_view["blocks"])
    assert WaiverAction.OPEN_REFUND not in action_ids(clerk_view["blocks"])  # no payment yet

    modal = await open_modal(slack, CLERK, WaiverAction.OPEN_WAIVE)
    assert modal["callback_id"] == WaiverView.WAIVE
    amount = [b for b in modal["blocks"] if b.get("block_id") == WaiverBlock.AMOUNT][0]
    assert amount["element"]["initial_value"] == "200.00"  # the balance

    for bad, said in (
        ("abc", "isn't a valid amount"),
        ("-5", "negative"),
        ("250.00", "more than the $200.00 still owed"),
        ("0", "above $0.00"),
    ):
        errors = (await submit(slack, CLERK, modal, "V_WAIVE", waive_values(bad)))["errors"]
        assert said in errors[WaiverBlock.AMOUNT]
    errors = (await submit(slack, CLERK, modal, "V_WAIVE", waive_values("20", "  ")))["errors"]
    assert errors == {WaiverBlock.REASON: "Say why."}
    assert (await row(slack, invoice_id)).waived_cents == 0

    done = await submit(slack, CLERK, modal, "V_WAIVE", waive_values("25.00"))
    assert done["response_action"] == "update"
    assert "Waived $25.00 on INV-000001" in all_text({"blocks": done["view"]["blocks"]})
    # Slack redelivers the submission: nothing happens twice.
    await submit(slack, CLERK, modal, "V_WAIVE", waive_values("25.00"))
    invoice = await row(slack, invoice_id)
    assert (invoice.waived_cents, invoice.total_cents, invoice.balance_cents) == (
        2_500,
        20_000,
        17_500,
    )
    shown = all_text(await answer(slack, "invoice INV-000001", CLERK))
    assert "Waived \u2212$25.00" in shown and "Family hardship" in shown
    assert "by Billing Clerk Person" in shown


async def test_a_large_waiver_is_approved_in_the_approvals_channel(slack: SlackHarness) -> None:
    invoice_id = await setup(slack)
    modal = await open_modal(slack, CLERK, WaiverAction.OPEN_WAIVE)
    done = await submit(slack, CLERK, modal, "V_BIG", waive_values("150.00"))
    assert "sent for approval" in all_text({"blocks": done["view"]["blocks"]})
    assert (await row(slack, invoice_id)).waived_cents == 0
    assert "awaiting approval" in all_text(await answer(slack, "invoice INV-000001", CLERK))

    await slack.deliver_outbox()
    [posted] = approvals(slack, "chat.postMessage")
    facts = all_text({"blocks": blocks_of(posted)})
    for expected in ("INV-000001", "Kid0 Okafor", "\u2212$150.00", "$200.00", "Family hardship"):
        assert expected in facts
    assert "Requested by Billing Clerk Person" in facts
    approve = button_value(blocks_of(posted), WaiverAction.APPROVE)

    # The clerk may ask but not approve: refused on the server, logged, nothing changes.
    await slack.sender.interaction(
        click(CLERK, WaiverAction.APPROVE, approve, channel=APPROVALS_CHANNEL)
    )
    await slack.fake.wait_for(
        "chat.postEphemeral",
        lambda c: c.args.get("user") == CLERK and "Approve Waivers" in c.args["text"],
    )
    async with slack.runtime.stores() as store:
        clerk = await store.people.actor_by_slack_id(CLERK)
        await store.commit()
    assert clerk is not None
    assert any("approve a waiver" in (e.comment or "") for e in await refusals(slack, clerk))
    assert (await row(slack, invoice_id)).waived_cents == 0

    await slack.sender.interaction(
        click(DIRECTOR, WaiverAction.APPROVE, approve, channel=APPROVALS_CHANNEL)
    )

    async def waived() -> bool:
        return (await row(slack, invoice_id)).waived_cents == 15_000

    await eventually(waived, what="the approval")
    await slack.deliver_outbox()
    [updated] = approvals(slack, "chat.update")
    text = all_text({"blocks": blocks_of(updated)})
    assert "Approved* by Finance Director Person" in text
    assert WaiverAction.APPROVE not in action_ids(blocks_of(updated))
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(WAIVER_POST_KIND, 1)
        assert post is not None and post.ts == updated.args["ts"]
        await store.commit()
    [dm] = await slack.fake.wait_for("chat.postMessage", lambda c: c.args.get("channel") == CLERK)
    assert "was approved by Finance Director Person" in dm.args["text"]
    assert "Balance now $50.00" in dm.args["text"]

    # A second click (or another approver racing) is told who decided; nothing changes.
    await slack.sender.interaction(
        click(DIRECTOR, WaiverAction.DENY, approve, channel=APPROVALS_CHANNEL)
    )
    [already] = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "already approved by" in c.args["text"]
    )
    assert already.args["user"] == DIRECTOR
    assert (await row(slack, invoice_id)).waived_cents == 15_000


async def test_a_forged_decision_button_is_refused(slack: SlackHarness) -> None:
    invoice_id = await setup(slack)
    modal = await open_modal(slack, CLERK, WaiverAction.OPEN_WAIVE)
    await submit(slack, CLERK, modal, "V_BIG", waive_values("150.00"))
    forged = signed(slack, WaiverRef(adjustment_id=1)).rsplit(".", 1)[0] + ".forged"
    await slack.sender.interaction(
        click(DIRECTOR, WaiverAction.APPROVE, forged, channel=APPROVALS_CHANNEL)
    )
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "didn't come from DeviceCare" in c.args["text"]
    )
    assert (await row(slack, invoice_id)).waived_cents == 0
    async with slack.runtime.stores() as store:
        adjustment = await store.payments.adjustment(1)
        assert adjustment is not None and adjustment.status == "pending"
        await store.commit()


async def test_refund_modal_refunds_part_of_a_check(slack: SlackHarness) -> None:
    invoice_id = await setup(slack)
    async with slack.runtime.stores() as store:
        clerk = await store.people.actor_by_slack_id(CLERK)
        assert clerk is not None
        await record_payment(
            Context(store, slack.clock, slack.runtime.settings.tz),
            clerk,
            RecordPayment(invoice_id, 6_000, PaymentMethod.CHECK, "pay-1", reference="1043"),
        )
        await store.commit()
    clerk_view = await answer(slack, "invoice INV-000001", CLERK)
    assert WaiverAction.OPEN_REFUND not in action_ids(clerk_view["blocks"])  # no Issue Refunds

    modal = await open_modal(slack, DIRECTOR, WaiverAction.OPEN_REFUND)
    assert modal["callback_id"] == WaiverView.REFUND
    [payment_block] = [b for b in modal["blocks"] if b.get("block_id") == WaiverBlock.PAYMENT]
    option = payment_block["element"]["initial_option"]
    assert "Check #1043" in option["text"]["text"]

    def values(amount: str, payment: str = option["value"]) -> dict[str, Any]:
        chosen = {
            WaiverBlock.PAYMENT: {
                WaiverBlock.PAYMENT: {
                    "type": "static_select",
                    "selected_option": {"value": payment},
                }
            }
        }
        return merge(chosen, waive_values(amount, "Device found after billing"))

    errors = (await submit(slack, DIRECTOR, modal, "V_REFUND", values("60.01")))["errors"]
    assert "more than the $60.00 left to refund" in errors[WaiverBlock.AMOUNT]
    errors = (await submit(slack, DIRECTOR, modal, "V_REFUND", values("5", payment="999")))[
        "errors"
    ]
    assert "this invoice's payments" in errors[WaiverBlock.PAYMENT]

    done = await submit(slack, DIRECTOR, modal, "V_REFUND", values("20.00"))
    assert "Refunded $20.00 on INV-000001" in all_text({"blocks": done["view"]["blocks"]})
    invoice = await row(slack, invoice_id)
    assert (invoice.refunded_cents, invoice.balance_cents) == (2_000, 14_000)
    async with slack.runtime.stores() as store:
        templates = (await store.session.execute(select(m.Notice.template))).scalars().all()
        await store.commit()
    assert "refund_receipt" in templates
    shown = all_text(await answer(slack, "invoice INV-000001", DIRECTOR))
    assert "Refunded $20.00 of check #1043" in shown and "Device found after billing" in shown


async def test_billing_waive_quick_form(slack: SlackHarness) -> None:
    invoice_id = await setup(slack)
    await slack.staff("Technician", TECH)

    refused = await slack.sender.command("/billing", "waive INV-000001 5 oops", user=TECH)
    assert "Waive Charges" in refused.json()["text"]
    usage = await slack.sender.command("/billing", "waive INV-000001", user=CLERK)
    assert "Usage" in usage.json()["text"]
    bad = await slack.sender.command("/billing", "waive INV-000001 abc reason", user=CLERK)
    assert "isn't a valid amount" in bad.json()["text"]
    done = await slack.sender.command("/billing", "waive inv-1 12.50 Sibling discount", user=CLERK)
    assert done.content in (b"", b"{}")  # answered at once; the result follows
    [told] = await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == CLERK)
    assert "Waived $12.50 on INV-000001" in told.args["text"]
    assert (await row(slack, invoice_id)).waived_cents == 1_250


async def test_the_approval_amount_is_a_billing_setting(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", DIRECTOR)
    view = await open_settings(slack, DIRECTOR)
    [block] = [b for b in view["blocks"] if b.get("block_id") == BillingSettingsIds.WAIVER_APPROVAL]
    assert block["element"]["initial_value"] == "100.00"

    def values(amount: str) -> dict[str, Any]:
        field = {BillingSettingsIds.VALUE: {"type": "plain_text_input", "value": amount}}
        return {**settings_values(), BillingSettingsIds.WAIVER_APPROVAL: field}

    bad = await submit_settings(slack, DIRECTOR, view, values("lots"))
    assert BillingSettingsIds.WAIVER_APPROVAL in bad.json()["errors"]
    await submit_settings(slack, DIRECTOR, view, values("250.00"))
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).waiver_approval_cents == 25_000
        await store.commit()
    [dm] = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == DIRECTOR)
    assert "above $100.00 → above $250.00" in dm.args["text"]
