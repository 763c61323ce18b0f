"""Listeners answer Slack before they write: a form is checked without writing, answered, and
written afterwards by a lazy listener, so a busy database never makes Slack give up at 3 s.
A failure after the answer reaches the person and changes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from bot.slack.incident_blocks import IncidentField, IncidentView
from storage import models as m
from tests.builders import add_district
from tests.slack.conftest import SlackHarness
from tests.slack.test_incidents import (
    blocks_text,
    incidents,
    new_incident_state,
    open_new_incident_modal,
    opened_modal,
    submit,
)


async def hold_the_device(slack: SlackHarness, device_id: int, store: object) -> None:
    """Lock the device (PostgreSQL) and take the write lock (SQLite), as a busy writer does."""
    from storage.uow import SqlUnitOfWork

    assert isinstance(store, SqlUnitOfWork)
    await store.devices.get(device_id, lock=True)
    await store.session.execute(
        update(m.Device).where(m.Device.id == device_id).values(model=m.Device.model)
    )


async def test_a_new_incident_is_answered_while_the_database_is_busy(
    slack: SlackHarness,
) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    async with slack.runtime.stores() as store:
        await hold_the_device(slack, d.device_id, store)
        answer = await asyncio.wait_for(
            submit(
                slack,
                IncidentView.NEW,
                modal["private_metadata"],
                new_incident_state(d.device_id),
                view_id="V_BUSY",
            ),
            timeout=2.5,
        )
        assert answer["response_action"] == "update"
        assert "Opening the incident" in blocks_text(answer["view"]["blocks"])
        await asyncio.sleep(0.2)
        assert slack.fake.calls_to("views.update") == []  # still waiting to write
        await store.commit()
    # The writer is done: the lazy listener opens the incident and shows its number.
    shown = await opened_modal(slack, "V_BUSY")
    assert "Incident *#1* is open" in blocks_text(shown["blocks"])
    assert len(await incidents(slack)) == 1


async def test_a_field_error_is_still_shown_next_to_its_field(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    answer = await submit(
        slack,
        IncidentView.NEW,
        modal["private_metadata"],
        new_incident_state(d.device_id, flags=()),
    )
    assert answer == {
        "response_action": "errors",
        "errors": {IncidentField.FLAGS: "Pick at least one incident type."},
    }
    await asyncio.sleep(0.3)
    assert await incidents(slack) == [] and slack.fake.calls_to("views.update") == []
    # The lazy listener (started whatever the ack answers) left the refused form alone.
    assert [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == "U_TECH"
    ] == []


async def test_a_failure_after_the_answer_tells_the_person_and_changes_nothing(
    slack: SlackHarness,
) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    async with slack.runtime.stores() as store:
        await hold_the_device(slack, d.device_id, store)
        await submit(
            slack,
            IncidentView.NEW,
            modal["private_metadata"],
            new_incident_state(d.device_id),
            view_id="V_LATE",
        )
        await asyncio.sleep(0.5)  # the lazy listener has checked the form and waits to write
        # Meanwhile the district's day turns back: the date is now in the future.
        slack.clock.set(slack.clock.now() - timedelta(days=5))
        await store.commit()

    [told] = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "U_TECH")
    assert told.args["text"] == (
        ":warning: Couldn't open the incident: The incident date can't be in the future. "
        "Nothing was changed."
    )
    assert await incidents(slack) == []
    async with slack.runtime.stores() as store:
        queued = (
            await store.session.execute(select(func.count()).select_from(m.OutboxMessage))
        ).scalar_one()
        await store.commit()
    assert queued == 0
