"""Replace device from an incident, and `/device` lifetime records, end to end."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.slack.device_blocks import DeviceAction, DeviceBlock, DeviceView
from bot.slack.ids import IncidentAction
from storage import models as m
from tests.builders import add_district, add_policy
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.money_helpers import (
    action_ids,
    all_text,
    blocks_of,
    button_value,
    card_ts,
    click,
    incident_ref,
    merge,
    open_test_incident,
    outbox_kinds,
    refusals,
    submission,
    typed,
    view_of,
)
from workflows.incidents import add_incident_note
from workflows.invoices import CreateInvoice, create_invoice_for_incident
from workflows.ports import Context

TECH = "U_TECH"
CLERK = "U_CLERK"


async def replaced(slack: SlackHarness, payload: dict[str, Any]) -> dict[str, Any]:
    """Submit the replace-device form; when it is accepted, the result replaces the answer's
    "Replacing the device" (it is written after the answer): returned with that view."""
    view_id = payload["view"]["id"]

    def mine(c: Any) -> bool:
        return bool(c.args.get("view_id") == view_id)

    before = len([c for c in slack.fake.calls_to("views.update") if mine(c)])
    response = await slack.sender.interaction(payload)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json() if response.content not in (b"", b"{}") else {}
    if answer.get("response_action") == "update":
        calls = await slack.fake.wait_for("views.update", mine, count=before + 1)
        answer = {**answer, "view": view_of(calls[-1])}
    return answer


async def open_replace_modal(slack: SlackHarness, user: str, incident_id: int) -> dict:
    await slack.sender.interaction(
        click(user, IncidentAction.REPLACE_DEVICE, incident_ref(slack, incident_id))
    )
    view = view_of((await slack.fake.wait_for("views.open"))[-1])
    assert view["callback_id"] == DeviceView.REPLACE
    return view


async def test_replace_device_through_the_modal(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)

    view = await open_replace_modal(slack, TECH, incident_id)
    assert "Replacing *5CD1234XYZ*" in all_text(view) and "Ana Rivera" in all_text(view)
    values = merge(
        typed(DeviceBlock.NEW_SERIAL, " 5cd9999new "),
        typed(DeviceBlock.NEW_ASSET_TAG, "LMS-0002"),
        typed(DeviceBlock.NEW_MODEL, None),
    )
    body = await replaced(slack, submission(TECH, view, "V_REPLACE", values))
    assert body["response_action"] == "update"
    assert "Ana Rivera now has *5CD9999NEW* (tag LMS-0002)" in all_text(body["view"])
    async with slack.runtime.stores() as store:
        old = await store.devices.get(d.device_id)
        new = await store.devices.by_serial("5CD9999NEW")
        assert old is not None and new is not None
        assert (old.status, old.replaced_by_id) == ("replaced", new.id)
        assert (new.asset_tag, new.model) == ("LMS-0002", "HP Chromebook 11 G9")
        assert await store.devices.current_holder(new.id) == d.student_id
        assert await store.devices.current_holder(old.id) is None
        history = await store.devices.history(old.id)
        assert history is not None and len(history.assignments) == 1  # kept, not moved
        await store.commit()
    assert "slack.incident_card" in await outbox_kinds(slack)

    # A redelivered submission finds the replacement done and makes no second device.
    again = await replaced(slack, submission(TECH, view, "V_REPLACE", values))
    assert "already submitted" in all_text(again["view"])
    async with slack.runtime.stores() as store:
        devices = (await store.session.execute(select(m.Device.id))).all()
        assert len(devices) == 2
        await store.commit()

    await slack.deliver_outbox()
    told = [
        c.args["text"]
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == INCIDENTS_CHANNEL
        and c.args.get("thread_ts") == card_ts(incident_id)
    ]
    assert told == [
        ":arrows_counterclockwise: Device replaced by Technician Person: 5CD1234XYZ \u2192 "
        "Ana Rivera now has *5CD9999NEW* (tag LMS-0002); 5CD1234XYZ is marked replaced and "
        "keeps its history."
    ]


async def test_replacement_problems_are_field_errors(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_replace_modal(slack, TECH, incident_id)

    same = await slack.sender.interaction(
        submission(TECH, view, "V1", typed(DeviceBlock.NEW_SERIAL, "5cd1234xyz"))
    )
    assert same.json()["errors"] == {
        DeviceBlock.NEW_SERIAL: "The new serial is the same as the old one."
    }
    taken_tag = await slack.sender.interaction(
        submission(
            TECH,
            view,
            "V2",
            merge(
                typed(DeviceBlock.NEW_SERIAL, "NEW1"), typed(DeviceBlock.NEW_ASSET_TAG, "LMS-0001")
            ),
        )
    )
    assert "already on device 5CD1234XYZ" in taken_tag.json()["errors"][DeviceBlock.NEW_ASSET_TAG]
    async with slack.runtime.stores() as store:
        assert await store.devices.current_holder(d.device_id) == d.student_id
        await store.commit()


async def test_a_billing_clerk_may_not_replace_devices(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    clerk = await slack.staff("Billing Clerk", CLERK)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    await slack.sender.interaction(
        click(CLERK, IncidentAction.REPLACE_DEVICE, incident_ref(slack, incident_id))
    )
    [told] = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Replace Devices" in c.args["text"]
    )
    assert told.args["user"] == CLERK
    assert slack.fake.calls_to("views.open") == []
    assert len(await refusals(slack, clerk)) == 1

    # Nor by crafting the submission.
    tech_view = await open_replace_modal(slack, TECH, incident_id)
    crafted = await slack.sender.interaction(
        submission(CLERK, tech_view, "V3", typed(DeviceBlock.NEW_SERIAL, "NEW2"))
    )
    assert "Replace Devices" in crafted.json()["errors"][DeviceBlock.NEW_SERIAL]
    assert len(await refusals(slack, clerk)) == 2


async def _history_to_look_up(slack: SlackHarness) -> int:
    """Ana's device with an invoiced incident and a note; returns the incident id."""
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2
    )
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        await create_invoice_for_incident(
            ctx, tech, CreateInvoice(incident_id=incident_id, fee_item_ids=(d.fee_screen_id,))
        )
        await add_incident_note(ctx, tech, incident_id, "Dropped on the bus <!channel>")
        await store.commit()
    return incident_id


