"""Each Slack form offers only its kind of fee, through signed requests and the Slack stand-in:
the incident's invoice modal no collection items, the collection form no damage fees, and a
forged id of the other kind is refused with nothing written."""

from __future__ import annotations

from sqlalchemy import select

from bot.slack.collect_blocks import CollectField
from bot.slack.invoice_blocks import InvoiceBlock
from storage import models as m
from tests.builders import add_collection_fees, add_district
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import (
    all_text,
    blocks_of,
    invoices,
    open_invoice_modal,
    open_test_incident,
    selected,
    submit_invoice,
)
from tests.slack.test_collect import check_in_state, open_collect, press_enter, submit

TECH = "U_TECH"
CLERK = "U_CLERK"


async def _both_schedules(slack: SlackHarness) -> tuple[set[int], set[int]]:
    """The district's damage fees and collection items, with one part on both at two prices
    (as the issue saw: "Screen replacement" and "Cracked screen")."""
    d = await add_district(slack.runtime.stores)
    collection = await add_collection_fees(slack.runtime.stores)
    async with slack.runtime.stores() as store:
        cracked = m.FeeItem(
            code="c-screen", name="Cracked screen", kind="collection", price_cents=9500
        )
        annual = m.FeeItem(code="tech", name="Technology fee", kind="annual", price_cents=2500)
        store.session.add_all([cracked, annual])
        await store.session.flush()
        collection_ids = {
            collection.charger_id,
            collection.case_id,
            collection.keys_id,
            collection.stylus_id,
            cracked.id,
        }
        await store.commit()
    return {d.fee_screen_id, d.fee_keyboard_id, d.fee_charger_id}, collection_ids


def _invoice_options(view: dict) -> set[int]:
    block = next(b for b in view["blocks"] if b.get("block_id") == InvoiceBlock.FEES)
    return {int(o["value"]) for o in block["element"]["options"]}


def _collection_options(view: dict) -> set[int]:
    block = next(
        b for b in view["blocks"] if b.get("block_id", "").startswith(CollectField.MISSING + ".")
    )
    return {int(o["value"]) for o in block["element"]["options"]}


async def test_the_invoice_modal_offers_damage_fees_and_no_collection_items(
    slack: SlackHarness,
) -> None:
    damage, collection = await _both_schedules(slack)
    tech = await slack.staff("Technician", TECH)
    async with slack.runtime.stores() as store:
        device_id = (await store.session.execute(select(m.Device.id))).scalar_one()
        await store.commit()
    incident_id = await open_test_incident(slack, tech, device_id)

    view = await open_invoice_modal(slack, TECH, incident_id)

    offered = _invoice_options(view)
    assert offered == damage
    assert offered.isdisjoint(collection)

    # A forged submission picking a collection item is refused next to the fee list.
    forged = selected(InvoiceBlock.FEES, [str(min(collection))])
    answer = await submit_invoice(slack, TECH, view, "V_FORGED", forged)
    assert answer["response_action"] == "errors"
    assert "takes damage fees only" in answer["errors"][InvoiceBlock.FEES]
    assert await invoices(slack) == []


async def test_the_collection_form_offers_collection_items_and_no_damage_fees(
    slack: SlackHarness,
) -> None:
    damage, collection = await _both_schedules(slack)
    await slack.staff("Technician", TECH)

    check_in = await press_enter(slack, await open_collect(slack), "LMS-0001")

    offered = _collection_options(check_in)
    assert offered and offered <= collection  # the iPad stylus isn't offered for a Chromebook
    assert offered.isdisjoint(damage)

    # A forged check-in ticking a damage fee is refused; nothing is collected or billed.
    answer = await submit(slack, check_in, check_in_state(check_in, [min(damage)]))
    assert answer["response_action"] == "errors"
    async with slack.runtime.stores() as store:
        assert (await store.session.execute(select(m.DeviceCollection))).first() is None
        await store.commit()
    assert await invoices(slack) == []


async def _listed(slack: SlackHarness, text: str) -> str:
    before = len(slack.fake.calls_to("chat.postEphemeral"))
    response = await slack.sender.command("/billing", text, user=CLERK)
    assert response.status_code == 200
    calls = await slack.fake.wait_for("chat.postEphemeral", count=before + 1)
    return f"{calls[-1].args.get('text', '')}\n{all_text(blocks_of(calls[-1]))}"


async def test_billing_fee_items_shows_each_kind_with_its_form(slack: SlackHarness) -> None:
    await _both_schedules(slack)
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Technician", TECH)

    shown = await _listed(slack, "fee-items")
    assert "*Damage fees* \u00b7 offered on: incident invoice" in shown
    assert "*Collection fees* \u00b7 offered on: device collection" in shown
    assert "*Annual fees* \u00b7 offered on: no form" in shown
    assert "Screen replacement \u2014 $125.00" in shown and "Cracked screen \u2014 $95.00" in shown
    assert "Stylus \u2014 $20.00 `c-stylus` (for Apple iPad (9th gen))" in shown

    only = await _listed(slack, "fee-items collection")
    assert "Cracked screen" in only and "Screen replacement" not in only

    bad = await slack.sender.command("/billing", "fee-items parts", user=CLERK)
    assert "Unknown fee kind 'parts'" in bad.json()["text"]
    refused = await slack.sender.command("/billing", "fee-items", user=TECH)
    assert "needs the" in refused.json()["text"]
