"""Block Kit for waivers and refunds: the Waive and Refund modals, the approval request with its
facts and decision, and the adjustment lines on an invoice. Builders only; no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bot.signing import Keys
from bot.slack.approval_blocks import decision_actions
from bot.slack.blocks import (
    MINUS,
    Block,
    button,
    context_block,
    element,
    esc,
    fields_section,
    fmt_date,
    fmt_when,
    header,
    input_block,
    modal,
    mrkdwn,
    option,
    section,
    select_input,
    text_input,
)
from bot.slack.metadata import Payload, pack
from workflows.adjustments import MAX_REASON, AdjustmentKind, AdjustmentStatus
from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.labels import payment_method_label
from workflows.money import format_cents, parse_amount

# The `slack_posts` kind of an approval request's message (updated in place once decided).
WAIVER_POST_KIND = "waiver_request"


class WaiverAction(StrEnum):
    OPEN_WAIVE = "waiver.open"
    OPEN_REFUND = "refund.open"
    APPROVE = "waiver.approve"
    DENY = "waiver.deny"


class WaiverView(StrEnum):
    WAIVE = "waiver.submit"
    REFUND = "refund.submit"
    DONE = "waiver.done"


class WaiverBlock(StrEnum):
    """Block ids; each input's action id is the same string."""

    AMOUNT = "waiver.amount"
    REASON = "waiver.reason"
    PAYMENT = "refund.payment"
    FACTS = "waiver.facts"
    ACTIONS = "waiver.actions"
    DECISION = "waiver.decision"


# Workflow error fields → the block the message belongs next to.
FIELD_BLOCKS: dict[str, str] = {
    "amount": WaiverBlock.AMOUNT,
    "reason": WaiverBlock.REASON,
    "payment": WaiverBlock.PAYMENT,
}


class InvoiceAdjust(Payload):
    """The value of the Waive… and Refund… buttons: which invoice."""

    invoice_id: int


class WaiveModal(Payload):
    invoice_id: int


class RefundModal(Payload):
    invoice_id: int


class WaiverRef(Payload):
    """The value of the Approve and Deny buttons."""

    adjustment_id: int


# --- what the builders are given ------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceBrief:
    """The invoice line at the top of both modals."""

    invoice_id: int
    number: str
    student_name: str
    total_cents: int
    balance_cents: int
    waived_cents: int


@dataclass(frozen=True)
class RefundablePayment:
    payment_id: int
    amount_cents: int
    method: str
    reference: str | None
    received_on: date
    refundable_cents: int

    @property
    def label(self) -> str:
        if self.method == "check" and self.reference:
            what = _("Check #{reference}", reference=self.reference)
        else:
            what = payment_method_label(self.method)
            what += f" ({self.reference})" if self.reference else ""
        return f"{what} \u2014 {format_cents(self.amount_cents)}, {fmt_date(self.received_on)}"


@dataclass(frozen=True)
class AdjustmentLine:
    """One waiver or refund on an invoice, as the invoice view lists it."""

    kind: str
    status: str
    amount_cents: int
    reason: str
    requested_by: str | None
    decided_by: str | None
    payment: str | None = None  # "check #1043" for refunds


@dataclass(frozen=True)
class WaiverFacts:
    """What an approver needs to decide, and what was decided."""

    adjustment_id: int
    invoice_id: int
    invoice_number: str
    student_name: str
    amount_cents: int
    total_cents: int
    balance_cents: int  # what is owed now
    status: str  # pending / applied / denied
    reason: str
    requested_by: str
    requester_slack_id: str | None
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_comment: str | None = None
    withdrawn: bool = False


@dataclass(frozen=True)
class WaiveForm:
    amount_cents: int | None
    reason: str
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundForm:
    payment_id: int | None
    amount_cents: int | None
    reason: str
    errors: dict[str, str] = field(default_factory=dict)


# --- reading the modals ---------------------------------------------------------------------


def _amount(values: Mapping[str, Any], errors: dict[str, str]) -> int | None:
    text = str(element(values, WaiverBlock.AMOUNT).get("value") or "")
    try:
        cents = parse_amount(text, field="amount")
    except ValidationError as exc:
        errors[WaiverBlock.AMOUNT] = exc.message
        return None
    if cents == 0:
        errors[WaiverBlock.AMOUNT] = _("Enter an amount above $0.00.")
        return None
    return cents


