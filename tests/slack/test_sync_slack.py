"""Syncs in Slack: `/device` says where facts came from and offers the source's most recent
user without assigning them; the nightly summary and alerts reach the sync channel."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot.slack.device_blocks import DeviceAction
from bot.sync.runner import run_sync
from storage import models as m
from storage.device_sync import DeviceSyncJob
from tests.builders import add_district
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.money_helpers import action_ids, all_text, button_value, click, refusals
from tests.sync.listed_source import APPLECARE, ListedSource, chromebook, ipad

TECH = "U_TECH"
SYNC_CHANNEL = "C_SYNC"


@pytest.fixture
def slack_settings() -> dict[str, object]:
    return {"sync_channel": SYNC_CHANNEL, "sync_max_change_share": 0.1}


async def _device_text(slack: SlackHarness, query: str) -> str:
    response = await slack.sender.command("/device", query, user=TECH)
    return all_text(response.json()["blocks"])


async def test_device_shows_its_sources_and_a_suggested_holder(slack: SlackHarness) -> None:
    district = await add_district(slack.runtime.stores)  # Ana Rivera holds 5CD1234XYZ
    async with slack.runtime.stores() as store:
        ana = await store.people.student(district.student_id)
        assert ana is not None
        ana.email = "ana@students.example.org"
        await store.commit()
    await slack.staff("Technician", TECH)
    apple = ListedSource("apple", [ipad(1, asset_tag="T-1", end=date(2027, 8, 31))])
    google = ListedSource(
        "google",
        [
            chromebook(7, serial="5cd1234xyz", last_user_email="ANA@students.example.org"),
            chromebook(8, last_user_email="ana@students.example.org"),
            chromebook(9, last_user_email="nobody@students.example.org"),
        ],
    )
    assert (await run_sync(slack.runtime, DeviceSyncJob(apple))).status == "applied"
    assert (await run_sync(slack.runtime, DeviceSyncJob(google))).status == "applied"

    ipad_text = await _device_text(slack, "DMP0000001")
    assert (
        f"Model, part number, asset tag, {APPLECARE} and status from Apple School Manager"
        " \u00b7 synced 2 Mar 09:00" in ipad_text
    )  # the conftest clock, in Chicago
    held = await _device_text(slack, "5CD1234XYZ")
    assert "Model and status from Google Admin" in held
    assert "most recent user" not in held  # it is the holder already
    offered = await _device_text(slack, "5CD0000008")
    assert (
        "Google Admin's most recent user: Ana Rivera (ana@students.example.org)"
        " \u2014 not assigned in DeviceCare" in offered
    )
    assert "_Not assigned to anyone_" in offered  # offered, never assigned
    unknown = await _device_text(slack, "5CD0000009")
    assert "nobody@students.example.org \u2014 no student in DeviceCare has that email" in unknown


async def _suggested(slack: SlackHarness) -> tuple[int, int]:
    """Ana Rivera holds 5CD1234XYZ; Google Admin lists 5CD0000008 (unassigned here) with Ana
    as its most recent user, and 5CD1234XYZ with Ben Okafor's. (Ana's id, Ben's id.)"""
    district = await add_district(slack.runtime.stores)
    async with slack.runtime.stores() as store:
        ana = await store.people.student(district.student_id)
        assert ana is not None
        ana.email = "ana@students.example.org"
        ben = m.Student(
            first_name="Ben", last_name="Okafor", sis_id="S-BEN", email="ben@students.example.org"
        )
        store.session.add(ben)
        await store.session.flush()
        ben_id = ben.id
        await store.commit()
    google = ListedSource(
        "google",
        [
            chromebook(7, serial="5cd1234xyz", last_user_email="ben@students.example.org"),
            chromebook(8, last_user_email="ana@students.example.org"),
        ],
    )
    assert (await run_sync(slack.runtime, DeviceSyncJob(google))).status == "applied"
    return district.student_id, ben_id


async def _holders(slack: SlackHarness, serial: str) -> list[tuple[int, str | None]]:
    async with slack.runtime.reads() as store:
        rows = await store.session.execute(
            select(m.DeviceAssignment.student_id, m.DeviceAssignment.returned_at)
            .join(m.Device, m.Device.id == m.DeviceAssignment.device_id)
            .where(m.Device.serial == serial)
            .order_by(m.DeviceAssignment.id)
        )
        return [(r.student_id, None if r.returned_at is None else "returned") for r in rows]


async def _device_blocks(slack: SlackHarness, query: str, user: str = TECH) -> list[dict]:
    response = await slack.sender.command("/device", query, user=user)
    return response.json()["blocks"]


async def test_staff_assign_the_suggested_holder_with_one_click(slack: SlackHarness) -> None:
    tech = await slack.staff("Technician", TECH)
    ana_id, _ = await _suggested(slack)
    blocks = await _device_blocks(slack, "5CD0000008")
    assert DeviceAction.ASSIGN_SUGGESTED in action_ids(blocks)
    assert "Assign to Ana Rivera" in all_text({"blocks": blocks})
    value = button_value(blocks, DeviceAction.ASSIGN_SUGGESTED)

    payload = click(TECH, DeviceAction.ASSIGN_SUGGESTED, value, channel="C_HELP")
    payload["response_url"] = f"{slack.fake.base_url}response.assign"
    assert (await slack.sender.interaction(payload)).status_code == 200
    (answer,) = await slack.fake.wait_for("response.assign")
    assert answer.args["replace_original"] is True
    said = all_text(answer.args)
    assert "*5CD0000008* is now assigned to Ana Rivera" in said
    assert "Assign to Ana Rivera" not in said  # she holds it now: nothing left to offer
    assert await _holders(slack, "5CD0000008") == [(ana_id, None)]
    async with slack.runtime.reads() as store:
        device = await store.devices.by_serial("5CD0000008")
        assert device is not None
        (entry,) = [e for e in await store.activity.for_entity("device", device.id)]
    assert entry.action == "holder_assigned" and entry.actor_staff_id == tech.staff_id
    assert entry.after == {"student_id": ana_id, "from": "Google Admin's most recent user"}

    # A second click (or Slack redelivering the first) changes nothing.
    payload["response_url"] = f"{slack.fake.base_url}response.again"
    await slack.sender.interaction(payload)
    (again,) = await slack.fake.wait_for("response.again")
    assert "*5CD0000008* was already assigned to Ana Rivera" in all_text(again.args)
    assert await _holders(slack, "5CD0000008") == [(ana_id, None)]


