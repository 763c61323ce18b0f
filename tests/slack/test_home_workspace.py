"""The App Home as a workspace: each role's buttons, a click runs the message's own handler,
paged lists, and a burst of changes republishing a home once (through the outbox)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from bot.jobs.scheduler import run_billing_day
from bot.slack.billing_report_blocks import BillingInvoiceAction
from bot.slack.home_lists import HomeAction, HomePages
from bot.slack.metadata import pack
from bot.slack.override_blocks import OverrideAction
from bot.slack.reply_blocks import ReplyAction
from bot.slack.waiver_blocks import WaiverAction
from storage import models as m
from storage.home_refresh import HOME_KIND
from tests.builders import add_district, add_policy
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import action_ids, all_text, button_value, eventually
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.overrides import request_cap_override
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.waivers import RequestWaiver, request_waiver

TECH, ADMIN, CLERK, DIRECTOR = "U_TECH", "U_ADMIN", "U_CLERK", "U_FD"
DECIDING = {
    OverrideAction.APPROVE,
    OverrideAction.DENY,
    WaiverAction.APPROVE,
    WaiverAction.DENY,
    ReplyAction.CONFIRM,
    BillingInvoiceAction.OPEN,
}


def _view(call: Any) -> dict[str, Any]:
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def _publishes(slack: SlackHarness, user: str) -> list[dict[str, Any]]:
    return [_view(c) for c in slack.fake.calls_to("views.publish") if c.args["user_id"] == user]


async def open_home(slack: SlackHarness, user: str) -> dict[str, Any]:
    before = len(slack.fake.calls_to("views.publish"))
    event = {"type": "app_home_opened", "user": user, "tab": "home", "channel": "D1"}
    assert (await slack.sender.event(event)).status_code == 200
    calls = await slack.fake.wait_for("views.publish", count=before + 1)
    return _view(calls[-1])


def home_click(user: str, action_id: str, value: str) -> dict[str, Any]:
    """block_actions for a button on the App Home: a view, no channel, no response_url."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T_DISTRICT"},
        "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
        "container": {"type": "view", "view_id": "V_HOME"},
        "view": {
            "id": "V_HOME",
            "type": "home",
            "callback_id": "",
            "private_metadata": "",
            "hash": "h1",
            "state": {"values": {}},
        },
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "home",
                "value": value,
                "action_ts": "1700000000.000200",
            }
        ],
    }


async def click(slack: SlackHarness, user: str, action_id: str, value: str) -> None:
    response = await slack.sender.interaction(home_click(user, action_id, value))
    assert response.status_code == 200


async def workspace(slack: SlackHarness) -> dict[str, Actor]:
    """Two incidents and their invoices, an override request, a waiver waiting for approval and
    a reported payment."""
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores, d.student_id, copay_cents=2500, max_claims=1, allow_override=True
    )
    people = {
        TECH: await slack.staff("Technician", TECH),
        ADMIN: await slack.staff("Admin", ADMIN),
        CLERK: await slack.staff("Billing Clerk", CLERK),
        DIRECTOR: await slack.staff("Finance Director", DIRECTOR),
    }
    tech = people[TECH]
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        incidents = [
            await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, day), flags=("screen",)
                ),
            )
            for day in (2, 3)
        ]
        invoices = [
            await create_invoice_for_incident(
                ctx,
                tech,
                CreateInvoice(
                    incident_id=i.incident.id, custom_lines=(CustomLine("Repair", 20_000),)
                ),
            )
            for i in incidents
        ]
        await request_cap_override(ctx, tech, incidents[1].incident.id)
        first, full_price = (i.invoice.id for i in invoices)  # the second is past the claim cap
        await request_waiver(
            ctx, people[CLERK], RequestWaiver(full_price, 15_000, "Family hardship")
        )
        store.session.add(
            m.PendingPayment(
                invoice_id=first,
                amount_cents=2_500,
                method="cash",
                status="pending",
                created_at=slack.clock.now(),
                amount_given=True,
            )
        )
        await store.commit()
    return people


