"""`/billing report` and `/billing invoice` through the Slack stand-in: answers arrive through the
response_url, every control is checked on the server, forged values are refused and logged."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update

from bot.slack.billing_report_blocks import AutomationSwitch, BillingInvoiceAction
from storage import models as m
from tests.integration.billing_helpers import add_family, add_invoice, at_run_time, runner
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import eventually, signed
from workflows.invoices import cancel_invoice
from workflows.ports import Context

CHANNEL = "C_HELP"
JAN1 = date(2026, 1, 1)


def hook(slack: SlackHarness, name: str) -> str:
    """A response_url on the stand-in: what DeviceCare sends there is recorded as `name`."""
    return f"{slack.fake.base_url}{name}"


async def command(slack: SlackHarness, text: str, user: str) -> Any:
    name = f"response.{uuid.uuid4().hex[:8]}"
    response = await slack.sender.command(
        "/billing", text, user=user, channel=CHANNEL, response_url=hook(slack, name)
    )
    assert response.status_code == 200
    return response, name


async def answer(slack: SlackHarness, text: str, user: str) -> dict[str, Any]:
    """The ephemeral answer to a /billing command."""
    _response, name = await command(slack, text, user)
    (call,) = await slack.fake.wait_for(name)
    assert call.args["response_type"] == "ephemeral"
    return call.args


def all_text(message: dict[str, Any]) -> str:
    """Every piece of text in a message's blocks, for looking things up."""
    found: list[str] = [message.get("text") or ""]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks") or [])
    return "\n".join(found)


