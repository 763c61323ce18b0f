"""Block Kit for parents' emails in Slack: the reply in the invoice's thread (with Confirm / Not
received for a reported payment), held and unverified messages, bounce alerts, and the form that
fills in what a reported payment is missing. Builders only; no I/O.

Everything a parent wrote goes through `esc`, so `<script>`, `<!channel>` or a link in an email
shows as text and can never mention, link or broadcast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bot.signing import Keys
from bot.slack.blocks import (
    Block,
    button,
    context_block,
    element,
    esc,
    fmt_date,
    fmt_when,
    input_block,
    modal,
    mrkdwn,
    option,
    plain,
    section,
    select_input,
    text_input,
)
from bot.slack.metadata import Payload, pack
from workflows.i18n import N_, _, ngettext
from workflows.labels import PAYMENT_METHODS
from workflows.money import format_cents
from workflows.payments import PaymentMethod

MAX_BODY_SHOWN = 2_800  # a section's text is at most 3,000 characters
MAX_NOTES = 5


class ReplyAction(StrEnum):
    CONFIRM = "reply.confirm_payment"
    REJECT = "reply.reject_payment"
    EDIT_SPLIT = "reply.edit_split"  # change the amounts per invoice (or enter the amount)
    CONFIRM_BALANCE = "reply.confirm_balance"  # no amount given, one invoice: its full balance


class ReplyView(StrEnum):
    CONFIRM = "reply.confirm_payment_form"
    SPLIT = "reply.split_form"


class ReplyBlock(StrEnum):
    HEADLINE = "reply.headline"
    BODY = "reply.body"
    PAYMENT = "reply.payment"
    ACTIONS = "reply.actions"
    DECISION = "reply.decision"
    METHOD = "reply.method"  # the form's inputs: block id and action id are the same
    REFERENCE = "reply.reference"
    TOTAL = "reply.total"  # the split form's total received
    AMOUNT = "reply.amount"  # the split form's amount for one invoice: "reply.amount.<id>"


def amount_block(invoice_id: int) -> str:
    return f"{ReplyBlock.AMOUNT}.{invoice_id}"


class ReplyPostKind(StrEnum):
    """`slack_posts` kinds for mail: where each message is, and each invoice's thread."""

    INVOICE_THREAD = "invoice_thread"
    MAIL_REPLY = "mail_reply"
    MAIL_BOUNCE = "mail_bounce"


class PendingPaymentRef(Payload):
    """The value of Confirm / Not received, and the form's private_metadata."""

    pending_payment_id: int


METHOD_LABELS: dict[str, str] = PAYMENT_METHODS
INTENT_LABELS = {
    "payment": N_("Payment reported"),
    "payment_plan": N_("Asks for a payment plan"),
    "dispute": N_("Disputes the charge"),
    "new_link": N_("Asks for a new link"),
    "question": N_("Question"),
    "other": N_("Other"),
}


@dataclass(frozen=True)
class PartView:
    """One invoice's share of a reported payment."""

    invoice_id: int
    number: str
    amount_cents: int
    balance_cents: int  # what the invoice owes now


@dataclass(frozen=True)
class PendingView:
    id: int
    amount_cents: int  # what the family reported (or staff's total); what they owed, if not given
    method: str  # "" when the parent didn't say
    reference: str | None
    paid_on: date | None
    status: str  # pending / confirmed / rejected
    decided_by: str | None
    decided_at: datetime | None
    missing: tuple[str, ...]  # what staff must add before confirming ("method", "check number")
    amount_given: bool = True
    parts: tuple[PartView, ...] = ()  # the split, in split order (none before splits existed)

    @property
    def allocated_cents(self) -> int:
        """What Confirm records: the parts, or the whole amount on one invoice."""
        return sum(p.amount_cents for p in self.parts) if self.parts else self.amount_cents

    @property
    def owed_cents(self) -> int:
        return sum(max(p.balance_cents, 0) for p in self.parts)

    @property
    def over_cents(self) -> int:
        """How much more than the family owes on these invoices it reported (0: not more)."""
        if not self.parts or not self.amount_given:
            return 0
        return max(self.amount_cents - self.owed_cents, 0)