async def test_each_role_sees_the_buttons_it_may_use(slack: SlackHarness) -> None:
    await workspace(slack)
    slack.clock.advance(days=120)  # both invoices are past due

    tech = await open_home(slack, TECH)
    assert set(action_ids(tech["blocks"])) == {HomeAction.OPEN_INCIDENT}
    assert "#1" in all_text(tech["blocks"]) and "#2" in all_text(tech["blocks"])

    director = await open_home(slack, DIRECTOR)
    assert DECIDING <= set(action_ids(director["blocks"]))
    assert "Family hardship" in all_text(director["blocks"])

    clerk = await open_home(slack, CLERK)
    clerk_ids = set(action_ids(clerk["blocks"]))
    assert {ReplyAction.CONFIRM, BillingInvoiceAction.OPEN} <= clerk_ids
    assert not clerk_ids & {OverrideAction.APPROVE, WaiverAction.APPROVE}

    admin = await open_home(slack, ADMIN)
    assert DECIDING <= set(action_ids(admin["blocks"]))
    for home in (tech, director, clerk, admin):
        assert len(home["blocks"]) <= 100


async def test_a_home_button_runs_the_real_handler(slack: SlackHarness) -> None:
    await workspace(slack)
    slack.clock.advance(days=120)
    home = await open_home(slack, DIRECTOR)

    await click(
        slack, DIRECTOR, WaiverAction.APPROVE, button_value(home["blocks"], WaiverAction.APPROVE)
    )

    async def approved() -> bool:
        async with slack.runtime.stores() as store:
            waiver = (await store.session.execute(select(m.InvoiceAdjustment))).scalar_one()
            await store.commit()
            return waiver.status == "applied"

    await eventually(approved, what="the waiver approved")

    # Open an invoice and an incident: each arrives by DM, as its own command shows it.
    await click(
        slack,
        DIRECTOR,
        BillingInvoiceAction.OPEN,
        button_value(home["blocks"], BillingInvoiceAction.OPEN),
    )
    [invoice_dm] = await slack.fake.wait_for("chat.postMessage")
    assert invoice_dm.args["channel"] == DIRECTOR and "INV-000001" in all_text(
        json.loads(invoice_dm.args["blocks"])
        if isinstance(invoice_dm.args["blocks"], str)
        else invoice_dm.args["blocks"]
    )

    tech_home = await open_home(slack, TECH)
    await click(
        slack,
        TECH,
        HomeAction.OPEN_INCIDENT,
        button_value(tech_home["blocks"], HomeAction.OPEN_INCIDENT),
    )
    calls = await slack.fake.wait_for("chat.postMessage", count=2)
    assert calls[-1].args["channel"] == TECH and "#2" in calls[-1].args["text"]


async def test_a_technician_cannot_approve_from_a_copied_button(slack: SlackHarness) -> None:
    await workspace(slack)
    director = await open_home(slack, DIRECTOR)
    value = button_value(director["blocks"], OverrideAction.APPROVE)
    await click(slack, TECH, OverrideAction.APPROVE, value)

    async def told() -> bool:
        return any(c.args["channel"] == TECH for c in slack.fake.calls_to("chat.postMessage"))

    await eventually(told, what="the technician told no")
    async with slack.runtime.stores() as store:
        request = (await store.session.execute(select(m.CapOverrideRequest))).scalar_one()
        await store.commit()
    assert request.status == "pending"


async def test_each_list_is_paged(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        for day in range(1, 8):
            await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, day), flags=("screen",)
                ),
            )
        await store.commit()
    first = await open_home(slack, TECH)
    assert action_ids(first["blocks"]).count(HomeAction.OPEN_INCIDENT) == 5
    assert "1–5 of 7" in all_text(first["blocks"])
    assert "Previous" not in all_text(first["blocks"])

    before = len(_publishes(slack, TECH))
    await click(slack, TECH, HomeAction.PAGE, button_value(first["blocks"], HomeAction.PAGE))
    await slack.fake.wait_for("views.publish", count=before + 1)
    second = _publishes(slack, TECH)[-1]
    assert action_ids(second["blocks"]).count(HomeAction.OPEN_INCIDENT) == 2
    assert "6–7 of 7" in all_text(second["blocks"]) and "Previous" in all_text(second["blocks"])

    # A page value DeviceCare didn't sign turns nothing.
    await click(slack, TECH, HomeAction.PAGE, pack(HomePages(incidents=1), "not-our-secret"))

    async def refused() -> bool:
        return any(c.args["channel"] == TECH for c in slack.fake.calls_to("chat.postMessage"))

    await eventually(refused, what="the forged page refused")
    assert len(_publishes(slack, TECH)) == before + 1


