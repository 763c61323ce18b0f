"""When insurance would pay $0.00 yet still use a claim, the invoice modal warns first: the
technician ticks "Use the claim anyway" and submits again, or changes the fees."""

from __future__ import annotations

from typing import Any

from bot.slack.invoice_blocks import ZERO_CLAIM_OK, InvoiceBlock, InvoiceView
from tests.builders import add_district, add_policy
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import (
    all_text,
    block_ids,
    invoices,
    merge,
    open_invoice_modal,
    open_test_incident,
    selected,
    submission,
    submit_invoice,
    ticked,
    view_action,
    view_of,
)

TECH = "U_TECH"
WARNING = (
    "Insurance would pay $0.00 on this invoice, but it would still use a claim "
    "(claim 1 of 2 this term, District Plan (2025-2026))."
)


async def _modal(slack: SlackHarness, copay_cents: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The invoice modal for an incident whose policy's co-pay is `copay_cents`, and the
    values that pick the $125.00 screen fee."""
    d = await add_district(slack.runtime.stores)
    await add_policy(slack.runtime.stores, d.student_id, copay_cents=copay_cents, max_claims=2)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    return view, selected(InvoiceBlock.FEES, [str(d.fee_screen_id)])


async def _submit(
    slack: SlackHarness, view: dict[str, Any], view_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    response = await slack.sender.interaction(submission(TECH, view, view_id, values))
    assert response.status_code == 200
    return response.json() if response.content else {}


async def test_the_preview_warns_and_a_first_submit_is_held_back(slack: SlackHarness) -> None:
    view, fees = await _modal(slack, copay_cents=15000)
    await slack.sender.interaction(view_action(TECH, view, "V_ZERO", fees, InvoiceBlock.FEES))
    previewed = view_of((await slack.fake.wait_for("views.update"))[0])
    zero = next(b for b in previewed["blocks"] if b.get("block_id") == InvoiceBlock.ZERO_CLAIM)
    assert zero["label"]["text"] == WARNING
    assert zero["element"]["options"][0]["value"] == ZERO_CLAIM_OK

    answer = await _submit(slack, previewed, "V_ZERO", fees)

    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        InvoiceBlock.ZERO_CLAIM: WARNING
        + " Tick the box to use the claim anyway, or change the fees."
    }
    assert await invoices(slack) == []


async def test_a_submit_without_the_preview_gets_the_warning_shown(slack: SlackHarness) -> None:
    view, fees = await _modal(slack, copay_cents=15000)
    assert InvoiceBlock.ZERO_CLAIM not in block_ids(view)

    answer = await _submit(slack, view, "V_FAST", fees)

    assert answer["response_action"] == "update"
    assert answer["view"]["callback_id"] == InvoiceView.CREATE
    assert InvoiceBlock.ZERO_CLAIM in block_ids(answer["view"])
    zero = next(b for b in answer["view"]["blocks"] if b.get("block_id") == InvoiceBlock.ZERO_CLAIM)
    assert zero["label"]["text"] == WARNING and "initial_options" not in zero["element"]
    assert await invoices(slack) == []


async def test_ticking_the_box_creates_the_invoice(slack: SlackHarness) -> None:
    view, fees = await _modal(slack, copay_cents=15000)
    values = merge(fees, ticked(InvoiceBlock.ZERO_CLAIM, [ZERO_CLAIM_OK]))

    answer = await submit_invoice(slack, TECH, view, "V_OK", values)

    assert "Invoice INV-000001 created: $125.00 owed (insurance $0.00)" in all_text(answer["view"])
    [invoice] = await invoices(slack)
    assert invoice.claim_enrollment_id is not None  # the claim is used, as agreed


async def test_no_warning_when_insurance_pays_something(slack: SlackHarness) -> None:
    view, fees = await _modal(slack, copay_cents=2900)

    answer = await submit_invoice(slack, TECH, view, "V_PAYS", fees)

    assert "Invoice INV-000001 created: $29.00 owed (insurance $96.00)" in all_text(answer["view"])