def _reason(values: Mapping[str, Any], errors: dict[str, str]) -> str:
    reason = " ".join(str(element(values, WaiverBlock.REASON).get("value") or "").split())
    if not reason:
        errors[WaiverBlock.REASON] = _("Say why.")
    return reason


def read_waive_form(values: Mapping[str, Any]) -> WaiveForm:
    errors: dict[str, str] = {}
    amount = _amount(values, errors)
    return WaiveForm(amount, _reason(values, errors), errors)


def read_refund_form(values: Mapping[str, Any]) -> RefundForm:
    errors: dict[str, str] = {}
    picked = (element(values, WaiverBlock.PAYMENT).get("selected_option") or {}).get("value")
    payment_id: int | None = None
    if picked is None:
        errors[WaiverBlock.PAYMENT] = _("Choose the payment to refund.")
    else:
        try:
            payment_id = int(str(picked))
        except ValueError:
            errors[WaiverBlock.PAYMENT] = _("Choose one of the invoice's payments.")
    amount = _amount(values, errors)
    return RefundForm(payment_id, amount, _reason(values, errors), errors)


# --- the modals -----------------------------------------------------------------------------


def _dollars(cents: int) -> str:
    return format_cents(cents).lstrip("$")


def _brief_block(brief: InvoiceBrief) -> Block:
    waived = ""
    if brief.waived_cents:
        waived = _(" \u00b7 {amount} waived so far", amount=format_cents(brief.waived_cents))
    return section(
        _(
            "*Invoice {number}* \u00b7 {student}\nBalance *{balance}* of {total}{waived}",
            number=esc(brief.number),
            student=esc(brief.student_name),
            balance=format_cents(brief.balance_cents),
            total=format_cents(brief.total_cents),
            waived=waived,
        )
    )


def _amount_input(label: str, initial_cents: int, hint: str) -> Block:
    amount = text_input(initial=_dollars(initial_cents), max_length=20)
    return input_block(WaiverBlock.AMOUNT, label, amount, hint=hint)


def _reason_input(placeholder: str) -> Block:
    reason = text_input(multiline=True, max_length=MAX_REASON, placeholder=placeholder)
    return input_block(WaiverBlock.REASON, _("Reason"), reason)


def build_waive_modal(
    brief: InvoiceBrief, *, approval_cents: int, can_approve: bool, secret: Keys
) -> Block:
    if can_approve:
        rule = _("You approve waivers, so yours apply at once.")
    else:
        rule = _(
            "Up to {amount} applies at once; a larger waiver waits for an approver in the "
            "approvals channel.",
            amount=format_cents(approval_cents),
        )
    blocks = [
        _brief_block(brief),
        _amount_input(
            _("Amount to waive ($)"), brief.balance_cents, _("All or part of the balance")
        ),
        _reason_input(_("e.g. Family hardship approved by the principal")),
        context_block(
            rule,
            _(
                "The billed amounts never change: the waiver is recorded on the invoice and in "
                "its activity log."
            ),
        ),
    ]
    return modal(
        WaiverView.WAIVE,
        _("Waive charges"),
        blocks,
        submit=_("Waive"),
        private_metadata=pack(WaiveModal(invoice_id=brief.invoice_id), secret),
    )


def build_refund_modal(
    brief: InvoiceBrief, payments: Sequence[RefundablePayment], *, secret: Keys
) -> Block:
    choices = [p for p in payments if p.refundable_cents > 0]
    options = [
        option(
            _(
                "{payment} ({amount} refundable)",
                payment=p.label,
                amount=format_cents(p.refundable_cents),
            ),
            str(p.payment_id),
        )
        for p in choices
    ]
    select = select_input(
        options,
        placeholder=_("The payment to hand back"),
        initial=options[0] if options else None,
    )
    blocks = [
        _brief_block(brief),
        input_block(WaiverBlock.PAYMENT, _("Payment"), select),
        _amount_input(
            _("Amount to refund ($)"),
            choices[0].refundable_cents if choices else 0,
            _("Up to what is left of that payment"),
        ),
        _reason_input(_("e.g. The device was found after it was billed as lost")),
        context_block(
            _(
                "The family gets a receipt by email. A refund also credits the charge by the "
                "same amount, so the balance stays as it is."
            )
        ),
    ]
    return modal(
        WaiverView.REFUND,
        _("Refund a payment"),
        blocks,
        submit=_("Refund"),
        private_metadata=pack(RefundModal(invoice_id=brief.invoice_id), secret),
    )


