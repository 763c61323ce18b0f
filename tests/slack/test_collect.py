"""`/collect` end to end through the Slack stand-in: scan, check in, bill, next student; and
unknown tags, forged forms and people without Collect Devices, who change nothing."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from bot.slack.collect_blocks import CollectField, CollectView
from storage import models as m
from tests.builders import add_collection_fees, add_district, add_student_with_device
from tests.slack.conftest import SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import eventually
from workflows.ledger import split_money

VIEW_ID = "V_COLLECT"


def view_of(call: Call) -> dict[str, Any]:
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def block_id(view: dict[str, Any], field: CollectField) -> str:
    found = [b["block_id"] for b in view["blocks"] if b.get("block_id", "").startswith(field + ".")]
    assert len(found) == 1, f"no {field} input in {view['callback_id']}"
    return str(found[0])


def scan_state(view: dict[str, Any], code: str) -> dict[str, Any]:
    tag = block_id(view, CollectField.TAG)
    return {"values": {tag: {CollectField.TAG: {"type": "plain_text_input", "value": code}}}}


def check_in_state(
    view: dict[str, Any], fee_ids: list[int], *, reason: str = "end_of_year", note: str = ""
) -> dict[str, Any]:
    values: dict[str, Any] = {
        block_id(view, CollectField.REASON): {
            CollectField.REASON: {"type": "radio_buttons", "selected_option": {"value": reason}}
        },
        block_id(view, CollectField.NOTE): {
            CollectField.NOTE: {"type": "plain_text_input", "value": note or None}
        },
    }
    if fee_ids:
        values[block_id(view, CollectField.MISSING)] = {
            CollectField.MISSING: {
                "type": "checkboxes",
                "selected_options": [{"value": str(i)} for i in fee_ids],
            }
        }
    return {"values": values}


async def submit(
    slack: SlackHarness,
    view: dict[str, Any],
    state: dict[str, Any],
    *,
    user: str = "U_TECH",
    metadata: str | None = None,
) -> dict[str, Any]:
    response = await slack.sender.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "trigger_id": "trigger.submit",
            "view": {
                "id": VIEW_ID,
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"] if metadata is None else metadata,
                "hash": "h1",
                "blocks": view["blocks"],
                "state": state,
            },
        }
    )
    assert response.status_code == 200
    return response.json() if response.content else {}


async def press_enter(
    slack: SlackHarness, view: dict[str, Any], code: str, *, user: str = "U_TECH"
) -> dict[str, Any]:
    """What Slack sends when a scanner types the tag and presses Enter; returns the redraw."""
    before = len(slack.fake.calls_to("views.update"))
    tag = block_id(view, CollectField.TAG)
    response = await slack.sender.interaction(
        {
            "type": "block_actions",
            "user": {"id": user},
            "trigger_id": "trigger.enter",
            "container": {"type": "view", "view_id": VIEW_ID},
            "view": {
                "id": VIEW_ID,
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "hash": "h1",
                "blocks": view["blocks"],
                "state": scan_state(view, code),
            },
            "actions": [
                {
                    "type": "plain_text_input",
                    "action_id": CollectField.TAG,
                    "block_id": tag,
                    "value": code,
                    "action_ts": "1700000001.0",
                }
            ],
        }
    )
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.update", count=before + 1)
    assert calls[-1].args["view_id"] == VIEW_ID
    return view_of(calls[-1])


async def open_collect(slack: SlackHarness, text: str = "", user: str = "U_TECH") -> dict[str, Any]:
    before = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.command("/collect", text, user=user)
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    return view_of(calls[-1])


async def count(slack: SlackHarness, model: type[m.Base]) -> int:
    async with slack.runtime.stores() as store:
        stmt = select(func.count()).select_from(model)
        result = int((await store.session.execute(stmt)).scalar_one())
        await store.commit()
        return result


async def test_a_table_of_students_is_checked_in_and_billed(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    d = await add_district(slack.runtime.stores)
    fees = await add_collection_fees(slack.runtime.stores)
    second_student, second_device = await add_student_with_device(
        slack.runtime.stores, sis_id="S2", serial="5CD9999ABC"
    )

    scan = await open_collect(slack)
    assert scan["callback_id"] == CollectView.SCAN
    tag_input = next(b for b in scan["blocks"] if b.get("block_id", "").startswith("collect_tag."))
    assert tag_input["dispatch_action"] is True
    assert tag_input["element"]["dispatch_action_config"] == {
        "trigger_actions_on": ["on_enter_pressed"]
    }

    # The scanner types the tag and presses Enter: the same modal shows the device.
    check_in = await press_enter(slack, scan, "LMS-0001")
    assert check_in["callback_id"] == CollectView.CHECK_IN
    shown = text_of(check_in)
    assert "Ana" in shown and "Rivera" in shown and "HP Chromebook 11 G9" in shown
    missing = next(
        b for b in check_in["blocks"] if b.get("block_id", "").startswith("collect_missing.")
    )
    assert missing["element"]["type"] == "checkboxes"
    assert [o["text"]["text"] for o in missing["element"]["options"]] == [
        "Case \u2014 $25.00",
        "Charger \u2014 $35.00",
        "Keyboard keys \u2014 $15.00",
    ]  # the iPad stylus isn't offered for a Chromebook

    answer = await submit(
        slack, check_in, check_in_state(check_in, [fees.charger_id, fees.keys_id], note="frayed")
    )
    assert answer["response_action"] == "update"
    after = answer["view"]
    assert after["callback_id"] == CollectView.SCAN
    result = text_of(after)
    assert "LMS-0001* checked in from Ana Rivera" in result
    assert "invoice INV-000001 $50.00 (Charger, Keyboard keys)" in result
    assert "1 device checked in" in result
    # a fresh, empty input: its block id is new, so Slack doesn't keep the last tag in it
    assert block_id(after, CollectField.TAG) != block_id(scan, CollectField.TAG)

    async with slack.runtime.stores() as store:
        invoice = (await store.session.execute(select(m.Invoice))).scalar_one()
        assert (invoice.kind, invoice.student_id, invoice.device_id) == (
            "collection",
            d.student_id,
            d.device_id,
        )
        assert invoice.total_cents == 5000
        assert invoice.collection_id is not None
        assert split_money(invoice).adds_up()
        collection = await store.session.get(m.DeviceCollection, invoice.collection_id)
        assert collection is not None and collection.note == "frayed"
        notices = (await store.session.execute(select(m.Notice))).scalars().all()
        assert [(n.template, n.invoice_id) for n in notices] == [("invoice_issued", invoice.id)]
        assert await store.devices.current_holder(d.device_id) is None
        await store.commit()

    # Slack delivering the same submission again changes nothing and says so.
    again = await submit(slack, check_in, check_in_state(check_in, [fees.charger_id, fees.keys_id]))
    assert "already recorded" in text_of(again["view"])
    assert await count(slack, m.Invoice) == 1
    assert await count(slack, m.DeviceCollection) == 1

    # Next student, this time through the Look up button with the serial typed by hand.
    answer = await submit(slack, after, scan_state(after, "5cd9999abc"))
    assert answer["response_action"] == "update"
    check_in_2 = answer["view"]
    assert check_in_2["callback_id"] == CollectView.CHECK_IN
    assert "Student" in text_of(check_in_2) and "S2" in text_of(check_in_2)
    done = await submit(slack, check_in_2, check_in_state(check_in_2, [], reason="withdrawal"))
    last = text_of(done["view"])
    assert "5CD9999ABC* checked in from Student S2" in last and "nothing missing" in last
    assert "2 devices checked in" in last and "$50.00 billed" in last
    async with slack.runtime.stores() as store:
        assert await store.devices.current_holder(second_device) is None
        row = (
            await store.session.execute(
                select(m.DeviceCollection).where(m.DeviceCollection.device_id == second_device)
            )
        ).scalar_one()
        assert (row.reason, row.student_id) == ("withdrawal", second_student)
        await store.commit()
    assert await count(slack, m.Invoice) == 1

    # The first device again: already checked in, shown on the input.
    refused = await submit(slack, done["view"], scan_state(done["view"], "LMS-0001"))
    assert refused["response_action"] == "errors"
    assert (
        "already checked in on Mar 2, 2026"
        in refused["errors"][block_id(done["view"], CollectField.TAG)]
    )


async def test_unknown_tags_and_forged_forms_change_nothing(slack: SlackHarness) -> None:
    tech = await slack.staff("Technician", "U_TECH")
    await add_district(slack.runtime.stores)
    fees = await add_collection_fees(slack.runtime.stores)
    scan = await open_collect(slack)

    answer = await submit(slack, scan, scan_state(scan, "NOPE-404"))
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        block_id(scan, CollectField.TAG): 'No device has the asset tag or serial "NOPE-404".'
    }

    redraw = await press_enter(slack, scan, "NOPE-404")
    assert redraw["callback_id"] == CollectView.SCAN
    assert "No device has the asset tag or serial" in text_of(redraw)

    check_in = await press_enter(slack, scan, "LMS-0001")
    # metadata edited on the way (or made up) is refused before anything is read from it
    forged = check_in["private_metadata"][:-2] + (
        "AA" if not check_in["private_metadata"].endswith("AA") else "BB"
    )
    answer = await submit(
        slack, check_in, check_in_state(check_in, [fees.charger_id]), metadata=forged
    )
    assert answer["response_action"] == "update"
    assert "didn't come from DeviceCare" in text_of(answer["view"])
    assert await count(slack, m.DeviceCollection) == 0
    assert await count(slack, m.Invoice) == 0
    async with slack.runtime.stores() as store:
        refusals = await store.activity.for_entity("security", tech.staff_id)
        assert [e.action for e in refusals] == ["refused"]
        await store.commit()


async def test_a_role_without_collect_devices_is_refused_at_every_step(
    slack: SlackHarness,
) -> None:
    await slack.staff("Technician", "U_TECH")
    clerk = await slack.staff("Billing Clerk", "U_CLERK")
    d = await add_district(slack.runtime.stores)
    fees = await add_collection_fees(slack.runtime.stores)

    response = await slack.sender.command("/collect", user="U_CLERK")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "Collect Devices" in body["text"]
    assert slack.fake.calls_to("views.open") == []

    # A technician's modal, replayed by the clerk: refused at the look-up and at the check-in.
    scan = await open_collect(slack)
    answer = await submit(slack, scan, scan_state(scan, "LMS-0001"), user="U_CLERK")
    assert answer["response_action"] == "errors"
    assert "Collect Devices" in answer["errors"][block_id(scan, CollectField.TAG)]
    check_in = await press_enter(slack, scan, "LMS-0001")
    answer = await submit(
        slack, check_in, check_in_state(check_in, [fees.charger_id]), user="U_CLERK"
    )
    assert "Collect Devices" in text_of(answer["view"])

    assert await count(slack, m.DeviceCollection) == 0
    assert await count(slack, m.Invoice) == 0
    async with slack.runtime.stores() as store:
        assert await store.devices.current_holder(d.device_id) == d.student_id
        await store.commit()

    async def three_refusals() -> bool:
        # A refusal is recorded just after the ack that answers it.
        async with slack.runtime.stores() as store:
            result = len(await store.activity.for_entity("security", clerk.staff_id)) == 3
            await store.commit()
            return result

    await eventually(three_refusals, what="three refusals in the activity log")


async def test_collect_with_a_tag_opens_at_that_device(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    await add_district(slack.runtime.stores)
    await add_collection_fees(slack.runtime.stores)

    check_in = await open_collect(slack, "LMS-0001")
    assert check_in["callback_id"] == CollectView.CHECK_IN
    assert "Rivera" in text_of(check_in)

    unknown = await open_collect(slack, "NOPE-1")
    assert unknown["callback_id"] == CollectView.SCAN
    assert 'No device has the asset tag or serial \\"NOPE-1\\"' in text_of(unknown)
