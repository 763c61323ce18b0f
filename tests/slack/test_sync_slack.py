"""Syncs in Slack: `/device` says where facts came from and offers the source's most recent
user without assigning them; the nightly summary and alerts reach the sync channel."""

from __future__ import annotations

from datetime import date

import pytest

from bot.sync.runner import run_sync
from storage.device_sync import DeviceSyncJob
from tests.builders import add_district
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.money_helpers import all_text
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
