"""`/billing invoice …`: one invoice with its timeline and the controls to set its status, due
date and automation. (`/billing report …` is answered with every other report, in
bot/slack/reports.py.)

Every request is acknowledged at once; the answer follows through the request's response_url
(an ephemeral message that works in any channel), or a fresh ephemeral message if that fails.
Permissions are checked here on the server for each request, whatever the message showed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.billing_report_blocks import (
    AutomationSwitch,
    BillingInvoiceAction,
    InvoiceControls,
    InvoiceRef,
    build_invoice_view,
    typed_day,
)
from bot.slack.blocks import Block, esc, fmt_date
from bot.slack.errors import record_refusal
from bot.slack.listeners import Click, Command, Slack, in_block_id, on_click, on_subcommand, wire
from bot.slack.payment_plans import plan_blocks_for
from bot.slack.response_url import reply
from bot.slack.waiver_blocks import adjustment_blocks
from bot.slack.waivers import adjustment_lines, refundable_payments
from storage.billing_reports import find_invoice_id, invoice_timeline
from storage.notice_queries import invoice_delivery_line
from workflows.errors import DomainError, NotFound, PermissionDenied
from workflows.i18n import N_, _
from workflows.invoice_audit import load_invoice_audit
from workflows.invoices import (
    InvoiceStatus,
    change_due_date,
    change_invoice_status,
    set_invoice_automation,
)
from workflows.permissions import Actor, Permission
from workflows.ports import Context

INVOICE_USAGE = N_(
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
VIEW_WHAT = "view an invoice"
STATUS_WHAT = "change an invoice's status"
DUE_DATE_WHAT = "change an invoice's due date"
AUTOMATION_WHAT = "switch an invoice's automation"
Change = Callable[[Context, int], Awaitable[str]]


def can_view_invoices(actor: Actor) -> bool:
    return any(actor.can(p) for p in INVOICE_VIEWERS)


def require_invoice_viewer(actor: Actor) -> None:
    if not can_view_invoices(actor):
        raise PermissionDenied(
            _(
                "Invoices are for roles that create invoices, record payments or see financial "
                "reports; yours doesn't."
            )
        )


# --- /billing invoice ------------------------------------------------------------------------


async def invoice_view(
    slack: Slack, invoice_id: int, notice: str | None = None
) -> tuple[str, list[Block]]:
    runtime, actor, tz, secret = slack.runtime, slack.actor, slack.tz, slack.keys
    async with runtime.reads() as store:
        timeline = await invoice_timeline(store, invoice_id, tz=tz)
        if timeline is None:
            raise NotFound(_("That invoice isn't in DeviceCare any more."))
        lines = await adjustment_lines(store, invoice_id)
        payments = await refundable_payments(store, invoice_id)
        delivery = await invoice_delivery_line(store, invoice_id, tz)
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


@on_subcommand(
    "invoice", N_("`INV-000001`: an invoice, its timeline and controls."), what=VIEW_WHAT
)
async def show_invoice(cmd: Command) -> None:
    require_invoice_viewer(cmd.actor)
    if len(cmd.args) != 1:
        await cmd.ack(_(INVOICE_USAGE))
        return
    await cmd.ack()
    number = cmd.args[0]
    async with cmd.runtime.reads() as store:
        invoice_id = await find_invoice_id(store, number)
    if invoice_id is None:
        text = _(":mag: There's no invoice {number}. Check the number.", number=esc(number[:40]))
        await reply(cmd.client, cmd.body, text, None)
        return
    text, blocks = await invoice_view(cmd, invoice_id)
    await reply(cmd.client, cmd.body, text, blocks)


@on_click(BillingInvoiceAction.OPEN, what=VIEW_WHAT, ref=InvoiceRef)
async def handle_invoice_open(click: Click[InvoiceRef]) -> None:
    """An Open button (the App Home has no channel, so the view arrives by DM)."""
    require_invoice_viewer(click.actor)
    text, blocks = await invoice_view(click, click.ref.invoice_id)
    await reply(click.client, click.body, text, blocks)


# --- the controls ----------------------------------------------------------------------------


async def change(click: Click[Any], what: str, invoice_id: int, apply: Change) -> None:
    """Apply one change (the workflow checks permission), then show the invoice again in
    place with what happened; a refusal changes nothing and says so there."""
    require_invoice_viewer(click.actor)
    try:
        async with click.runtime.stores() as store:
            done = await apply(click.context(store), invoice_id)
            await store.commit()
        notice = f":white_check_mark: {done}"
    except NotFound:
        raise
    except DomainError as exc:
        if isinstance(exc, PermissionDenied):
            await record_refusal(click.runtime, click.actor, what, exc.message)
        notice = _(":warning: {reason} Nothing was changed.", reason=exc.message)
    text, blocks = await invoice_view(click, invoice_id, notice)
    await reply(click.client, click.body, text, blocks, replace=True)


# A status or date control is for the invoice its signed block id names.
@on_click(BillingInvoiceAction.STATUS, what=STATUS_WHAT, ref=InvoiceControls, ref_from=in_block_id)
async def handle_invoice_status(click: Click[InvoiceControls]) -> None:
    status = str((click.action.get("selected_option") or {}).get("value") or "")

    async def apply(ctx: Context, invoice_id: int) -> str:
        invoice = await change_invoice_status(ctx, click.actor, invoice_id, status)
        return _("Status set to {status}.", status=_(InvoiceStatus(invoice.status).label))

    await change(click, STATUS_WHAT, click.ref.invoice_id, apply)


@on_click(
    BillingInvoiceAction.DUE_DATE, what=DUE_DATE_WHAT, ref=InvoiceControls, ref_from=in_block_id
)
async def handle_invoice_due_date(click: Click[InvoiceControls]) -> None:
    picked = str(click.action.get("selected_date") or "")

    async def apply(ctx: Context, invoice_id: int) -> str:
        invoice = await change_due_date(ctx, click.actor, invoice_id, typed_day(picked))
        assert invoice.due_date is not None
        return _("Due date set to {date}.", date=fmt_date(invoice.due_date))

    await change(click, DUE_DATE_WHAT, click.ref.invoice_id, apply)


@on_click(BillingInvoiceAction.AUTOMATION, what=AUTOMATION_WHAT, ref=AutomationSwitch)
async def handle_invoice_automation(click: Click[AutomationSwitch]) -> None:
    enabled = click.ref.enabled

    async def apply(ctx: Context, invoice_id: int) -> str:
        invoice = await set_invoice_automation(ctx, click.actor, invoice_id, enabled)
        if invoice.automation_enabled:
            return _("Automation turned on.")
        return _("Automation turned off.")

    await change(click, AUTOMATION_WHAT, click.ref.invoice_id, apply)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(
        app,
        runtime,
        show_invoice,
        handle_invoice_open,
        handle_invoice_status,
        handle_invoice_due_date,
        handle_invoice_automation,
    )
