"""Waivers and refunds in Slack: the Waive… and Refund… modals from an invoice, `/billing waive`,
the approvals-channel request with Approve and Deny (checked on the server at click time, first
decision wins), and telling the requester.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.approvals import ApprovalFeature, ApprovalKind
from bot.slack.blocks import esc
from bot.slack.errors import FormErrors, record_refusal
from bot.slack.listeners import (
    Click,
    Command,
    ModalForm,
    Submitted,
    on_click,
    on_subcommand,
    wire,
)
from bot.slack.metadata import Payload
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
from storage.uow import SqlUnitOfWork
from workflows.adjustments import AdjustmentKind, AdjustmentStatus
from workflows.errors import ConflictError, DomainError, NotFound, PermissionDenied
from workflows.i18n import N_, _
from workflows.invoices import OPEN_STATUSES, balance_of
from workflows.money import format_cents, parse_amount
from workflows.permissions import Permission, require
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

WAIVE_USAGE = N_(
    "Usage: `/billing waive INV-000001 25.00 reason…` \u2014 waive part or all of an invoice's "
    "balance (Waive Charges); above the district's approval amount it waits for an approver."
)


# --- loading what the blocks show -----------------------------------------------------------


async def _name(store: SqlUnitOfWork, staff_id: int | None) -> str | None:
    return None if staff_id is None else await store.people.staff_name(staff_id)


async def load_invoice_brief(store: SqlUnitOfWork, invoice_id: int) -> InvoiceBrief:
    invoice = await store.invoices.get(invoice_id)
    if invoice is None:
        raise NotFound(_("That invoice isn't in DeviceCare any more."))
    student = await store.people.student(invoice.student_id)
    return InvoiceBrief(
        invoice_id=invoice.id,
        number=invoice.number,
        student_name=_("No student") if student is None else student.full_name,
        total_cents=invoice.total_cents,
        balance_cents=balance_of(invoice),
        waived_cents=invoice.waived_cents,
    )


async def refundable_payments(store: SqlUnitOfWork, invoice_id: int) -> list[RefundablePayment]:
    refunded: dict[int, int] = {}
    for adjustment in await store.payments.adjustments_for(invoice_id):
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
        for p in await store.payments.for_invoice(invoice_id)
    ]


async def adjustment_lines(store: SqlUnitOfWork, invoice_id: int) -> list[AdjustmentLine]:
    """Every waiver and refund on an invoice, oldest first, with names and payments."""
    payments = {p.id: p for p in await store.payments.for_invoice(invoice_id)}
    lines: list[AdjustmentLine] = []
    for a in await store.payments.adjustments_for(invoice_id):
        paid = payments.get(a.payment_id) if a.payment_id is not None else None
        source: str | None = None
        if paid is not None:
            if paid.method == "check" and paid.reference:
                source = _("check #{reference}", reference=paid.reference)
            else:
                source = _(
                    "the {method} payment of {amount}",
                    method=paid.method,
                    amount=format_cents(paid.amount_cents),
                )
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


async def load_waiver_facts(store: SqlUnitOfWork, adjustment_id: int) -> WaiverFacts | None:
    adjustment = await store.payments.adjustment(adjustment_id)
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
        requester_slack_id=None
        if requester is None
        else await store.people.staff_slack_id(requester),
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
    noun=N_("waiver"),
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
        lines.append(_("_This was already submitted; nothing was done twice._"))
    if outcome.pending:
        lines.append(
            _(
                ":hourglass_flowing_sand: *Waiver of {amount} on {number} sent for "
                "approval.* An approver decides in the approvals channel; you'll get a message.",
                amount=amount,
                number=esc(invoice.number),
            )
        )
    else:
        lines.append(
            _(
                ":white_check_mark: *Waived {amount} on {number}.* Balance now {balance}.",
                amount=amount,
                number=esc(invoice.number),
                balance=format_cents(balance_of(invoice)),
            )
        )
        if balance_of(invoice) == 0:
            lines.append(_("Nothing is left to pay: the invoice is settled and reminders stop."))
    return lines


# --- opening the modals ----------------------------------------------------------------------


@on_click(WaiverAction.OPEN_WAIVE, what="open the waiver form", ref=InvoiceAdjust)
async def handle_open_waive(click: Click[InvoiceAdjust]) -> None:
    require(click.actor, Permission.WAIVE_CHARGES)
    async with click.runtime.reads() as store:
        brief = await load_invoice_brief(store, click.ref.invoice_id)
        invoice = await store.invoices.get(click.ref.invoice_id)
        approval = (await store.settings.get()).waiver_approval_cents
    if invoice is None or invoice.status not in OPEN_STATUSES or brief.balance_cents == 0:
        raise ConflictError(_("Nothing is left to waive on invoice {number}.", number=brief.number))
    view = build_waive_modal(
        brief,
        approval_cents=approval,
        can_approve=click.actor.can(Permission.APPROVE_WAIVERS),
        secret=click.keys,
    )
    await click.open_view(view)


@on_click(WaiverAction.OPEN_REFUND, what="open the refund form", ref=InvoiceAdjust)
async def handle_open_refund(click: Click[InvoiceAdjust]) -> None:
    require(click.actor, Permission.ISSUE_REFUNDS)
    async with click.runtime.reads() as store:
        brief = await load_invoice_brief(store, click.ref.invoice_id)
        payments = await refundable_payments(store, click.ref.invoice_id)
    if not any(p.refundable_cents for p in payments):
        raise ConflictError(
            _("Invoice {number} has no payment with anything left to refund.", number=brief.number)
        )
    await click.open_view(build_refund_modal(brief, payments, secret=click.keys))


# --- submitting them ---------------------------------------------------------------------------


M = TypeVar("M", bound=Payload)


def _adjust_form(
    view: WaiverView, meta: type[M], *, what: str, doing: str, title: str
) -> ModalForm[M, Any]:
    """An invoice's Waive… or Refund… modal: errors by their fields, then a working view the
    result replaces."""
    working = N_(":hourglass_flowing_sand: Working on it; the result will show here.")
    return ModalForm(
        view,
        meta=meta,
        what=what,
        doing=doing,
        fields=FIELD_BLOCKS,
        default_field=WaiverBlock.AMOUNT,
        working=lambda _form: build_done_view(_(title), [_(working)]),
    )


waive_form: ModalForm[WaiveModal, RequestWaiver] = _adjust_form(
    WaiverView.WAIVE,
    WaiveModal,
    what="waive charges",
    doing=N_("waive the charges"),
    title=N_("Waiver"),
)


@waive_form.check
async def check_waive(form: Submitted[WaiveModal]) -> RequestWaiver:
    read = read_waive_form(form.values)
    if read.errors or read.amount_cents is None:
        raise FormErrors(read.errors)
    # The view id lives as long as the modal: a redelivered submission finds the first one.
    command = RequestWaiver(
        invoice_id=form.meta.invoice_id,
        amount_cents=read.amount_cents,
        reason=read.reason,
        idempotency_key=form.idempotency_key,
    )
    return await form.checked_by(check_waiver_request, command)


@waive_form.write
async def waive_submitted(form: Submitted[WaiveModal], command: RequestWaiver) -> None:
    async with form.runtime.stores() as store:
        outcome = await request_waiver(form.context(store), form.actor, command)
        lines = waiver_result_lines(outcome)
        await store.commit()
    await form.show(build_done_view(_("Waiver"), lines), "Waiver")


refund_form: ModalForm[RefundModal, RefundPayment] = _adjust_form(
    WaiverView.REFUND,
    RefundModal,
    what="refund a payment",
    doing=N_("refund the payment"),
    title=N_("Refund"),
)


@refund_form.check
async def check_refund(form: Submitted[RefundModal]) -> RefundPayment:
    read = read_refund_form(form.values)
    if read.errors or read.amount_cents is None or read.payment_id is None:
        raise FormErrors(read.errors)
    command = RefundPayment(
        payment_id=read.payment_id,
        amount_cents=read.amount_cents,
        reason=read.reason,
        idempotency_key=form.idempotency_key,
    )
    async with form.runtime.reads() as store:
        payment = await store.payments.get(read.payment_id)
        if payment is None or payment.invoice_id != form.meta.invoice_id:
            # A value edited on the way: only this invoice's payments were offered.
            raise NotFound(_("Choose one of this invoice's payments."), field="payment")
        await check_refund_request(form.context(store), form.actor, command)
    return command


@refund_form.write
async def refund_submitted(form: Submitted[RefundModal], command: RefundPayment) -> None:
    async with form.runtime.stores() as store:
        issued = await refund_payment(form.context(store), form.actor, command)
        number = issued.invoice.number
        balance = balance_of(issued.invoice)
        await store.commit()
    lines = [
        _(
            ":white_check_mark: *Refunded {amount} on {number}.* The family's receipt is on its "
            "way by email.",
            amount=format_cents(issued.adjustment.amount_cents),
            number=esc(number),
        ),
        _("Balance stays {balance}.", balance=format_cents(balance)),
    ]
    if not issued.created:
        lines.insert(0, _("_This was already submitted; nothing was done twice._"))
    await form.show(build_done_view(_("Refund"), lines), "Refund")


# --- /billing waive ----------------------------------------------------------------------------


@on_subcommand(
    "waive",
    N_("`INV-000001 25.00 reason…`: waive part or all of an invoice (Waive Charges)."),
    what="waive charges",
    needs=Permission.WAIVE_CHARGES,
    denied=N_("Waivers need the Waive Charges permission; your role doesn't have it."),
    warning=N_(":warning: {} Nothing was changed."),
)
async def handle_billing_waive(cmd: Command) -> None:
    if len(cmd.args) < 3:
        await cmd.ack(_(WAIVE_USAGE))
        return
    number, reason = cmd.args[0], " ".join(cmd.args[2:])
    cents = parse_amount(cmd.args[1])  # a bad amount is the ack's answer
    await cmd.ack()  # the waiver is written after the answer; its result follows
    try:
        async with cmd.runtime.stores() as store:
            invoice_id = await find_invoice_id(store, number)
            if invoice_id is None:
                raise NotFound(
                    _("There's no invoice {number}. Check the number.", number=esc(number[:40]))
                )
            key = f"slack:command:{cmd.body.get('trigger_id') or ''}"
            outcome = await request_waiver(
                cmd.context(store),
                cmd.actor,
                RequestWaiver(invoice_id, cents, reason, idempotency_key=key),
            )
            text = "\n".join(waiver_result_lines(outcome))
            await store.commit()
    except DomainError as exc:
        if isinstance(exc, PermissionDenied):
            await record_refusal(cmd.runtime, cmd.actor, "waive charges", exc.message)
        text = _(":warning: {reason} Nothing was changed.", reason=exc.message)
    await cmd.tell(text)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(
        app,
        runtime,
        handle_open_waive,
        handle_open_refund,
        waive_form,
        refund_form,
        handle_billing_waive,
    )
    ApprovalFeature(WAIVER_APPROVAL, runtime).register(app)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    return ApprovalFeature(WAIVER_APPROVAL, runtime).outbox_handlers(client)
