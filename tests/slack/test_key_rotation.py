"""After SECRET_KEY is rotated (the old key kept in SECRET_KEY_PREVIOUS), a button posted
before the rotation still works; a value signed with a key never configured is refused."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.device_blocks import DeviceView
from bot.slack.ids import IncidentAction, IncidentRef
from bot.slack.metadata import pack
from tests.builders import add_district
from tests.slack.conftest import SECRET_KEY, SlackHarness
from tests.slack.money_helpers import click, open_test_incident, refusals, view_of

TECH = "U_TECH"
NEW_KEY = "rotated-slack-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def slack_settings() -> dict[str, Any]:
    return {"secret_key": NEW_KEY, "secret_key_previous": SECRET_KEY}


async def test_a_button_posted_before_the_rotation_still_works(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    posted_before = pack(IncidentRef(incident_id=incident_id), SECRET_KEY)

    await slack.sender.interaction(click(TECH, IncidentAction.REPLACE_DEVICE, posted_before))

    view = view_of((await slack.fake.wait_for("views.open"))[-1])
    assert view["callback_id"] == DeviceView.REPLACE
    assert await refusals(slack, tech) == []


async def test_a_value_signed_with_an_unknown_key_is_refused(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    forged = pack(IncidentRef(incident_id=incident_id), "never-configured-key-0123456789")

    await slack.sender.interaction(click(TECH, IncidentAction.REPLACE_DEVICE, forged))

    assert slack.fake.calls_to("views.open") == []
    assert len(await refusals(slack, tech)) == 1