@dataclass(frozen=True)
class ReplyCard:
    """One inbound email as billing staff see it."""

    inbound_id: int
    from_name: str | None
    from_address: str
    subject: str
    body: str
    intent: str | None
    route: str  # token / thread / subject / none / forged
    status: str  # routed / flagged / held
    received_at: datetime
    invoice_number: str | None = None
    invoice_status: str | None = None
    balance_cents: int | None = None
    student_name: str | None = None
    claimed_guardian: str | None = None  # a guardian with the sender's address, if any
    pending: PendingView | None = None
    photos: int = 0
    incident_id: int | None = None
    notes: tuple[str, ...] = ()


def payment_words(amount_cents: int, method: str, reference: str | None) -> str:
    """ "$50.00 (check #1043)", "$25.00 (cash)", "$50.00"."""
    label = _(METHOD_LABELS[method]).lower() if method in METHOD_LABELS else None
    amount = format_cents(amount_cents)
    # The amount leads in every language: the amount-not-given line cuts "$0.00" off the front.
    if method == PaymentMethod.CHECK and reference:
        return _("{amount} (check #{reference})", amount=amount, reference=reference)
    if label and reference:
        return _("{amount} ({method}, ref. {reference})", amount=amount, method=label,
                 reference=reference)  # fmt: skip
    if label:
        return _("{amount} ({method})", amount=amount, method=label)
    return amount


def confirm_label(pending: PendingView) -> str:
    """The button: "Confirm $50.00 (check #1043)"; "…" when a form asks for what's missing;
    "Confirm $145.50 owed" when the family reported more than that."""
    if pending.over_cents:
        words = _("{amount} owed", amount=format_cents(pending.allocated_cents))
    else:
        words = payment_words(pending.allocated_cents, pending.method, pending.reference)
    return _("Confirm {payment}", payment=words) + ("\u2026" if pending.missing else "")


def split_lines(pending: PendingView) -> list[str]:
    """ "• INV-000002: $45.50 of $45.50 owed", in split order."""
    return [
        _(
            "\u2022 {number}: {amount} of {balance} owed",
            number=esc(p.number),
            amount=format_cents(p.amount_cents),
            balance=format_cents(p.balance_cents),
        )
        for p in pending.parts
    ]


def _sender(card: ReplyCard) -> str:
    name = esc(card.from_name or card.claimed_guardian or "")
    address = esc(card.from_address or _("no address"))
    return f"{name} ({address})" if name else address


def headline(card: ReplyCard) -> str:
    about = f"*{esc(card.invoice_number)}*" if card.invoice_number else _("no invoice")
    student = f" \u00b7 {esc(card.student_name)}" if card.student_name else ""
    if card.status == "flagged":
        return _(
            ":warning: *Unverified sender* \u2014 {sender} is not a guardian of {student}. "
            "Email about {about}{detail}; no payment or photos were taken from it.",
            sender=_sender(card),
            student=esc(card.student_name or _("the student")),
            about=about,
            detail=student,
        )
    if card.route == "forged":
        return _(
            ":no_entry: *Held: forged reply address* \u2014 email from {sender} was sent "
            "to a reply address DeviceCare didn't sign. Nothing was routed; check it by hand.",
            sender=_sender(card),
        )
    if card.status == "held":
        return _(
            ":inbox_tray: *Held: no invoice found* \u2014 email from {sender} names no "
            "invoice DeviceCare knows. Check it by hand.",
            sender=_sender(card),
        )
    return _(
        ":email: *Reply from {sender}* about {about}{detail}",
        sender=_sender(card),
        about=about,
        detail=student,
    )


def notification_text(card: ReplyCard) -> str:
    """The plain fallback (notifications, screen readers): escaped like everything else."""
    who = esc(card.from_name or card.from_address or _("someone"))
    if card.status == "flagged":
        return _(
            "Unverified email from {who} about {invoice}",
            who=who,
            invoice=esc(card.invoice_number),
        )
    if card.status == "held":
        return _("Held email from {who}", who=who)
    return _("Reply from {who} about {invoice}", who=who, invoice=esc(card.invoice_number))


def _body(card: ReplyCard) -> str:
    text = card.body.strip() or _("(no text)")
    if len(text) > MAX_BODY_SHOWN:
        text = text[: MAX_BODY_SHOWN - 1] + "\u2026"
    return "\n".join(f">{esc(line)}" if line else ">" for line in text.splitlines())