def build_done_view(title: str, lines: Sequence[str]) -> Block:
    return modal(WaiverView.DONE, title, [section("\n".join(lines))], close=_("Done"))


# --- on the invoice -------------------------------------------------------------------------


def adjustment_text(line: AdjustmentLine) -> str:
    """ "Waived −$20.00 — reason — by X", "Refunded $50.00 of check #1043 — reason",
    "Waiver of $150.00 awaiting approval"."""
    reason = f" \u2014 _{esc(line.reason)}_" if line.reason else ""
    amount = format_cents(line.amount_cents)
    if line.kind == AdjustmentKind.REFUND:
        source = _(" of {payment}", payment=esc(line.payment)) if line.payment else ""
        by = _(" \u2014 by {who}", who=esc(line.requested_by)) if line.requested_by else ""
        return _(
            ":leftwards_arrow_with_hook: Refunded {amount}{source}{reason}{by}",
            amount=amount,
            source=source,
            reason=reason,
            by=by,
        )
    if line.status == AdjustmentStatus.PENDING:
        asked = _(" (asked by {who})", who=esc(line.requested_by)) if line.requested_by else ""
        return _(
            ":hourglass_flowing_sand: Waiver of {amount} awaiting approval{asked}{reason}",
            amount=amount,
            asked=asked,
            reason=reason,
        )
    if line.status == AdjustmentStatus.DENIED:
        by = _(" by {who}", who=esc(line.decided_by)) if line.decided_by else ""
        return _(
            ":no_entry_sign: Waiver of {amount} not applied (denied{by}){reason}",
            amount=amount,
            by=by,
            reason=reason,
        )
    by = esc(line.requested_by or _("someone"))
    if line.decided_by and line.decided_by != line.requested_by:
        by = _("{who}, approved by {approver}", who=by, approver=esc(line.decided_by))
    return _(
        ":heavy_minus_sign: Waived {amount}{reason} \u2014 by {who}",
        amount=MINUS + amount,
        reason=reason,
        who=by,
    )


def adjustment_blocks(
    lines: Sequence[AdjustmentLine],
    *,
    invoice_id: int,
    secret: Keys,
    can_waive: bool,
    can_refund: bool,
) -> list[Block]:
    """Waivers and refunds on the invoice, each section with its button when allowed."""
    value = pack(InvoiceAdjust(invoice_id=invoice_id), secret)
    blocks: list[Block] = []
    waivers = [adjustment_text(a) for a in lines if a.kind == AdjustmentKind.WAIVER]
    refunds = [adjustment_text(a) for a in lines if a.kind == AdjustmentKind.REFUND]
    if waivers or can_waive:
        text = _("*Waivers*") + "\n" + ("\n".join(waivers) if waivers else _("_None._"))
        accessory = button(_("Waive\u2026"), WaiverAction.OPEN_WAIVE, value) if can_waive else None
        blocks.append(section(text, accessory=accessory))
    if refunds or can_refund:
        text = _("*Refunds*") + "\n" + ("\n".join(refunds) if refunds else _("_None._"))
        accessory = (
            button(_("Refund\u2026"), WaiverAction.OPEN_REFUND, value) if can_refund else None
        )
        blocks.append(section(text, accessory=accessory))
    return blocks


# --- the approval request -------------------------------------------------------------------


def _decision_line(facts: WaiverFacts, tz: ZoneInfo) -> str:
    when = "" if facts.decided_at is None else _(" on {when}", when=fmt_when(facts.decided_at, tz))
    by = esc(facts.decided_by or _("someone"))
    comment = f": _{esc(facts.decision_comment)}_" if facts.decision_comment else ""
    if facts.withdrawn:
        return _(":leftwards_arrow_with_hook: *Withdrawn* by {who}{when}", who=by, when=when)
    if facts.status == AdjustmentStatus.APPLIED:
        return _(
            ":white_check_mark: *Approved* by {who}{when}{comment}",
            who=by,
            when=when,
            comment=comment,
        )
    return _(":no_entry_sign: *Denied* by {who}{when}{comment}", who=by, when=when, comment=comment)


