"""Create invoice from the incident card, end to end: signed requests in, fake Slack out."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot.slack.ids import IncidentAction
from bot.slack.invoice_blocks import AUTOMATION_ON, OVERRIDE_ON, InvoiceBlock, InvoiceView
from storage import models as m
from tests.builders import add_district, add_policy
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.money_helpers import (
    action_ids,
    all_text,
    block_ids,
    blocks_of,
    card_ts,
    invoices,
    merge,
    open_invoice_modal,
    open_test_incident,
    outbox_kinds,
    picked_date,
    refusals,
    selected,
    submit_invoice,
    ticked,
    typed,
    use_the_only_claim,
    view_action,
    view_of,
)

TECH = "U_TECH"
CLERK = "U_CLERK"
ADMIN = "U_ADMIN"


def fee_options(view: dict) -> dict[str, str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == InvoiceBlock.FEES)
    return {o["value"]: o["text"]["text"] for o in block["element"]["options"]}


async def test_modal_offers_the_incidents_fees_and_no_automation_box_to_a_technician(
    slack: SlackHarness,
) -> None:
    d = await add_district(slack.runtime.stores)
    async with slack.runtime.stores() as store:
        store.session.add_all(
            [
                m.FeeItem(code="ipad", name="iPad screen", price_cents=14900, device_model="iPad"),
                m.FeeItem(code="old", name="Retired fee", price_cents=100, active=False),
                m.FeeItem(
                    code="water", name="Liquid damage", price_cents=9000, incident_flag="liquid"
                ),
            ]
        )
        await store.commit()
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)

    view = await open_invoice_modal(slack, TECH, incident_id)

    assert fee_options(view) == {
        str(d.fee_charger_id): "Lost charger \u2014 $30.00",
        str(d.fee_keyboard_id): "Keyboard \u2014 $45.00",
        str(d.fee_screen_id): "Screen replacement \u2014 $125.00",
    }
    ids = block_ids(view)
    assert InvoiceBlock.AUTOMATION not in ids
    assert InvoiceBlock.OVERRIDE not in ids
    assert {InvoiceBlock.AMOUNT_1, InvoiceBlock.AMOUNT_3, InvoiceBlock.DUE_DATE} <= set(ids)
    due = next(b for b in view["blocks"] if b.get("block_id") == InvoiceBlock.DUE_DATE)
    assert due["element"]["initial_date"] == "2026-05-31"  # district today + 90 days
    assert "No active coverage" in all_text(view)


async def test_billing_clerk_gets_the_automation_checkbox(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    await slack.staff("Billing Clerk", CLERK)
    incident_id = await open_test_incident(slack, tech, d.device_id)

    view = await open_invoice_modal(slack, CLERK, incident_id)

    block = next(b for b in view["blocks"] if b.get("block_id") == InvoiceBlock.AUTOMATION)
    assert [o["value"] for o in block["element"]["initial_options"]] == [AUTOMATION_ON]


async def test_preview_shows_the_worked_example(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2
    )
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    assert "Claim 1 of 2 this term" in all_text(view)

    response = await slack.sender.interaction(
        view_action(
            TECH,
            view,
            "V_PREVIEW",
            selected(InvoiceBlock.FEES, [str(d.fee_screen_id)]),
            InvoiceBlock.FEES,
        )
    )
    assert response.status_code == 200
    update = (await slack.fake.wait_for("views.update"))[0]
    assert update.args["view_id"] == "V_PREVIEW"
    assert update.args["hash"] == "hash.V_PREVIEW"
    preview = next(
        b for b in view_of(update)["blocks"] if b.get("block_id") == InvoiceBlock.PREVIEW
    )["text"]["text"]
    assert "Original subtotal: *$125.00*" in preview
    assert "Insurance applied (AppleCare+ 2025-2026): *\u2212$96.00*" in preview
    assert "*$29.00 owed*" in preview
    assert "Claim 1 of 2 this term" in preview
    assert await invoices(slack) == []  # a preview writes nothing


async def test_preview_reports_a_bad_amount_while_typing(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    values = merge(typed(InvoiceBlock.AMOUNT_1, "40"), typed(InvoiceBlock.AMOUNT_2, "12.345"))
    await slack.sender.interaction(
        view_action(TECH, view, "V_TYPING", values, InvoiceBlock.AMOUNT_2)
    )
    preview = all_text(view_of((await slack.fake.wait_for("views.update"))[0]))
    assert "Original subtotal: *$40.00*" in preview  # undescribed lines count already
    assert "more than two decimal places" in preview


async def test_submission_creates_one_invoice_and_a_redelivery_none(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2
    )
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    values = merge(
        selected(InvoiceBlock.FEES, [str(d.fee_screen_id)]),
        picked_date(InvoiceBlock.DUE_DATE, date(2026, 4, 15)),
    )

    first = await submit_invoice(slack, TECH, view, "V_SUBMIT", values)
    body = first
    assert body["response_action"] == "update"
    assert body["view"]["callback_id"] == InvoiceView.CREATED
    assert "Invoice INV-000001 created: $29.00 owed (insurance $96.00)" in all_text(body["view"])

    again = await submit_invoice(slack, TECH, view, "V_SUBMIT", values)
    assert again["response_action"] == "update"
    assert "already submitted" in all_text(again["view"])

    rows = await invoices(slack)
    assert len(rows) == 1
    invoice = rows[0]
    assert (invoice.subtotal_cents, invoice.insurance_cents, invoice.total_cents) == (
        12500,
        9600,
        2900,
    )
    assert invoice.idempotency_key == "slack:view:V_SUBMIT"
    assert invoice.due_date == date(2026, 4, 15)
    assert invoice.created_by_id == tech.staff_id
    assert invoice.automation_enabled is True
    kinds = await outbox_kinds(slack)
    assert kinds.count("slack.invoice_created") == 1
    assert kinds.count("email.notice") == 1  # the invoice notice to the one guardian
    assert "slack.incident_card" in kinds

    await slack.deliver_outbox()
    posted = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == card_ts(incident_id)
    ]
    assert len(posted) == 1
    assert posted[0].args["channel"] == INCIDENTS_CHANNEL
    assert posted[0].args["text"] == "Invoice INV-000001 created: $29.00 owed (insurance $96.00)"
    assert IncidentAction.REQUEST_OVERRIDE not in action_ids(blocks_of(posted[0]))


@pytest.mark.parametrize(
    ("typed_amount", "message"),
    [
        ("12.345", "more than two decimal places"),
        ("abc", "isn't a valid amount"),
        ("-5", "is negative"),
    ],
)
async def test_a_bad_custom_amount_is_a_field_error(
    slack: SlackHarness, typed_amount: str, message: str
) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    values = merge(
        typed(InvoiceBlock.DESCRIPTION_1, "Stylus"), typed(InvoiceBlock.AMOUNT_1, typed_amount)
    )

    response = await submit_invoice(slack, TECH, view, "V_BAD", values)

    body = response
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [InvoiceBlock.AMOUNT_1]
    assert message in body["errors"][InvoiceBlock.AMOUNT_1]
    assert await invoices(slack) == []


async def test_an_amount_without_a_description_is_a_field_error(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    response = await submit_invoice(
        slack, TECH, view, "V_NODESC", typed(InvoiceBlock.AMOUNT_2, "10")
    )
    assert response["errors"] == {
        InvoiceBlock.DESCRIPTION_2: "Describe this line, or clear its amount."
    }
    empty = await submit_invoice(slack, TECH, view, "V_EMPTY", {})
    assert empty == {
        "response_action": "errors",
        "errors": {InvoiceBlock.FEES: "Add at least one line to the invoice."},
    }
    assert await invoices(slack) == []


async def test_a_technicians_crafted_automation_off_is_refused(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    # The technician's modal has no automation box; the request adds one, unticked.
    values = merge(
        selected(InvoiceBlock.FEES, [str(d.fee_screen_id)]), ticked(InvoiceBlock.AUTOMATION, [])
    )

    response = await submit_invoice(slack, TECH, view, "V_CRAFTED", values)

    body = response
    assert body["response_action"] == "errors"
    assert "Manage Invoice Automation" in body["errors"][InvoiceBlock.FEES]
    assert await invoices(slack) == []
    [entry] = await refusals(slack, tech)
    assert "create an invoice" in (entry.comment or "")


async def test_a_billing_clerk_may_turn_automation_off(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    await slack.staff("Billing Clerk", CLERK)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, CLERK, incident_id)
    values = merge(
        typed(InvoiceBlock.DESCRIPTION_1, "Hinge repair"),
        typed(InvoiceBlock.AMOUNT_1, "$1,045.50"),
        ticked(InvoiceBlock.AUTOMATION, []),
    )
    response = await submit_invoice(slack, CLERK, view, "V_CLERK", values)
    assert response["response_action"] == "update"
    [invoice] = await invoices(slack)
    assert invoice.automation_enabled is False
    assert invoice.total_cents == 104550
    assert [line.description for line in invoice.lines] == ["Hinge repair"]


async def test_a_forged_modal_is_refused(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    forged = {**view, "private_metadata": view["private_metadata"][:-2] + "xx"}
    response = await submit_invoice(
        slack, TECH, forged, "V_FORGED", selected(InvoiceBlock.FEES, [str(d.fee_screen_id)])
    )
    assert response["response_action"] == "errors"
    assert "didn't come from DeviceCare" in response["errors"][InvoiceBlock.FEES]
    assert await invoices(slack) == []
    assert len(await refusals(slack, tech)) == 1


async def test_at_the_cap_only_an_approver_is_offered_the_override(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, copay_cents=2500, max_claims=1, allow_override=True
    )
    tech = await slack.staff("Technician", TECH)
    admin = await slack.staff("Admin", ADMIN)
    await use_the_only_claim(slack, d.device_id, tech)
    incident_id = await open_test_incident(slack, tech, d.device_id)

    tech_view = await open_invoice_modal(slack, TECH, incident_id)
    assert InvoiceBlock.OVERRIDE not in block_ids(tech_view)
    text = all_text(tech_view)
    assert "Claim cap reached" in text and "billed at full price" in text
    assert "Request override" in text

    admin_view = await open_invoice_modal(slack, ADMIN, incident_id)
    assert InvoiceBlock.OVERRIDE in block_ids(admin_view)

    # Ticking the box re-prices the preview; submitting records the approver on the invoice.
    values = merge(
        selected(InvoiceBlock.FEES, [str(d.fee_screen_id)]),
        ticked(InvoiceBlock.OVERRIDE, [OVERRIDE_ON]),
    )
    await slack.sender.interaction(
        view_action(ADMIN, admin_view, "V_ADMIN", values, InvoiceBlock.OVERRIDE)
    )
    preview = all_text(view_of((await slack.fake.wait_for("views.update"))[0]))
    assert "*$25.00 owed*" in preview and "Claim-cap override applied" in preview

    response = await submit_invoice(slack, ADMIN, admin_view, "V_ADMIN", values)
    assert response["response_action"] == "update"
    invoice = (await invoices(slack))[-1]
    assert (invoice.total_cents, invoice.override_applied) == (2500, True)
    assert invoice.override_approved_by_id == admin.staff_id

    # The technician's crafted tick is refused by the server.
    other = await open_test_incident(slack, tech, d.device_id)
    tech_view = await open_invoice_modal(slack, TECH, other)
    crafted = await submit_invoice(slack, TECH, tech_view, "V_TECH", values)
    assert "Override Insurance Claim Cap" in crafted["errors"][InvoiceBlock.FEES]
    async with slack.runtime.stores() as store:
        count = await store.session.execute(
            select(m.Invoice.id).where(m.Invoice.incident_id == other)
        )
        assert count.first() is None
        await store.commit()