def _context(card: ReplyCard, tz: ZoneInfo) -> list[str]:
    subject = _("Subject: {subject}", subject=esc(card.subject) or _("(none)"))
    parts = [subject, fmt_when(card.received_at, tz)]
    if card.intent:
        known = card.intent in INTENT_LABELS
        parts.append(_(INTENT_LABELS[card.intent]) if known else esc(card.intent))
    if card.invoice_number and card.balance_cents is not None:
        parts.append(_("{amount} still owed", amount=format_cents(card.balance_cents)))
    if card.photos:
        if card.incident_id:
            added = ngettext(
                ":camera: {n} photo added to incident #{incident}",
                ":camera: {n} photos added to incident #{incident}",
                card.photos,
                incident=card.incident_id,
            )
        else:
            added = ngettext(":camera: {n} photo added", ":camera: {n} photos added", card.photos)
        parts.append(added)
    return parts


def decision_line(pending: PendingView, invoice_number: str | None, tz: ZoneInfo) -> str:
    when = (
        "" if pending.decided_at is None else _(" on {when}", when=fmt_when(pending.decided_at, tz))
    )
    by = esc(pending.decided_by or _("someone"))
    words = payment_words(pending.allocated_cents, pending.method, pending.reference)
    if pending.status == "confirmed":
        on = _(" on {invoices}", invoices=esc(invoice_number)) if invoice_number else ""
        given = [p for p in pending.parts if p.amount_cents > 0]
        if len(given) > 1:
            on = _(
                " on {invoices}",
                invoices=", ".join(
                    f"{esc(p.number)} ({format_cents(p.amount_cents)})" for p in given
                ),
            )
        return _(
            ":white_check_mark: *Confirmed* by {who}{when}: {payment} recorded{on}; "
            "the receipt is on its way to the family.",
            who=by,
            when=when,
            payment=words,
            on=on,
        )
    return _(":x: *Marked not received* by {who}{when}: nothing was recorded.", who=by, when=when)


def _payment_blocks(card: ReplyCard, *, secret: Keys, tz: ZoneInfo) -> list[Block]:
    pending = card.pending
    if pending is None:
        return []
    paid = _(" on {date}", date=fmt_date(pending.paid_on)) if pending.paid_on else ""
    waiting = pending.status == "pending"
    if pending.amount_given:
        words = payment_words(pending.amount_cents, pending.method, pending.reference)
        lines = [
            _(
                ":moneybag: *Payment reported:* {payment}{paid}. Nothing is recorded until "
                "confirmed.",
                payment=words,
                paid=paid,
            )
        ]
    else:
        how = payment_words(0, pending.method, pending.reference).removeprefix("$0.00").strip()
        owes = format_cents(pending.owed_cents or pending.amount_cents)
        if len(pending.parts) <= 1:
            text = _(
                ":moneybag: *Payment reported, amount not given* {how}{paid}. The family owes "
                "{amount} on this invoice. Nothing is recorded until you enter or confirm the "
                "amount.",
                how=how,
                paid=paid,
                amount=owes,
            )
        else:
            text = _(
                ":moneybag: *Payment reported, amount not given* {how}{paid}. The family owes "
                "{amount} on these invoices. Nothing is recorded until you enter or confirm the "
                "amount.",
                how=how,
                paid=paid,
                amount=owes,
            )
        lines = [text]
    shown_split = len(pending.parts) > 1 or any(
        p.number != card.invoice_number for p in pending.parts
    )
    if shown_split and pending.amount_given:
        lines.append(_("*Split* (the invoice named first, then the oldest due):"))
        lines.extend(split_lines(pending))
    elif shown_split:
        lines.append(_("*Invoices:*"))
        lines.extend(
            _(
                "\u2022 {number}: {amount} owed",
                number=esc(p.number),
                amount=format_cents(p.balance_cents),
            )
            for p in pending.parts
        )
    if waiting and pending.over_cents:
        where = _("this invoice") if len(pending.parts) == 1 else _("these invoices")
        lines.append(
            _(
                ":warning: *More than the family owes:* they reported {reported}, {over} more "
                "than the {owed} owed on {where}. Your choices: *Confirm {allocated} owed* "
                "records what is owed and no more; *Edit split* takes the total actually "
                "received; *Not received* records nothing (then ask the family).",
                reported=format_cents(pending.amount_cents),
                over=format_cents(pending.over_cents),
                owed=format_cents(pending.owed_cents),
                where=where,
                allocated=format_cents(pending.allocated_cents),
            )
        )
    if waiting and pending.missing and pending.amount_given:
        missing = ", ".join(_(word) for word in pending.missing)
        lines.append(_("_Not given: {missing}; you'll be asked when confirming._", missing=missing))
    blocks: list[Block] = [section("\n".join(lines), block_id=ReplyBlock.PAYMENT)]
    if waiting:
        blocks.append(_payment_actions(card, pending, secret))
    else:
        decision = decision_line(pending, card.invoice_number, tz)
        blocks.append(section(decision, block_id=ReplyBlock.DECISION))
    return blocks