def controls(message: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The invoice view's actions block: its block id and its elements by action id."""
    (block,) = [b for b in message["blocks"] if b["type"] == "actions"]
    return block["block_id"], {e["action_id"]: e for e in block["elements"]}


def action_payload(
    slack: SlackHarness, user: str, action: dict[str, Any], name: str
) -> dict[str, Any]:
    """block_actions from a control in an ephemeral message."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T_DISTRICT"},
        "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000200",
            "channel_id": CHANNEL,
            "is_ephemeral": True,
        },
        "channel": {"id": CHANNEL, "name": "help"},
        "response_url": hook(slack, name),
        "actions": [{"action_ts": "1700000001.000000", **action}],
    }


async def use(slack: SlackHarness, user: str, action: dict[str, Any]) -> str:
    name = f"response.{uuid.uuid4().hex[:8]}"
    response = await slack.sender.interaction(action_payload(slack, user, action, name))
    assert response.status_code == 200 and response.content in (b"", b"{}")
    return name


async def invoice_row(slack: SlackHarness, invoice_id: int) -> m.Invoice:
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(invoice_id)
        assert invoice is not None
        await store.commit()
        return invoice


async def refusals(slack: SlackHarness) -> list[str]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(
            select(m.ActivityEntry.comment).where(m.ActivityEntry.action == "refused")
        )
        await store.commit()
        return [str(c) for c in rows.scalars()]


async def add_role(slack: SlackHarness, name: str, permissions: list[str]) -> None:
    async with slack.runtime.stores() as store:
        store.session.add(m.Role(name=name, permissions=permissions, allowed_statuses=[]))
        await store.commit()


# --- reports -----------------------------------------------------------------------------------


async def test_automation_report(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    stores = slack.runtime.stores
    (rivera,), _ = await add_family(stores, "Rivera")
    await add_invoice(stores, rivera, created=JAN1, due=date(2026, 4, 1))
    await add_invoice(
        stores, rivera, created=JAN1, due=date(2026, 2, 1), total_cents=7_500, status="first"
    )
    await add_invoice(
        stores,
        rivera,
        created=JAN1,
        due=date(2026, 1, 15),
        total_cents=20_000,
        paid_cents=5_000,
        status="final",
        automation=False,
    )
    await add_invoice(stores, rivera, created=JAN1, due=JAN1, status="cancelled", automation=False)

    summary = await answer(slack, "report automation", "U_CLERK")
    assert summary["text"] == (
        "Open invoices: 2 with automation on ($175.00), 1 with it off ($150.00)."
    )
    text = all_text(summary)
    assert "*Unpaid*: on 1 ($100.00) · off 0 ($0.00)" in text
    assert "*Final Notice*: on 0 ($0.00) · off 1 ($150.00)" in text
    assert "INV-000001" not in text  # the listing comes with on or off

    off = all_text(await answer(slack, "report automation off", "U_CLERK"))
    assert "`INV-000003` Kid0 Rivera — Final Notice, due Jan 15, 2026, $150.00 owed" in off
    assert "INV-000001" not in off and "INV-000004" not in off
    on = all_text(await answer(slack, "report automation on", "U_CLERK"))
    assert on.index("INV-000002") < on.index("INV-000001")  # most overdue first

    usage, _name = await command(slack, "report automation maybe", "U_CLERK")
    assert "Usage" in usage.json()["text"]


async def test_cancelled_report_marks_auto_cancelled(slack: SlackHarness) -> None:
    clerk = await slack.staff("Billing Clerk", "U_CLERK")
    stores = slack.runtime.stores
    async with stores() as store:
        (await store.settings.get()).auto_cancel_enabled = True
        await store.commit()
    (rivera,), _ = await add_family(stores, "Rivera")
    auto = await add_invoice(
        stores, rivera, created=date(2025, 12, 1), due=JAN1, status="collections"
    )
    manual = await add_invoice(
        stores, rivera, created=JAN1, due=date(2026, 4, 1), total_cents=4_500
    )
    async with stores() as store:
        await store.session.execute(
            update(m.Invoice).where(m.Invoice.id == auto).values(final_notice_on=JAN1)
        )
        await store.commit()
    slack.clock.set(datetime(2026, 2, 20, 17, tzinfo=UTC))
    async with stores() as store:
        await cancel_invoice(
            Context(store, slack.clock, slack.runtime.settings.tz),
            clerk,
            manual,
            reason="Device <returned> undamaged",
        )
        await store.commit()
    # Mar 2 is 60 days after the final notice of Jan 1: the run cancels it.
    slack.clock.set(at_run_time(date(2026, 3, 2)))
    assert (await runner(slack.runtime.engine, slack.clock).run(date(2026, 3, 2))).ran

    report = await answer(slack, "report cancelled 2026-02-01 2026-03-02", "U_CLERK")
    assert report["text"] == (
        "Cancelled Feb 1, 2026 – Mar 2, 2026: 1 auto-cancelled ($100.00), 1 by staff ($45.00)."
    )
    text = all_text(report)
    assert (
        "`INV-000002` Kid0 Rivera — $45.00, Feb 20, 2026 · Cancelled by Billing Clerk Person"
        " — _Device &lt;returned&gt; undamaged_"
    ) in text
    assert (
        "`INV-000001` Kid0 Rivera — $100.00, Mar 2, 2026 · :robot_face: *Auto-Cancelled* — "
        "_Invoice automatically cancelled on 2026-03-02 after 60 days overdue._"
    ) in text
    assert text.index("INV-000002") < text.index("INV-000001")

    # Without dates: from the 1st of this month to today.
    this_month = await answer(slack, "report cancelled", "U_CLERK")
    assert this_month["text"] == (
        "Cancelled Mar 1, 2026 – Mar 2, 2026: 1 auto-cancelled ($100.00), 0 by staff ($0.00)."
    )
    bad, _name = await command(slack, "report cancelled yesterday", "U_CLERK")
    assert "isn't a date" in bad.json()["text"]
    backwards, _name = await command(slack, "report cancelled 2026-03-02 2026-02-01", "U_CLERK")
    assert "ends before it starts" in backwards.json()["text"]


async def test_reports_need_view_financial_reports(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    response, name = await command(slack, "report automation", "U_TECH")
    assert "View Financial Reports" in response.json()["text"]
    assert slack.fake.calls_to(name) == []
    expected = ["billing report: Billing reports need the View Financial Reports permission."]
    # The refusal is logged after the ack goes back, so under load it may land a moment later.
    await eventually(lambda: _refused(slack, expected))


async def _refused(slack: SlackHarness, expected: list[str]) -> bool:
    return await refusals(slack) == expected


# --- one invoice -------------------------------------------------------------------------------


async def _one_invoice(slack: SlackHarness) -> int:
    (student,), _ = await add_family(slack.runtime.stores, "Chen")
    return await add_invoice(slack.runtime.stores, student, created=JAN1, due=date(2026, 4, 1))


async def test_invoice_view_shows_the_controls_a_role_may_use(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    await slack.staff("Technician", "U_TECH")
    await add_role(slack, "Librarian", ["view_reports"])
    await slack.staff("Librarian", "U_LIB")
    await _one_invoice(slack)

    view = await answer(slack, "invoice inv-000001", "U_CLERK")
    assert view["text"] == "Invoice INV-000001: Unpaid, $100.00 owed, automation on."
    text = all_text(view)
    assert "Kid0 Chen" in text and "Apr 1, 2026" in text and "Invoice created for $100.00" in text
    _block, elements = controls(view)
    assert set(elements) == {
        BillingInvoiceAction.STATUS,
        BillingInvoiceAction.DUE_DATE,
        BillingInvoiceAction.AUTOMATION,
    }
    status = elements[BillingInvoiceAction.STATUS]
    assert [o["text"]["text"] for o in status["options"]] == [
        "Unpaid",
        "1st Notice",
        "2nd Notice",
        "Final Notice",
        "Collections",
    ]
    assert status["initial_option"]["value"] == "unpaid"
    assert elements[BillingInvoiceAction.DUE_DATE]["initial_date"] == "2026-04-01"
    assert elements[BillingInvoiceAction.AUTOMATION]["text"]["text"] == "Turn automation off"

    tech_view = await answer(slack, "invoice INV-000001", "U_TECH")
    _block, elements = controls(tech_view)
    assert set(elements) == {BillingInvoiceAction.STATUS, BillingInvoiceAction.DUE_DATE}

    refused, name = await command(slack, "invoice INV-000001", "U_LIB")
    assert "Invoices are for roles" in refused.json()["text"]
    assert slack.fake.calls_to(name) == []
    missing = await answer(slack, "invoice INV-000404", "U_CLERK")
    assert missing["text"] == ":mag: There's no invoice INV-000404. Check the number."
    usage, _name = await command(slack, "invoice", "U_CLERK")
    assert "Usage" in usage.json()["text"]


async def test_status_control_changes_the_status_and_replaces_the_view(
    slack: SlackHarness,
) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    invoice_id = await _one_invoice(slack)
    block_id, elements = controls(await answer(slack, "invoice INV-000001", "U_CLERK"))
    second = next(
        o for o in elements[BillingInvoiceAction.STATUS]["options"] if o["value"] == "second"
    )
    name = await use(
        slack,
        "U_CLERK",
        {
            "type": "static_select",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.STATUS,
            "selected_option": second,
        },
    )
    (call,) = await slack.fake.wait_for(name)
    assert call.args["replace_original"] is True and call.args["response_type"] == "ephemeral"
    text = all_text(call.args)
    assert ":white_check_mark: Status set to 2nd Notice." in text
    assert "Status Unpaid → 2nd Notice — Billing Clerk Person" in text
    _block, updated = controls(call.args)
    assert updated[BillingInvoiceAction.STATUS]["initial_option"]["value"] == "second"
    invoice = await invoice_row(slack, invoice_id)
    assert invoice.status == "second" and invoice.automation_epoch == 1

    # Paid isn't a status a person sets: the view says why and nothing changes.
    name = await use(
        slack,
        "U_CLERK",
        {
            "type": "static_select",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.STATUS,
            "selected_option": {"value": "paid"},
        },
    )
    (call,) = await slack.fake.wait_for(name)
    assert ":warning: Choose Unpaid, 1st Notice" in all_text(call.args)
    assert "Nothing was changed." in all_text(call.args)
    assert (await invoice_row(slack, invoice_id)).status == "second"


async def test_due_date_control(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    invoice_id = await _one_invoice(slack)
    block_id, _elements = controls(await answer(slack, "invoice INV-000001", "U_CLERK"))
    name = await use(
        slack,
        "U_CLERK",
        {
            "type": "datepicker",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.DUE_DATE,
            "selected_date": "2026-05-15",
        },
    )
    (call,) = await slack.fake.wait_for(name)
    text = all_text(call.args)
    assert ":white_check_mark: Due date set to May 15, 2026." in text
    assert "Due date 2026-04-01 → 2026-05-15" in text
    assert (await invoice_row(slack, invoice_id)).due_date == date(2026, 5, 15)
    async with slack.runtime.stores() as store:
        log = await store.activity.for_entity("invoice", invoice_id)
        await store.commit()
    assert [e.action for e in log] == ["due_date_changed"]


async def test_automation_button(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    invoice_id = await _one_invoice(slack)
    block_id, elements = controls(await answer(slack, "invoice INV-000001", "U_FD"))
    button = elements[BillingInvoiceAction.AUTOMATION]
    name = await use(
        slack,
        "U_FD",
        {
            "type": "button",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.AUTOMATION,
            "value": button["value"],
        },
    )
    (call,) = await slack.fake.wait_for(name)
    assert ":white_check_mark: Automation turned off." in all_text(call.args)
    _block, updated = controls(call.args)
    assert updated[BillingInvoiceAction.AUTOMATION]["text"]["text"] == "Turn automation on"
    assert (await invoice_row(slack, invoice_id)).automation_enabled is False
    # The same (replayed) button sets the same state: nothing more happens.
    name = await use(
        slack,
        "U_FD",
        {
            "type": "button",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.AUTOMATION,
            "value": button["value"],
        },
    )
    await slack.fake.wait_for(name)
    async with slack.runtime.stores() as store:
        log = await store.activity.for_entity("invoice", invoice_id)
        await store.commit()
    assert [e.action for e in log] == ["automation_changed"]


async def test_forged_values_are_refused_and_logged(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    invoice_id = await _one_invoice(slack)
    block_id, _elements = controls(await answer(slack, "invoice INV-000001", "U_CLERK"))
    body = block_id.rsplit(".", 1)[0]
    forged_block = f"{body}.AAAAAAAAAAAAAAAAAAAAAA"
    name = await use(
        slack,
        "U_CLERK",
        {
            "type": "static_select",
            "block_id": forged_block,
            "action_id": BillingInvoiceAction.STATUS,
            "selected_option": {"value": "collections"},
        },
    )
    told = await slack.fake.wait_for("chat.postEphemeral")
    assert "didn't come from DeviceCare" in told[-1].args["text"]
    forged_switch = signed(slack, AutomationSwitch(invoice_id=invoice_id, enabled=False))
    forged_switch = forged_switch.replace(forged_switch.split(".")[2], "e30")  # "{}", unsigned
    await use(
        slack,
        "U_CLERK",
        {
            "type": "button",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.AUTOMATION,
            "value": forged_switch,
        },
    )
    await slack.fake.wait_for("chat.postEphemeral", count=2)
    assert slack.fake.calls_to(name) == []
    invoice = await invoice_row(slack, invoice_id)
    assert invoice.status == "unpaid" and invoice.automation_enabled is True
    assert len(await refusals(slack)) == 2


async def test_without_permission_nothing_changes(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    await slack.staff("Technician", "U_TECH")
    await add_role(slack, "Librarian", ["view_reports"])
    await slack.staff("Librarian", "U_LIB")
    invoice_id = await _one_invoice(slack)
    block_id, elements = controls(await answer(slack, "invoice INV-000001", "U_CLERK"))

    # A technician may not switch automation, even with a genuine button from someone else.
    name = await use(
        slack,
        "U_TECH",
        {
            "type": "button",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.AUTOMATION,
            "value": elements[BillingInvoiceAction.AUTOMATION]["value"],
        },
    )
    (call,) = await slack.fake.wait_for(name)
    text = all_text(call.args)
    assert (
        ":warning: Your role (Technician) does not have the Manage Invoice Automation "
        "permission. Nothing was changed."
    ) in text
    _block, shown = controls(call.args)
    assert BillingInvoiceAction.AUTOMATION not in shown  # the view is redrawn for the technician

    # A role without any invoice permission can't use the status control either.
    name = await use(
        slack,
        "U_LIB",
        {
            "type": "static_select",
            "block_id": block_id,
            "action_id": BillingInvoiceAction.STATUS,
            "selected_option": {"value": "final"},
        },
    )
    told = await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == "U_LIB")
    assert "Invoices are for roles" in told[-1].args["text"]
    assert slack.fake.calls_to(name) == []

    invoice = await invoice_row(slack, invoice_id)
    assert invoice.status == "unpaid" and invoice.automation_enabled is True
    logged = await refusals(slack)
    assert len(logged) == 2
    assert logged[0].startswith("switch an invoice's automation: Your role (Technician)")
    assert logged[1].startswith("change an invoice's status: Invoices are for roles")


async def test_a_failed_response_url_gets_a_fresh_ephemeral(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    await _one_invoice(slack)
    slack.fake.fail_next("response.expired", status=404)
    response = await slack.sender.command(
        "/billing",
        "invoice INV-000001",
        user="U_CLERK",
        channel=CHANNEL,
        response_url=hook(slack, "response.expired"),
    )
    assert response.status_code == 200 and response.content in (b"", b"{}")
    (posted,) = await slack.fake.wait_for("chat.postEphemeral")
    assert posted.args["channel"] == CHANNEL and posted.args["user"] == "U_CLERK"
    assert posted.args["text"] == "Invoice INV-000001: Unpaid, $100.00 owed, automation on."
    assert "Invoice created for $100.00" in str(posted.args["blocks"])
