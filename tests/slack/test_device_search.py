"""One device search behind the `/incident` type-ahead and `/device`, driven as Slack does."""

from __future__ import annotations

from bot.slack.incident_blocks import IncidentField, IncidentView
from storage import models as m
from tests.builders import T0
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import all_text

TECH = "U_TECH"
MODEL = "HP Chromebook 11 G9"


async def _district(slack: SlackHarness) -> None:
    async with slack.runtime.stores() as store:
        s = store.session
        for serial, tag, holder in (
            ("SN1001", "AT1001", ("Ana", "Rivera", "S-4401")),
            ("SN1003", "AT1005", ("Mia", "Chen-Okafor", "S-4402")),
            ("SN1004", None, None),
        ):
            device = m.Device(serial=serial, asset_tag=tag, model=MODEL, created_at=T0)
            s.add(device)
            await s.flush()
            if holder is not None:
                first, last, sis_id = holder
                student = m.Student(sis_id=sis_id, first_name=first, last_name=last)
                s.add(student)
                await s.flush()
                s.add(
                    m.DeviceAssignment(device_id=device.id, student_id=student.id, assigned_at=T0)
                )
        await store.commit()
    await slack.staff("Technician", TECH)


async def suggest(slack: SlackHarness, typed: str) -> list[str]:
    response = await slack.sender.interaction(
        {
            "type": "block_suggestion",
            "user": {"id": TECH},
            "action_id": IncidentField.DEVICE,
            "block_id": IncidentField.DEVICE,
            "value": typed,
            "view": {"id": "V1", "callback_id": IncidentView.NEW, "type": "modal"},
        }
    )
    assert response.status_code == 200
    return [o["text"]["text"].split(" \u00b7 ")[0] for o in response.json()["options"]]


async def device(slack: SlackHarness, typed: str) -> str:
    body = (await slack.sender.command("/device", typed, user=TECH)).json()
    return all_text(body.get("blocks") or []) or body["text"]


async def test_the_type_ahead_finds_what_was_typed_anywhere(slack: SlackHarness) -> None:
    await _district(slack)

    assert await suggest(slack, "1003") == ["SN1003"]
    assert await suggest(slack, "sn1001") == ["SN1001"]
    assert await suggest(slack, "AT1005") == ["SN1003"]
    assert await suggest(slack, "at-1005") == ["SN1003"]
    assert await suggest(slack, "S N 1 0 0 4") == ["SN1004"]
    assert await suggest(slack, "okafor") == ["SN1003"]  # part of a double name
    assert await suggest(slack, "MIA CHEN") == ["SN1003"]
    assert await suggest(slack, "rivera, ana") == ["SN1001"]
    assert await suggest(slack, "s4401") == ["SN1001"]  # the student id
    # Exact first, then starts-with, then contains.
    assert await suggest(slack, "sn100") == ["SN1001", "SN1003", "SN1004"]
    assert await suggest(slack, "100") == ["SN1001", "SN1003", "SN1004"]
    assert await suggest(slack, "zz-404") == []
    assert await suggest(slack, "a") == []


async def test_device_uses_the_same_search(slack: SlackHarness) -> None:
    await _district(slack)

    # One match (or one exact match) shows the record itself.
    assert "Device SN1003" in await device(slack, "1003")
    assert "Device SN1001" in await device(slack, "sn-1001")
    assert "Device SN1003" in await device(slack, "at 1005")
    assert "Device SN1003" in await device(slack, "chen okafor")
    assert "Device SN1001" in await device(slack, "S 4401")
    # Several: a list to pick from, in rank order.
    listing = await device(slack, "sn100")
    assert "3 devices match \u201csn100\u201d" in listing
    assert listing.index("SN1001") < listing.index("SN1003") < listing.index("SN1004")
    assert "Ana Rivera" in listing and "_not assigned_" in listing
    assert "No device matches" in await device(slack, "AT1009")