async def test_reassigning_asks_first_and_a_stale_button_changes_nothing(
    slack: SlackHarness,
) -> None:
    await slack.staff("Technician", TECH)
    ana_id, ben_id = await _suggested(slack)
    blocks = await _device_blocks(slack, "5CD1234XYZ")
    (offer,) = [
        e
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == DeviceAction.ASSIGN_SUGGESTED
    ]
    assert offer["text"]["text"] == "Assign to Ben Okafor"
    assert "DeviceCare has it assigned to *Ana Rivera*" in offer["confirm"]["text"]["text"]

    # Staff move the device on before the technician clicks: the old button must not undo it.
    async with slack.runtime.stores() as store:
        device = await store.devices.by_serial("5CD1234XYZ")
        assert device is not None
        await store.devices.unassign(device.id, reason="returned at the desk")
        await store.commit()
    payload = click(TECH, DeviceAction.ASSIGN_SUGGESTED, offer["value"], channel="C_HELP")
    await slack.sender.interaction(payload)
    [warning] = await slack.fake.wait_for("chat.postEphemeral")
    assert "Who holds 5CD1234XYZ changed since this was shown" in all_text(warning.args)
    assert await _holders(slack, "5CD1234XYZ") == [(ana_id, "returned")]


async def test_without_the_permission_there_is_no_button_and_a_replayed_one_is_refused(
    slack: SlackHarness,
) -> None:
    await slack.staff("Technician", TECH)
    clerk = await slack.staff("Billing Clerk", "U_CLERK")
    await _suggested(slack)
    value = button_value(await _device_blocks(slack, "5CD0000008"), DeviceAction.ASSIGN_SUGGESTED)
    clerk_view = await _device_blocks(slack, "5CD0000008", user="U_CLERK")
    assert DeviceAction.ASSIGN_SUGGESTED not in action_ids(clerk_view)
    assert "Google Admin's most recent user: Ana Rivera" in all_text({"blocks": clerk_view})

    await slack.sender.interaction(click("U_CLERK", DeviceAction.ASSIGN_SUGGESTED, value))
    [told] = await slack.fake.wait_for("chat.postEphemeral")
    assert "does not have the Replace Devices permission" in all_text(told.args)
    assert await _holders(slack, "5CD0000008") == []
    assert len(await refusals(slack, clerk)) == 1

    forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    await slack.sender.interaction(click(TECH, DeviceAction.ASSIGN_SUGGESTED, forged))
    assert await _holders(slack, "5CD0000008") == []


async def test_the_nightly_summary_and_a_held_run_post_in_the_sync_channel(
    slack: SlackHarness,
) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(4)])
    await run_sync(slack.runtime, DeviceSyncJob(source), trigger="nightly")
    source.devices = source.devices[:2]
    held = await run_sync(slack.runtime, DeviceSyncJob(source), trigger="nightly")
    assert held.status == "held"
    assert await slack.deliver_outbox() == 2
    summary, alert = slack.fake.calls_to("chat.postMessage")
    assert summary.args["channel"] == alert.args["channel"] == SYNC_CHANNEL
    assert summary.args["text"] == "Nightly sync from Google Admin: new 4."
    assert "new 5CD0000000 HP Chromebook 11 G9" in all_text(summary.args["blocks"])
    said = all_text(alert.args["blocks"])
    assert "would retire or unassign 2 of 4 records (50%), more than the 10%" in said
    assert "`devicecare sync google --allow-removals`" in said
    assert "retired 5CD0000002 (no longer in Google Admin)" in said


async def test_a_failed_run_alerts_the_billing_channel_without_a_sync_channel(
    slack: SlackHarness,
) -> None:
    slack.runtime.settings.sync_channel = None
    source = ListedSource("google", down="Google Admin answered 401: invalid_grant")
    await run_sync(slack.runtime, DeviceSyncJob(source), trigger="nightly")
    assert await slack.deliver_outbox() == 1
    (alert,) = slack.fake.calls_to("chat.postMessage")
    assert alert.args["channel"] == BILLING_CHANNEL
    said = all_text(alert.args["blocks"])
    assert "The sync from Google Admin failed" in said and "invalid_grant" in said
    assert "The next nightly run tries again." in said


def test_a_sources_own_status_shows_beside_its_facts() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bot.slack.sync_blocks import provenance_line
    from storage.sync_provenance import Provenance

    when = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    facts = {"model": "HP Chromebook 11 G9 EE", "status": "in_service"}
    record = Provenance("google", {**facts, "source_status": "DISABLED"}, when, when)
    line = provenance_line(record, ZoneInfo("America/Chicago"))
    assert line == (
        "Model and status from Google Admin \u00b7 synced 6 Dec 01:00"
        " \u00b7 DISABLED in Google Admin"
    )
    active = Provenance("google", {**facts, "source_status": "ACTIVE"}, when, when)
    assert "ACTIVE" not in provenance_line(active, ZoneInfo("America/Chicago"))
