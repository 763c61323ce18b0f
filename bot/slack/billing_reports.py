"""`/billing report …` and `/billing invoice …`: billing reports, and one invoice with its
timeline and the controls to set its status, due date and automation.

Every request is acknowledged at once; the answer follows through the request's response_url
(an ephemeral message that works in any channel), or a fresh ephemeral message if that fails.
Permissions are checked here on the server for each request, whatever the message showed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.billing_report_blocks import (
    SHOWN_ROWS,
    AutomationSwitch,
    BillingInvoiceAction,
    InvoiceControls,
    InvoiceRef,
    build_automation_report,
    build_cancelled_report,
    build_invoice_view,
)
from bot.slack.errors import channel_of, record_refusal, reported
from bot.slack.invoice_blocks import Block, esc, fmt_date
from bot.slack.metadata import unpack
from bot.slack.payment_plans import plan_blocks_for
from bot.slack.waiver_blocks import adjustment_blocks
from bot.slack.waivers import adjustment_lines, refundable_payments
from storage.billing_reports import (
    automation_report,
    cancelled_report,
    check_range,
    find_invoice_id,
    invoice_timeline,
)
from storage.notice_queries import invoice_delivery_line
from workflows.clock import local_date
from workflows.errors import DomainError, NotFound, PermissionDenied, ValidationError
from workflows.invoice_audit import load_invoice_audit
from workflows.invoices import (
    InvoiceStatus,
    change_due_date,
    change_invoice_status,
    set_invoice_automation,
)
from workflows.permissions import Actor, Permission, permission_label
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

REPORT_USAGE = (
    "Usage: `/billing report automation [on|off]` \u2014 open invoices by automation and "
    "status; `/billing report cancelled [from] [to]` \u2014 cancelled invoices, dates like "
    "2026-04-30 (from the 1st of this month to today unless given)."
)
INVOICE_USAGE = (
    "Usage: `/billing invoice INV-000001` \u2014 one invoice, its timeline and controls."
)
RESPONSE_TIMEOUT = 10
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


# --- arguments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRequest:
    kind: str  # "automation" or "cancelled"
    automation: bool | None = None
    date_from: date | None = None
    date_to: date | None = None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"\u201c{esc(text[:20])}\u201d isn't a date; write it like 2026-04-30.", field="date"
        ) from None


def parse_report_args(args: tuple[str, ...], today: date) -> ReportRequest:
    """`automation [on|off]` or `cancelled [from] [to]`; ValidationError says what's wrong."""
    words = [a.lower() for a in args]
    if words and words[0] == "automation" and len(words) <= 2:
        if len(words) == 1:
            return ReportRequest("automation")
        if words[1] in ("on", "off"):
            return ReportRequest("automation", automation=words[1] == "on")
    elif words and words[0] == "cancelled" and len(words) <= 3:
        start = _day(words[1]) if len(words) > 1 else today.replace(day=1)
        end = _day(words[2]) if len(words) > 2 else today
        check_range(start, end)
        return ReportRequest("cancelled", date_from=start, date_to=end)
    raise ValidationError(REPORT_USAGE)


# --- answering ---------------------------------------------------------------------------------


def _user(body: Mapping[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    return body.get("user_id")


def _where(body: Mapping[str, Any]) -> dict[str, Any]:
    """Who and where, in the shape `bot.slack.errors` reads (commands carry bare ids)."""
    return {"user": {"id": _user(body)}, "channel_id": channel_of(body)}


async def reply(
    client: AsyncWebClient,
    body: Mapping[str, Any],
    text: str,
    blocks: list[Block] | None,
    *,
    replace: bool = False,
) -> None:
    """An ephemeral answer through the response_url (replacing the message the control was in,
    when `replace`), else a fresh ephemeral message, else a DM."""
    url = body.get("response_url")
    if url:
        try:
            webhook = AsyncWebhookClient(url, timeout=RESPONSE_TIMEOUT, session=client.session)
            sent = await webhook.send(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=replace
            )
            if sent.status_code == 200:
                return
            log.info("response_url answered %s; posting a fresh ephemeral", sent.status_code)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("response_url failed (%s); posting a fresh ephemeral", exc)
    user, channel = _user(body), channel_of(body)
    if user is None:
        return
    try:
        if channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
    except SlackApiError as exc:
        log.info("ephemeral billing answer failed (%s); sending a DM", exc.response.get("error"))
    await client.chat_postMessage(channel=user, text=text, blocks=blocks)


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    def today() -> date:
        return local_date(runtime.clock.now(), tz)

    async def refuse(call: BillingCall, what: str, message: str) -> None:
        await call.ack(response_type="ephemeral", text=f":no_entry: {message}")
        await record_refusal(runtime, call.actor, what, message)

    # --- /billing report ---------------------------------------------------------------------

    async def run_report(call: BillingCall) -> None:
        actor = call.actor
        if not actor.can(Permission.VIEW_FINANCIAL_REPORTS):
            label = permission_label(Permission.VIEW_FINANCIAL_REPORTS)
            await refuse(call, "billing report", f"Billing reports need the {label} permission.")
            return
        try:
            request = parse_report_args(call.args, today())
        except ValidationError as exc:
            await call.ack(response_type="ephemeral", text=exc.message)
            return
        await call.ack()
        body = call.command
        async with reported(runtime, call.client, _where(body), "billing report", actor):
            async with runtime.reads() as store:
                if request.kind == "automation":
                    shown = SHOWN_ROWS if request.automation is not None else 0
                    report = await automation_report(
                        store.session, automation=request.automation, limit=shown
                    )
                    text, blocks = build_automation_report(report)
                else:
                    assert request.date_from is not None and request.date_to is not None
                    cancelled = await cancelled_report(
                        store.session, request.date_from, request.date_to, tz=tz, limit=SHOWN_ROWS
                    )
                    text, blocks = build_cancelled_report(cancelled, tz)
            await reply(call.client, body, text, blocks)

    add_subcommand(
        app,
        "report",
        "`automation [on|off]` or `cancelled [from] [to]`: billing reports "
        "(View Financial Reports).",
        run_report,
    )

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
            invoice = await store.get_invoice(invoice_id)
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
        async with reported(runtime, call.client, _where(body), "view an invoice", actor):
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
            invoice = await change_due_date(ctx, actor, invoice_id, _day(picked))
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