def _payment_actions(card: ReplyCard, pending: PendingView, secret: Keys) -> Block:
    """The choices staff actually have: confirm what can be recorded, change the split (or
    enter the amount), or mark it not received."""
    value = pack(PendingPaymentRef(pending_payment_id=pending.id), secret)
    elements: list[Block] = []
    if pending.amount_given and pending.allocated_cents > 0:
        confirm: Block | None = None
        if not pending.missing:
            words = payment_words(pending.allocated_cents, pending.method, pending.reference)
            given = [p for p in pending.parts if p.amount_cents > 0]
            where = (
                ", ".join(f"{esc(p.number)} ({format_cents(p.amount_cents)})" for p in given)
                if len(given) > 1
                else esc(given[0].number if given else card.invoice_number)
            )
            confirm = {
                "title": plain(_("Record this payment?"), 100),
                "text": mrkdwn(_("{payment} will be recorded on {invoices} and a receipt emailed "
                                 "to the family.", payment=words, invoices=where)),
                "confirm": plain(_("Record it"), 30),
                "deny": plain(_("Cancel"), 30),
            }  # fmt: skip
        elements.append(
            button(confirm_label(pending), ReplyAction.CONFIRM, value, style="primary",
                   confirm=confirm)
        )  # fmt: skip
    elif not pending.amount_given and len(pending.parts) == 1:
        owed = format_cents(pending.parts[0].balance_cents)
        elements.append(
            button(_("Confirm full balance {amount}", amount=owed), ReplyAction.CONFIRM_BALANCE,
                   value, style="primary")
        )  # fmt: skip
    if pending.parts:
        label = _("Edit split") if pending.amount_given else _("Enter amount\u2026")
        elements.append(button(label, ReplyAction.EDIT_SPLIT, value))
    elements.append(button(_("Not received"), ReplyAction.REJECT, value, style="danger"))
    return {"type": "actions", "block_id": ReplyBlock.ACTIONS, "elements": elements}


def build_split_modal(pending: PendingView, *, secret: Keys) -> Block:
    """The total received and an amount per invoice; checked on the server when submitted
    (workflows.reply_split.check_edited_split)."""
    total = pending.amount_cents if pending.amount_given else None
    intro = (
        _("The family reported *{amount}*.", amount=format_cents(pending.amount_cents))
        if pending.amount_given
        else _("The family didn't say how much they paid: enter what was received.")
    )
    blocks: list[Block] = [
        section(
            _(
                "{intro} Give each invoice its share: the amounts must add up to the total "
                "received, and none can be more than what its invoice owes. Nothing is "
                "recorded until you confirm.",
                intro=intro,
            )
        ),
        _money_input(ReplyBlock.TOTAL, _("Total received"), total),
    ]
    for part in pending.parts:
        blocks.append(
            _money_input(
                amount_block(part.invoice_id),
                _(
                    "{number} ({amount} owed)",
                    number=part.number,
                    amount=format_cents(part.balance_cents),
                ),
                part.amount_cents if pending.amount_given else None,
                optional=True,
            )
        )
    return modal(
        ReplyView.SPLIT,
        _("Split the payment"),
        blocks,
        submit=_("Save split"),
        private_metadata=pack(PendingPaymentRef(pending_payment_id=pending.id), secret),
    )


def _money_input(block_id: str, label: str, cents: int | None, *, optional: bool = False) -> Block:
    initial = None if cents is None else f"{cents // 100}.{cents % 100:02d}"
    element = text_input(max_length=20, initial=initial)
    return input_block(block_id, label, element, optional=optional)


def read_split_form(values: Mapping[str, Any]) -> tuple[str, dict[int, str]]:
    """(total, {invoice id: amount}) as typed; block ids that aren't ours are ignored."""

    def text(block_id: str) -> str:
        return str(element(values, block_id).get("value") or "").strip()

    amounts: dict[int, str] = {}
    prefix = f"{ReplyBlock.AMOUNT}."
    for block_id in values:
        if block_id.startswith(prefix) and block_id[len(prefix) :].isdigit():
            amounts[int(block_id[len(prefix) :])] = text(block_id)
    return text(ReplyBlock.TOTAL), amounts


