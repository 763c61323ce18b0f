"""Waivers and refunds in Slack: the Waive… and Refund… modals from an invoice, `/billing waive`,
the approvals-channel request with Approve and Deny (checked on the server at click time, first
decision wins), and telling the requester.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.approvals import ApprovalFeature, ApprovalKind
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.blocks import esc
from bot.slack.errors import (
    FormErrors,
    after_ack,
    modal_errors,
    record_refusal,
    reported,
    tell_user,
)
from bot.slack.metadata import ForgedPayload, unpack
from bot.slack.waiver_blocks import (
    FIELD_BLOCKS,
    WAIVER_POST_KIND,
    AdjustmentLine,
    InvoiceAdjust,
    InvoiceBrief,
    RefundablePayment,
    RefundModal,
    WaiveModal,
    WaiverAction,
    WaiverBlock,
    WaiverFacts,
    WaiverRef,
    WaiverView,
    already_decided_text,
    build_done_view,
    build_refund_modal,
    build_waive_modal,
    build_waiver_request_message,
    decided_dm_text,
    read_refund_form,
    read_waive_form,
)
from storage.billing_reports import find_invoice_id
from storage.store import SqlStore
from workflows.adjustments import AdjustmentKind, AdjustmentStatus
from workflows.errors import ConflictError, DomainError, NotFound, PermissionDenied
from workflows.invoices import OPEN_STATUSES, balance_of
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context
from workflows.refunds import RefundPayment, check_refund_request, refund_payment
from workflows.waivers import (
    WAIVER_RULES,
    WITHDRAWN_COMMENT,
    RequestWaiver,
    WaiverOutcome,
    check_waiver_request,
    request_waiver,
)

log = logging.getLogger("devicecare.slack")

WAIVE_USAGE = (
    "Usage: `/billing waive INV-000001 25.00 reason…` \u2014 waive part or all of an invoice's "
    "balance (Waive Charges); above the district's approval amount it waits for an approver."
)


# --- loading what the blocks show -----------------------------------------------------------


async def _name(store: SqlStore, staff_id: int | None) -> str | None:
    return None if staff_id is None else await store.staff_name(staff_id)


async def load_invoice_brief(store: SqlStore, invoice_id: int) -> InvoiceBrief:
    invoice = await store.get_invoice(invoice_id)
    if invoice is None:
        raise NotFound("That invoice isn't in DeviceCare any more.")
    student = await store.get_student(invoice.student_id)
    return InvoiceBrief(
        invoice_id=invoice.id,
        number=invoice.number,
        student_name="No student" if student is None else student.full_name,
        total_cents=invoice.total_cents,
        balance_cents=balance_of(invoice),
        waived_cents=invoice.waived_cents,
    )


async def refundable_payments(store: SqlStore, invoice_id: int) -> list[RefundablePayment]:
    refunded: dict[int, int] = {}
    for adjustment in await store.adjustments_for(invoice_id):
        if (
            adjustment.kind == AdjustmentKind.REFUND
            and adjustment.status == AdjustmentStatus.APPLIED
            and adjustment.payment_id is not None
        ):
            refunded[adjustment.payment_id] = (
                refunded.get(adjustment.payment_id, 0) + adjustment.amount_cents
            )
    return [
        RefundablePayment(
            payment_id=p.id,
            amount_cents=p.amount_cents,
            method=p.method,
            reference=p.reference,
            received_on=p.received_on,
            refundable_cents=max(p.amount_cents - refunded.get(p.id, 0), 0),
        )
        for p in await store.payments_for_invoice(invoice_id)
    ]


async def adjustment_lines(store: SqlStore, invoice_id: int) -> list[AdjustmentLine]:
    """Every waiver and refund on an invoice, oldest first, with names and payments."""
    payments = {p.id: p for p in await store.payments_for_invoice(invoice_id)}
    lines: list[AdjustmentLine] = []
    for a in await store.adjustments_for(invoice_id):
        paid = payments.get(a.payment_id) if a.payment_id is not None else None
        source: str | None = None
        if paid is not None:
            if paid.method == "check" and paid.reference:
                source = f"check #{paid.reference}"
            else:
                source = f"the {paid.method} payment of {format_cents(paid.amount_cents)}"
        lines.append(
            AdjustmentLine(
                kind=a.kind,
                status=a.status,
                amount_cents=a.amount_cents,
                reason=a.reason,
                requested_by=await _name(store, a.requested_by_id),
                decided_by=await _name(store, a.decided_by_id),
                payment=source,
            )
        )
    return lines


async def load_waiver_facts(store: SqlStore, adjustment_id: int) -> WaiverFacts | None:
    adjustment = await store.get_adjustment(adjustment_id)
    if adjustment is None or adjustment.kind != AdjustmentKind.WAIVER:
        return None
    brief = await load_invoice_brief(store, adjustment.invoice_id)
    requester = adjustment.requested_by_id
    return WaiverFacts(
        adjustment_id=adjustment.id,
        invoice_id=adjustment.invoice_id,
        invoice_number=brief.number,
        student_name=brief.student_name,
        amount_cents=adjustment.amount_cents,
        total_cents=brief.total_cents,
        balance_cents=brief.balance_cents,
        status=adjustment.status,
        reason=adjustment.reason,
        requested_by=await _name(store, requester) or "someone",
        requester_slack_id=None if requester is None else await store.staff_slack_id(requester),
        requested_at=adjustment.requested_at,
        decided_by=await _name(store, adjustment.decided_by_id),
        decided_at=adjustment.decided_at,
        decision_comment=(
            None
            if adjustment.decision_comment == WITHDRAWN_COMMENT
            else adjustment.decision_comment
        ),
        withdrawn=adjustment.decision_comment == WITHDRAWN_COMMENT,
    )


async def _tell_by_dm(runtime: Runtime, client: AsyncWebClient, facts: WaiverFacts) -> None:
    if facts.withdrawn or facts.requester_slack_id is None:
        return  # the requester did it themselves, or isn't in Slack
    await client.chat_postMessage(channel=facts.requester_slack_id, text=decided_dm_text(facts))


WAIVER_APPROVAL: ApprovalKind[WaiverFacts, WaiverRef] = ApprovalKind(
    noun="waiver",
    what="waiver",
    rules=WAIVER_RULES,
    approve_action=WaiverAction.APPROVE,
    deny_action=WaiverAction.DENY,
    ref=WaiverRef,
    ref_id=lambda ref: ref.adjustment_id,
    post_kind=WAIVER_POST_KIND,
    load_facts=load_waiver_facts,
    message=build_waiver_request_message,
    already_decided=already_decided_text,
    tell_requester=_tell_by_dm,
)


# --- what the person is told ----------------------------------------------------------------


def waiver_result_lines(outcome: WaiverOutcome) -> list[str]:
    invoice = outcome.invoice
    amount = format_cents(outcome.adjustment.amount_cents)
    lines: list[str] = []
    if not outcome.created:
        lines.append("_This was already submitted; nothing was done twice._")
    if outcome.pending:
        lines.append(
            f":hourglass_flowing_sand: *Waiver of {amount} on {esc(invoice.number)} sent for "
            "approval.* An approver decides in the approvals channel; you'll get a message."
        )
    else:
        lines.append(
            f":white_check_mark: *Waived {amount} on {esc(invoice.number)}.* "
            f"Balance now {format_cents(balance_of(invoice))}."
        )
        if balance_of(invoice) == 0:
            lines.append("Nothing is left to pay: the invoice is settled and reminders stop.")
    return lines


def _field_errors(exc: DomainError, view: Mapping[str, Any], default: str) -> dict[str, str]:
    """Field errors for Slack; only blocks that are in the view may carry one."""
    errors = modal_errors(exc, FIELD_BLOCKS, default)
    present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    return {(block if block in present else default): text for block, text in errors.items()}


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    def ctx_for(store: SqlStore) -> Context:
        return Context(store, runtime.clock, tz)

    # --- opening the modals ------------------------------------------------------------------

    @app.action(WaiverAction.OPEN_WAIVE)
    async def handle_open_waive(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "open the waiver form", actor):
            ref = unpack(InvoiceAdjust, action.get("value"), secret)
            require(actor, Permission.WAIVE_CHARGES)
            async with runtime.reads() as store:
                brief = await load_invoice_brief(store, ref.invoice_id)
                invoice = await store.get_invoice(ref.invoice_id)
                approval = (await store.settings()).waiver_approval_cents
            if invoice is None or invoice.status not in OPEN_STATUSES or brief.balance_cents == 0:
                raise ConflictError(f"Nothing is left to waive on invoice {brief.number}.")
            view = build_waive_modal(
                brief,
                approval_cents=approval,
                can_approve=actor.can(Permission.APPROVE_WAIVERS),
                secret=secret,
            )
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(WaiverAction.OPEN_REFUND)
    async def handle_open_refund(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "open the refund form", actor):
            ref = unpack(InvoiceAdjust, action.get("value"), secret)
            require(actor, Permission.ISSUE_REFUNDS)
            async with runtime.reads() as store:
                brief = await load_invoice_brief(store, ref.invoice_id)
                payments = await refundable_payments(store, ref.invoice_id)
            if not any(p.refundable_cents for p in payments):
                raise ConflictError(
                    f"Invoice {brief.number} has no payment with anything left to refund."
                )
            view = build_refund_modal(brief, payments, secret=secret)
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    # --- submitting them ---------------------------------------------------------------------

    async def answer(
        ack: AsyncAck, actor: Actor, what: str, view: dict[str, Any], check: Any, title: str
    ) -> None:
        """Check without writing (errors next to their fields), then answer at once."""
        try:
            await check(actor, view)
        except FormErrors as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        except DomainError as exc:
            await ack(response_action="errors", errors=_field_errors(exc, view, WaiverBlock.AMOUNT))
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(runtime, actor, what, exc.message)
            return
        working = ":hourglass_flowing_sand: Working on it; the result will show here."
        await ack(response_action="update", view=build_done_view(title, [working]))

    async def show(
        client: AsyncWebClient, view: dict[str, Any], title: str, lines: list[str]
    ) -> None:
        try:
            await client.views_update(view_id=view["id"], view=build_done_view(title, lines))
        except SlackApiError as exc:  # closed meanwhile: the invoice's thread shows it
            log.info("%s: modal not updated (%s)", title, exc)

    async def check_waive(actor: Actor, view: dict[str, Any]) -> RequestWaiver:
        meta = unpack(WaiveModal, view.get("private_metadata"), secret)
        form = read_waive_form((view.get("state") or {}).get("values") or {})
        if form.errors or form.amount_cents is None:
            raise FormErrors(form.errors)
        # The view id lives as long as the modal: a redelivered submission finds the first one.
        command = RequestWaiver(
            invoice_id=meta.invoice_id,
            amount_cents=form.amount_cents,
            reason=form.reason,
            idempotency_key=f"slack:view:{view['id']}",
        )
        async with runtime.reads() as store:
            await check_waiver_request(ctx_for(store), actor, command)
        return command

    async def handle_waive_submission(
        ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await answer(ack, context["actor"], "waive charges", view, check_waive, "Waiver")

    async def waive_submitted(
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            command = await check_waive(actor, view)
        except (DomainError, FormErrors):
            return  # answered with the errors next to their fields
        async with after_ack(runtime, client, body, "waive the charges", actor):
            async with runtime.stores() as store:
                outcome = await request_waiver(ctx_for(store), actor, command)
                lines = waiver_result_lines(outcome)
            await show(client, view, "Waiver", lines)

    app.view(WaiverView.WAIVE)(ack=handle_waive_submission, lazy=[waive_submitted])

    async def check_refund(actor: Actor, view: dict[str, Any]) -> RefundPayment:
        meta = unpack(RefundModal, view.get("private_metadata"), secret)
        form = read_refund_form((view.get("state") or {}).get("values") or {})
        if form.errors or form.amount_cents is None or form.payment_id is None:
            raise FormErrors(form.errors)
        command = RefundPayment(
            payment_id=form.payment_id,
            amount_cents=form.amount_cents,
            reason=form.reason,
            idempotency_key=f"slack:view:{view['id']}",
        )
        async with runtime.reads() as store:
            payment = await store.get_payment(form.payment_id)
            if payment is None or payment.invoice_id != meta.invoice_id:
                # A value edited on the way: only this invoice's payments were offered.
                raise NotFound("Choose one of this invoice's payments.", field="payment")
            await check_refund_request(ctx_for(store), actor, command)
        return command

    async def handle_refund_submission(
        ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await answer(ack, context["actor"], "refund a payment", view, check_refund, "Refund")

    async def refund_submitted(
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            command = await check_refund(actor, view)
        except (DomainError, FormErrors):
            return  # answered with the errors next to their fields
        async with after_ack(runtime, client, body, "refund the payment", actor):
            async with runtime.stores() as store:
                issued = await refund_payment(ctx_for(store), actor, command)
                number = issued.invoice.number
                balance = balance_of(issued.invoice)
            lines = [
                f":white_check_mark: *Refunded {format_cents(issued.adjustment.amount_cents)} on "
                f"{esc(number)}.* The family's receipt is on its way by email.",
                f"Balance stays {format_cents(balance)}.",
            ]
            if not issued.created:
                lines.insert(0, "_This was already submitted; nothing was done twice._")
            await show(client, view, "Refund", lines)

    app.view(WaiverView.REFUND)(ack=handle_refund_submission, lazy=[refund_submitted])

    # --- /billing waive ------------------------------------------------------------------------

    async def waive_command(call: BillingCall) -> None:
        actor = call.actor
        what = "waive charges"
        if not actor.can(Permission.WAIVE_CHARGES):
            message = "Waivers need the Waive Charges permission; your role doesn't have it."
            await call.ack(response_type="ephemeral", text=f":no_entry: {message}")
            await record_refusal(runtime, actor, what, message)
            return
        if len(call.args) < 3:
            await call.ack(response_type="ephemeral", text=WAIVE_USAGE)
            return
        number, amount_text, reason = call.args[0], call.args[1], " ".join(call.args[2:])
        try:
            cents = parse_amount(amount_text)
        except DomainError as exc:
            text = f":warning: {exc.message} Nothing was changed."
            await call.ack(response_type="ephemeral", text=text)
            return
        await call.ack()  # the waiver is written after the answer; its result follows
        try:
            async with runtime.stores() as store:
                invoice_id = await find_invoice_id(store.session, number)
                if invoice_id is None:
                    raise NotFound(f"There's no invoice {esc(number[:40])}. Check the number.")
                key = f"slack:command:{call.command.get('trigger_id') or ''}"
                outcome = await request_waiver(
                    ctx_for(store),
                    actor,
                    RequestWaiver(invoice_id, cents, reason, idempotency_key=key),
                )
                text = "\n".join(waiver_result_lines(outcome))
        except DomainError as exc:
            if isinstance(exc, PermissionDenied):
                await record_refusal(runtime, actor, what, exc.message)
            text = f":warning: {exc.message} Nothing was changed."
        await tell_user(call.client, call.command, text)

    add_subcommand(
        app,
        "waive",
        "`INV-000001 25.00 reason…`: waive part or all of an invoice (Waive Charges).",
        waive_command,
    )

    ApprovalFeature(WAIVER_APPROVAL, runtime).register(app)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    return ApprovalFeature(WAIVER_APPROVAL, runtime).outbox_handlers(client)
