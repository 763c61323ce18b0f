"""Staff are shown by their Slack profile name: read at first contact, kept fresh by Slack's
`user_change` event, and re-read in the background when a day old."""

from __future__ import annotations

from sqlalchemy import select

from storage import models as m
from tests.builders import add_district, add_staff
from tests.slack.conftest import SlackHarness
from tests.slack.test_incidents import (
    blocks_text,
    eventually,
    open_incident_via_modal,
    post_card,
)


def slack_user(user_id: str, email: str, *, display: str, real: str) -> dict[str, object]:
    """A user as users.info and `user_change` carry it."""
    return {
        "id": user_id,
        "name": email.split("@")[0],
        "real_name": real,
        "profile": {"email": email, "display_name": display, "real_name": real},
    }


async def shown_name(slack: SlackHarness, staff_id: int | None) -> str | None:
    assert staff_id is not None
    async with slack.runtime.reads() as store:
        return await store.people.staff_name(staff_id)


async def test_first_contact_takes_the_slack_profile_name(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await add_staff(slack.runtime.stores, "Technician", "tech@district.org")
    assert tech.name == "Technician Person"  # what the CLI had on file
    slack.fake.users["U_TECH"] = slack_user(
        "U_TECH", "tech@district.org", display="Sam R.", real="Samantha Rivera"
    )
    await open_incident_via_modal(slack, d.device_id)
    card = await post_card(slack)
    assert "*Reported by*\\nSam R." in blocks_text(card.args["blocks"])
    assert await shown_name(slack, tech.staff_id) == "Sam R."
    async with slack.runtime.reads() as store:
        entries = (await store.session.execute(select(m.ActivityEntry))).scalars().all()
    assert {e.actor_label for e in entries if e.entity_type == "incident"} == {"Sam R."}
    # A display name left empty falls back to the full name.
    slack.fake.users["U_TECH"] = slack_user(
        "U_TECH", "tech@district.org", display="", real="Samantha Rivera"
    )
    response = await slack.sender.event(
        {"type": "user_change", "user": slack.fake.users["U_TECH"], "event_ts": "1.1"}
    )
    assert response.status_code == 200
    await eventually(lambda: _is(slack, tech.staff_id, "Samantha Rivera"))


async def _is(slack: SlackHarness, staff_id: int | None, name: str) -> bool:
    return await shown_name(slack, staff_id) == name


async def test_a_user_change_event_renames_staff_everywhere(slack: SlackHarness) -> None:
    admin = await slack.staff("Admin", "U_ADMIN")
    event = {
        "type": "user_change",
        "user": slack_user("U_ADMIN", "u_admin@district.org", display="Jo", real="Jo Park"),
        "event_ts": "1.2",
    }
    response = await slack.sender.event(event)
    assert response.status_code == 200
    await eventually(lambda: _is(slack, admin.staff_id, "Jo"))
    async with slack.runtime.reads() as store:
        actor = await store.people.actor_by_slack_id("U_ADMIN")
        [logged] = [
            e
            for e in await store.activity.for_entity("staff", admin.staff_id or 0)
            if e.action == "slack_name_changed"
        ]
        # SQL lists (approvals on App Home, invoice timelines) use the same name.
        [listed] = (
            await store.session.execute(
                select(m.Staff.display_name).where(m.Staff.id == admin.staff_id)
            )
        ).one()
    assert actor is not None and actor.name == "Jo" and listed == "Jo"
    assert logged.before == {"name": "Admin Person"}
    assert logged.after == {"name": "Jo"}
    # Someone who isn't staff, or an event without a user object, changes nothing.
    for user in (slack_user("U_NOBODY", "x@y.org", display="X", real="X"), "U_ADMIN", None):
        response = await slack.sender.event({"type": "user_change", "user": user})
        assert response.status_code == 200
    assert await shown_name(slack, admin.staff_id) == "Jo"


async def test_a_day_old_name_is_reread_after_the_ack(slack: SlackHarness) -> None:
    fresh = await slack.staff("Technician", "U_FRESH")
    slack.fake.users["U_FRESH"] = slack_user(
        "U_FRESH", "u_fresh@district.org", display="Kim", real="Kim Lo"
    )
    # Read within the day: no users.info at all.
    response = await slack.sender.command("/device", "nothing-like-this", user="U_FRESH")
    assert response.status_code == 200
    assert slack.fake.calls_to("users.info") == []
    assert await shown_name(slack, fresh.staff_id) == "Technician Person"

    tech = await slack.staff("Technician", "U_TECH")
    slack.fake.users["U_TECH"] = slack_user(
        "U_TECH", "u_tech@district.org", display="Lee", real="Lee Chan"
    )
    slack.clock.advance(days=1, seconds=1)
    response = await slack.sender.command("/device", "nothing-like-this", user="U_TECH")
    assert response.status_code == 200
    await eventually(lambda: _is(slack, tech.staff_id, "Lee"))
    assert [c.args["user"] for c in slack.fake.calls_to("users.info")] == ["U_TECH"]
    async with slack.runtime.reads() as store:
        staff = await store.session.get(m.Staff, tech.staff_id)
    assert staff is not None and staff.slack_name_at == slack.clock.now()
