"""`/billing invoice …`: one invoice with its timeline and the controls to set its status, due
date and automation. (`/billing report …` is answered with every other report, in
bot/slack/reports.py.)

Every request is acknowledged at once; the answer follows through the request's response_url
(an ephemeral message that works in any channel), or a fresh ephemeral message if that fails.
Permissions are checked here on the server for each request, whatever the message showed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.billing_report_blocks import (
    AutomationSwitch,
    BillingInvoiceAction,
    InvoiceControls,
    InvoiceRef,
    build_invoice_view,
    typed_day,
)
from bot.slack.blocks import Block, esc, fmt_date
from bot.slack.errors import record_refusal, reported
from bot.slack.metadata import unpack
from bot.slack.payment_plans import plan_blocks_for
from bot.slack.response_url import reply, where
from bot.slack.waiver_blocks import adjustment_blocks
from bot.slack.waivers import adjustment_lines, refundable_payments
from storage.billing_reports import find_invoice_id, invoice_timeline
from storage.notice_queries import invoice_delivery_line
from workflows.errors import DomainError, NotFound, PermissionDenied
from workflows.invoice_audit import load_invoice_audit
from workflows.invoices import (
    InvoiceStatus,
    change_due_date,
    change_invoice_status,
    set_invoice_automation,
)
from workflows.permissions import Actor, Permission
from workflows.ports import Context

INVOICE_USAGE = (
    "Usage: `/billing invoice INV-000001` \u2014 one invoice, its timeline and controls."
)
# Roles that work with invoices may look at one; each control needs its own permission too.
INVOICE_VIEWERS = (
    Permission.CREATE_INVOICES,
    Permission.RECORD_PAYMENTS,
    Permission.CANCEL_INVOICES,
    Permission.MANAGE_INVOICE_AUTOMATION,
    Permission.VIEW_FINANCIAL_REPORTS,
)
Change = Callable[[Context, int], Awaitable[str]]


def can_view_invoices(actor: Actor) -> bool:
    return any(actor.can(p) for p in INVOICE_VIEWERS)


def require_invoice_viewer(actor: Actor) -> None:
    if not can_view_invoices(actor):
        raise PermissionDenied(
            "Invoices are for roles that create invoices, record payments or see financial "
            "reports; yours doesn't."
        )


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    async def refuse(call: BillingCall, what: str, message: str) -> None:
        await call.ack(response_type="ephemeral", text=f":no_entry: {message}")
        await record_refusal(runtime, call.actor, what, message)

    # --- /billing invoice --------------------------------------------------------------------

    async def invoice_view(
        actor: Actor, invoice_id: int, notice: str | None = None
    ) -> tuple[str, list[Block]]:
        async with runtime.reads() as store:
            timeline = await invoice_timeline(store.session, invoice_id, tz=tz)
            if timeline is None:
                raise NotFound("That invoice isn't in DeviceCare any more.")
            lines = await adjustment_lines(store, invoice_id)
            payments = await refundable_payments(store, invoice_id)
            delivery = await invoice_delivery_line(store.session, invoice_id, tz)
            invoice = await store.invoices.get(invoice_id)
            audit = None if invoice is None else await load_invoice_audit(store, invoice, tz=tz)
        inv = timeline.invoice
        # Buttons only for those who may use them; the workflows check again on submit.
        plan = await plan_blocks_for(runtime, actor, invoice_id)
        adjustments = plan + adjustment_blocks(
            lines,
            invoice_id=invoice_id,
            secret=secret,
            can_waive=actor.can(Permission.WAIVE_CHARGES) and inv.is_open and inv.balance_cents > 0,
            can_refund=actor.can(Permission.ISSUE_REFUNDS)
            and any(p.refundable_cents for p in payments),
        )
        return build_invoice_view(
            timeline,
            tz=tz,
            secret=secret,
            can_edit=actor.can(Permission.CREATE_INVOICES),
            can_automate=actor.can(Permission.MANAGE_INVOICE_AUTOMATION),
            notice=notice,
            adjustments=adjustments,
            delivery=delivery,
            audit=audit,
        )

    async def show_invoice(call: BillingCall) -> None:
        actor = call.actor
        try:
            require_invoice_viewer(actor)
        except PermissionDenied as exc:
            await refuse(call, "view an invoice", exc.message)
            return
        if len(call.args) != 1:
            await call.ack(response_type="ephemeral", text=INVOICE_USAGE)
            return
        await call.ack()
        body = call.command
        number = call.args[0]
        async with reported(runtime, call.client, where(body), "view an invoice", actor):
            async with runtime.reads() as store:
                invoice_id = await find_invoice_id(store.session, number)
            if invoice_id is None:
                text = f":mag: There's no invoice {esc(number[:40])}. Check the number."
                await reply(call.client, body, text, None)
                return
            text, blocks = await invoice_view(actor, invoice_id)
            await reply(call.client, body, text, blocks)

    add_subcommand(
        app, "invoice", "`INV-000001`: an invoice, its timeline and controls.", show_invoice
    )

    @app.action(BillingInvoiceAction.OPEN)
    async def handle_invoice_open(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        """An Open button (the App Home has no channel, so the view arrives by DM)."""
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "view an invoice", actor):
            require_invoice_viewer(actor)
            ref = unpack(InvoiceRef, action.get("value"), secret)
            text, blocks = await invoice_view(actor, ref.invoice_id)
            await reply(client, body, text, blocks)

    # --- the controls ------------------------------------------------------------------------

    async def change(
        body: dict[str, Any],
        client: AsyncWebClient,
        actor: Actor,
        what: str,
        invoice_id: int,
        apply: Change,
    ) -> None:
        """Apply one change (the workflow checks permission), then show the invoice again in
        place with what happened; a refusal changes nothing and says so there."""
        require_invoice_viewer(actor)
        try:
            async with runtime.stores() as store:
                done = await apply(Context(store, runtime.clock, tz), invoice_id)
                await store.commit()
            notice = f":white_check_mark: {done}"
        except NotFound:
            raise
        except DomainError as exc:
            if isinstance(exc, PermissionDenied):
                await record_refusal(runtime, actor, what, exc.message)
            notice = f":warning: {exc.message} Nothing was changed."
        text, blocks = await invoice_view(actor, invoice_id, notice)
        await reply(client, body, text, blocks, replace=True)

    def controlled(action: Mapping[str, Any]) -> int:
        """The invoice a status or date control is for, from its signed block id."""
        return unpack(InvoiceControls, action.get("block_id"), secret).invoice_id

    @app.action(BillingInvoiceAction.STATUS)
    async def handle_invoice_status(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        what = "change an invoice's status"
        status = str((action.get("selected_option") or {}).get("value") or "")

        async def apply(ctx: Context, invoice_id: int) -> str:
            invoice = await change_invoice_status(ctx, actor, invoice_id, status)
            return f"Status set to {InvoiceStatus(invoice.status).label}."

        async with reported(runtime, client, body, what, actor):
            await change(body, client, actor, what, controlled(action), apply)

    @app.action(BillingInvoiceAction.DUE_DATE)
    async def handle_invoice_due_date(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        what = "change an invoice's due date"
        picked = str(action.get("selected_date") or "")

        async def apply(ctx: Context, invoice_id: int) -> str:
            invoice = await change_due_date(ctx, actor, invoice_id, typed_day(picked))
            assert invoice.due_date is not None
            return f"Due date set to {fmt_date(invoice.due_date)}."

        async with reported(runtime, client, body, what, actor):
            await change(body, client, actor, what, controlled(action), apply)

    @app.action(BillingInvoiceAction.AUTOMATION)
    async def handle_invoice_automation(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        what = "switch an invoice's automation"
        async with reported(runtime, client, body, what, actor):
            switch = unpack(AutomationSwitch, action.get("value"), secret)

            async def apply(ctx: Context, invoice_id: int) -> str:
                invoice = await set_invoice_automation(ctx, actor, invoice_id, switch.enabled)
                return "Automation turned " + ("on." if invoice.automation_enabled else "off.")

            await change(body, client, actor, what, switch.invoice_id, apply)