def build_reply_message(card: ReplyCard, *, secret: Keys, tz: ZoneInfo) -> tuple[str, list[Block]]:
    blocks: list[Block] = [
        section(headline(card), block_id=ReplyBlock.HEADLINE),
        section(_body(card), block_id=ReplyBlock.BODY),
        context_block(*_context(card, tz)),
    ]
    if card.notes:
        blocks.append(context_block(*(esc(n) for n in card.notes[:MAX_NOTES])))
    blocks.extend(_payment_blocks(card, secret=secret, tz=tz))
    return notification_text(card), blocks


def already_decided_text(pending: PendingView, tz: ZoneInfo) -> str:
    when = (
        "" if pending.decided_at is None else _(" on {when}", when=fmt_when(pending.decided_at, tz))
    )
    who = esc(pending.decided_by or _("someone"))
    if pending.status == "confirmed":
        return _(
            ":lock: This reported payment was already confirmed by {who}{when}. "
            "Nothing was changed.",
            who=who,
            when=when,
        )
    return _(
        ":lock: This reported payment was already marked not received by {who}{when}. "
        "Nothing was changed.",
        who=who,
        when=when,
    )


@dataclass(frozen=True)
class BounceAlert:
    addresses: tuple[str, ...]
    guardians: tuple[str, ...]  # "Maria Rivera (guardian of Ana Rivera)"
    invoices: tuple[str, ...]  # invoice numbers
    subject: str
    received_at: datetime


def build_bounce_alert(alert: BounceAlert, *, tz: ZoneInfo) -> tuple[str, list[Block]]:
    addresses = ", ".join(esc(a) for a in alert.addresses) or _("an address")
    text = _("Email to {addresses} bounced", addresses=addresses)
    lines = [_(":mailbox_with_no_mail: *Email bounced:* {addresses}", addresses=addresses)]
    if alert.guardians:
        lines.append(
            _("Guardian: {guardians}", guardians="; ".join(esc(g) for g in alert.guardians))
        )
    if alert.invoices:
        lines.append(_("Invoice: {invoices}", invoices=", ".join(esc(n) for n in alert.invoices)))
    lines.append(
        _("DeviceCare won't email this address again until it is corrected in the roster.")
    )
    bounce = _("Bounce: {subject}", subject=esc(alert.subject) or _("(no subject)"))
    blocks: list[Block] = [
        section("\n".join(lines)),
        context_block(bounce, fmt_when(alert.received_at, tz)),
    ]
    return text, blocks


def build_confirm_payment_modal(
    pending: PendingView, invoice_number: str | None, *, secret: Keys
) -> Block:
    """Asks for what the parent didn't say (how they paid, the check number)."""
    options = [option(_(label), method) for method, label in METHOD_LABELS.items()]
    chosen = next((o for o in options if o["value"] == pending.method), None)
    method_element = select_input(options, placeholder=_("How did they pay?"), initial=chosen)
    reference = text_input(max_length=200, initial=pending.reference)
    words = format_cents(pending.allocated_cents)
    given = [p for p in pending.parts if p.amount_cents > 0]
    where = (
        ", ".join(f"*{esc(p.number)}* ({format_cents(p.amount_cents)})" for p in given)
        if len(given) > 1
        else f"*{esc(given[0].number if given else invoice_number)}*"
    )
    blocks: list[Block] = [
        section(
            _(
                "Record *{amount}* on {invoices} as reported by the family. A receipt is "
                "emailed to them.",
                amount=words,
                invoices=where,
            )
        ),
        input_block(ReplyBlock.METHOD, _("Method"), method_element),
        input_block(
            ReplyBlock.REFERENCE,
            _("Check number or reference"),
            reference,
            optional=True,
            hint=_("Required for checks."),
        ),
    ]
    return modal(
        ReplyView.CONFIRM,
        _("Confirm payment"),
        blocks,
        submit=_("Record payment"),
        private_metadata=pack(PendingPaymentRef(pending_payment_id=pending.id), secret),
    )


def read_confirm_form(values: Mapping[str, Any]) -> tuple[str, str | None]:
    """(method, reference) from the form's state."""
    selected = element(values, ReplyBlock.METHOD).get("selected_option")
    method = str(selected.get("value", "")) if isinstance(selected, dict) else ""
    ref_state = element(values, ReplyBlock.REFERENCE)
    reference = str(ref_state.get("value") or "").strip() or None
    return method, reference