async def test_device_by_serial_shows_the_lifetime_record(slack: SlackHarness) -> None:
    await _history_to_look_up(slack)

    response = await slack.sender.command("/device", " 5cd1234xyz ", user=TECH)

    body = response.json()
    assert body["response_type"] == "ephemeral"
    text = all_text(body["blocks"])
    assert "Device 5CD1234XYZ" in text
    assert "asset tag *LMS-0001*" in text and "status *In service*" in text
    assert "Lincoln Middle" in text
    assert "*Current holder*\nAna Rivera (grade 7)" in text
    assert "AppleCare+ (2025-2026) \u2014 Claim 2 of 2 this term" in text  # coverage today
    assert "Ana Rivera: Jun 30, 2024 \u2013 now" in text  # issued 2024-07-01 00:00 UTC
    assert "#1 \u00b7 Feb 20, 2026 \u00b7 Screen \u00b7 Open" in text
    assert "INV-000001 $29.00 owed (insurance $96.00), Unpaid" in text
    assert "*Notes* (1)" in text
    assert "Dropped on the bus &lt;!channel&gt;" in text  # typed text can't ping anyone
    assert "0 photos" in text


async def test_device_by_asset_tag_and_unknown(slack: SlackHarness) -> None:
    await _history_to_look_up(slack)
    by_tag = await slack.sender.command("/device", "lms-0001", user=TECH)
    assert "Device 5CD1234XYZ" in all_text(by_tag.json()["blocks"])

    unknown = await slack.sender.command("/device", "NOPE-404", user=TECH)
    assert unknown.json() == {
        "response_type": "ephemeral",
        "text": ":mag: No device matches \u201cNOPE-404\u201d. Type part of a serial or asset "
        "tag (three characters or more), or of a student's name or id.",
    }
    empty = await slack.sender.command("/device", "", user=TECH)
    assert "by serial, asset tag or student name" in empty.json()["text"]


async def test_device_by_student_name_after_a_replacement(slack: SlackHarness) -> None:
    incident_id = await _history_to_look_up(slack)
    view = await open_replace_modal(slack, TECH, incident_id)
    new_serial = typed(DeviceBlock.NEW_SERIAL, "5CD9999NEW")
    await replaced(slack, submission(TECH, view, "V_R", new_serial))

    response = await slack.sender.command("/device", "ana rivera", user=TECH)

    body = response.json()
    assert body["text"].startswith("2 devices match")
    blocks = body["blocks"]
    assert action_ids(blocks) == [DeviceAction.SHOW, DeviceAction.SHOW]
    listing = all_text(blocks)
    assert listing.index("5CD9999NEW") < listing.index("5CD1234XYZ")  # today's device first
    assert "Ana Rivera \u00b7 In service" in listing and "_not assigned_ \u00b7 Replaced" in listing

    # Picking the old device shows its record, with the replacement on both sides.
    old_value = button_value(blocks[2], DeviceAction.SHOW)
    await slack.sender.interaction(click(TECH, DeviceAction.SHOW, old_value, channel="C_HELP"))
    [shown] = await slack.fake.wait_for("chat.postEphemeral")
    assert shown.args["channel"] == "C_HELP" and shown.args["user"] == TECH
    old_record = all_text(blocks_of(shown))
    assert "Device 5CD1234XYZ" in old_record
    assert "Replaced by *5CD9999NEW*" in old_record
    assert "_Not assigned to anyone_" in old_record
    assert "Ana Rivera: Jun 30, 2024 \u2013 Mar 2, 2026 \u00b7 replaced by 5CD9999NEW" in old_record
    assert "INV-000001" in old_record  # the incident stays with the device it happened to

    new_record = all_text((await slack.sender.command("/device", "5cd9999new")).json()["blocks"])
    assert "Replaces *5CD1234XYZ*" in new_record
    assert "Ana Rivera: Mar 2, 2026 \u2013 now \u00b7 replaces 5CD1234XYZ" in new_record
    assert "*Incidents* (0)" in new_record
