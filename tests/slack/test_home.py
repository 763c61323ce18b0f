"""The App Home shows each person what is theirs to do."""

from __future__ import annotations

import json
from datetime import date

from tests.builders import add_district, add_policy
from tests.slack.conftest import SlackHarness
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.overrides import request_cap_override
from workflows.ports import Context


def _text(call) -> str:  # type: ignore[no-untyped-def]
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    return json.dumps(view["blocks"], ensure_ascii=False)


async def _open_home(slack: SlackHarness, user: str) -> str:
    before = len(slack.fake.calls_to("views.publish"))
    response = await slack.sender.event(
        {"type": "app_home_opened", "user": user, "tab": "home", "channel": "D1"}
    )
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.publish", count=before + 1)
    assert calls[-1].args["user_id"] == user
    return _text(calls[-1])


async def test_home_for_technician_admin_and_billing(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, copay_cents=2500, max_claims=1, allow_override=True
    )
    tech = await slack.staff("Technician", "U_TECH")
    await slack.staff("Admin", "U_ADMIN")
    await slack.staff("Billing Clerk", "U_CLERK")
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        first = await open_incident(
            ctx,
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 2), flags=("screen",)),
        )
        second = await open_incident(
            ctx,
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 3), flags=("keyboard",)),
        )
        for incident in (first, second):
            await create_invoice_for_incident(
                ctx,
                tech,
                CreateInvoice(
                    incident_id=incident.incident.id, custom_lines=(CustomLine("Repair", 9000),)
                ),
            )
        await request_cap_override(ctx, tech, second.incident.id)
        await store.commit()

    tech_home = await _open_home(slack, "U_TECH")
    assert "#1" in tech_home and "#2" in tech_home and "5CD1234XYZ" in tech_home
    assert "claim-cap overrides" not in tech_home and "Overdue" not in tech_home

    admin_home = await _open_home(slack, "U_ADMIN")
    assert "Waiting on you: claim-cap overrides" in admin_home
    assert "Incident *#2*" in admin_home and "Nothing open" in admin_home

    slack.clock.advance(days=120)  # both invoices are now past due
    clerk_home = await _open_home(slack, "U_CLERK")
    assert "*2* overdue, *$115.00* outstanding" in clerk_home
    assert "INV-000001" in clerk_home


async def test_home_for_someone_not_set_up(slack: SlackHarness) -> None:
    home = await _open_home(slack, "U_NOBODY")
    assert "not set up in DeviceCare" in home


async def test_home_ignores_the_messages_tab(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    await slack.sender.event({"type": "app_home_opened", "user": "U_TECH", "tab": "messages"})
    await slack.sender.event({"type": "app_home_opened", "user": "U_TECH", "tab": "home"})
    await slack.fake.wait_for("views.publish")
    assert len(slack.fake.calls_to("views.publish")) == 1