async def _home_rows(slack: SlackHarness) -> list[m.OutboxMessage]:
    async with slack.runtime.stores() as store:
        stmt = select(m.OutboxMessage).where(m.OutboxMessage.kind == HOME_KIND)
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


async def test_a_burst_of_changes_republishes_each_home_once(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    await slack.staff("Admin", ADMIN)
    for day in (2, 3, 4):  # three transactions, one after another
        async with slack.runtime.stores() as store:
            ctx = Context(store, slack.clock, slack.runtime.settings.tz)
            await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, day), flags=("screen",)
                ),
            )
            await store.commit()
    # Only the technician's own list changed: one row, for them.
    assert [r.payload for r in await _home_rows(slack)] == [{"user": TECH}]

    await slack.deliver_outbox()
    [home] = _publishes(slack, TECH)
    assert action_ids(home["blocks"]).count(HomeAction.OPEN_INCIDENT) == 3
    assert _publishes(slack, ADMIN) == []

    # A waiver waiting for approval changes every approver's list.
    clerk = await slack.staff("Billing Clerk", CLERK)
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        created = await create_invoice_for_incident(
            ctx, tech, CreateInvoice(incident_id=1, custom_lines=(CustomLine("Repair", 20_000),))
        )
        await request_waiver(ctx, clerk, RequestWaiver(created.invoice.id, 15_000, "Hardship"))
        await store.commit()
    await slack.deliver_outbox()
    [admin_home] = _publishes(slack, ADMIN)
    assert WaiverAction.APPROVE in action_ids(admin_home["blocks"])
    assert all(r.status == "sent" for r in await _home_rows(slack))


async def test_an_invoice_past_due_refreshes_billing_homes(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)
    await slack.staff("Billing Clerk", CLERK)
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        opened = await open_incident(
            ctx,
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 2), flags=("screen",)),
        )
        created = await create_invoice_for_incident(
            ctx,
            tech,
            CreateInvoice(
                incident_id=opened.incident.id, custom_lines=(CustomLine("Repair", 9_000),)
            ),
        )
        await store.commit()
    await slack.deliver_outbox()
    slack.clock.advance(days=120)
    async with slack.runtime.stores() as store:
        invoice = await store.session.get(m.Invoice, created.invoice.id)
        assert invoice is not None
        invoice.status = "first"  # e.g. the first reminder went out
        await store.commit()
    await slack.deliver_outbox()
    clerk_homes = _publishes(slack, CLERK)
    assert clerk_homes and "INV-000001" in all_text(clerk_homes[-1]["blocks"])
    assert isinstance(slack.clock.now(), datetime)


async def test_the_daily_billing_run_refreshes_billing_homes(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Technician", TECH)
    assert await run_billing_day(slack.runtime) is not None
    assert [r.payload for r in await _home_rows(slack)] == [{"user": CLERK}]


async def test_a_home_slack_cannot_draw_is_not_retried(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", TECH)

    async def change() -> None:
        async with slack.runtime.stores() as store:
            ctx = Context(store, slack.clock, slack.runtime.settings.tz)
            await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, 2), flags=("screen",)
                ),
            )
            await store.commit()

    await change()
    slack.fake.answer_error("views.publish", "user_not_found")  # gone from Slack: skipped
    await slack.deliver_outbox()
    await change()
    slack.fake.answer_error("views.publish", "not_enabled")  # the Home tab is off: failed
    await slack.deliver_outbox()
    assert [r.status for r in await _home_rows(slack)] == ["sent", "failed"]