def decision_word(facts: WaiverFacts) -> str:
    if facts.withdrawn:
        return _("withdrawn")
    if facts.status == AdjustmentStatus.APPLIED:
        return _("approved")
    if facts.status == AdjustmentStatus.DENIED:
        return _("denied")
    return facts.status


def waiver_summary(facts: WaiverFacts) -> str:
    """Plain text for notifications."""
    text = _(
        "Waiver of {amount} on {invoice} for {student}",
        amount=format_cents(facts.amount_cents),
        invoice=facts.invoice_number,
        student=facts.student_name,
    )
    if facts.status == AdjustmentStatus.PENDING:
        return _("{waiver}: waiting for a decision", waiver=text)
    return _(
        "{waiver}: {decision} by {who}",
        waiver=text,
        decision=decision_word(facts),
        who=facts.decided_by or _("someone"),
    )


def build_waiver_request_message(
    facts: WaiverFacts, *, secret: Keys, tz: ZoneInfo
) -> tuple[str, list[Block]]:
    """The approvals-channel message; Approve/Deny while pending, the decision after."""
    fields = [
        mrkdwn(_("*Invoice*\n{invoice}", invoice=esc(facts.invoice_number))),
        mrkdwn(_("*Student*\n{student}", student=esc(facts.student_name))),
        mrkdwn(_("*Waiver*\n{amount}", amount=MINUS + format_cents(facts.amount_cents))),
        mrkdwn(
            _(
                "*Balance now*\n{balance} (of {total})",
                balance=format_cents(facts.balance_cents),
                total=format_cents(facts.total_cents),
            )
        ),
    ]
    requested = _(
        "Requested by {who} on {when}",
        who=esc(facts.requested_by),
        when=fmt_when(facts.requested_at, tz),
    )
    blocks: list[Block] = [
        header(_("Waiver approval requested")),
        fields_section(fields, block_id=WaiverBlock.FACTS),
        section(_("*Reason*\n{reason}", reason=esc(facts.reason))),
        context_block(requested),
    ]
    if facts.status == AdjustmentStatus.PENDING:
        value = pack(WaiverRef(adjustment_id=facts.adjustment_id), secret)
        blocks.append(
            decision_actions(WaiverBlock.ACTIONS, WaiverAction.APPROVE, WaiverAction.DENY, value)
        )
    else:
        blocks.append(section(_decision_line(facts, tz), block_id=WaiverBlock.DECISION))
    return waiver_summary(facts), blocks


def already_decided_text(facts: WaiverFacts, tz: ZoneInfo) -> str:
    when = "" if facts.decided_at is None else _(" at {when}", when=fmt_when(facts.decided_at, tz))
    return _(
        ":lock: This waiver was already {decision} by {who}{when}. Nothing was changed.",
        decision=decision_word(facts),
        who=esc(facts.decided_by or _("someone")),
        when=when,
    )


def decided_dm_text(facts: WaiverFacts) -> str:
    """What the requester reads in a DM."""
    amount = format_cents(facts.amount_cents)
    by = esc(facts.decided_by or _("an approver"))
    if facts.status == AdjustmentStatus.APPLIED:
        return _(
            ":white_check_mark: Your waiver of {amount} on invoice {invoice} ({student}) was "
            "approved by {who}. Balance now {balance}.",
            amount=amount,
            invoice=esc(facts.invoice_number),
            student=esc(facts.student_name),
            who=by,
            balance=format_cents(facts.balance_cents),
        )
    comment = (
        _(" Comment: {comment}", comment=esc(facts.decision_comment))
        if facts.decision_comment
        else ""
    )
    return _(
        ":no_entry_sign: Your waiver of {amount} on invoice {invoice} ({student}) was denied "
        "by {who}; the balance stays {balance}.{comment}",
        amount=amount,
        invoice=esc(facts.invoice_number),
        student=esc(facts.student_name),
        who=by,
        balance=format_cents(facts.balance_cents),
        comment=comment,
    )
