"""An invoice's insurance audit: the lines every view of it shows, computed once.

From the invoice's own figures and its `insurance_snapshot` (kept on the invoice, so the audit
survives a policy being edited or deleted): the original subtotal, the insurance applied (policy
and term, as a minus), the co-pay, "Claim X of Y", the claim-cap override badge with who
approved it and when (or the cap reached, or an override still waiting), the subtotal after
insurance, waivers, payments, refunds, and the amount owed.

`invoice_audit` is pure: Slack's invoice view and thread message, the incident card and the
family page all render its lines, in the reader's language.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any, Protocol

from workflows.i18n import (
    DEFAULT_LANGUAGE,
    N_,
    format_short_date,
    supported_language,
    translations,
)
from workflows.money import format_cents
from workflows.ports import InvoiceRecord, UnitOfWork

MINUS = "\u2212"


class AuditInvoice(Protocol):
    """What the audit reads of an invoice (the ORM row and the family page's rows have it)."""

    subtotal_cents: int
    insurance_cents: int
    total_cents: int
    paid_cents: int
    waived_cents: int
    refunded_cents: int
    status: str
    override_applied: bool
    insurance_snapshot: dict[str, Any] | None


class AuditAdjustment(Protocol):
    kind: str  # waiver, refund
    amount_cents: int
    reason: str
    status: str  # only "applied" ones count


class LineKind(StrEnum):
    ORIGINAL_SUBTOTAL = "original_subtotal"
    INSURANCE = "insurance"
    COPAY = "copay"
    CLAIM = "claim"
    CAP_REACHED = "cap_reached"
    OVERRIDE_PENDING = "override_pending"
    SUBTOTAL = "subtotal"
    WAIVER = "waiver"
    PAID = "paid"
    REFUND = "refund"
    CANCELLED = "cancelled"
    OWED = "owed"


# How a view shows a line's amount.
class Style(StrEnum):
    AMOUNT = "amount"  # a figure ("$125.00")
    CREDIT = "credit"  # taken off what is owed ("−$96.00"; green on the family page)
    PAYMENT = "payment"  # money paid, taken off the balance ("−$10.00")
    NOTE = "note"  # a fact without a figure of its own, or an amount that doesn't count
    TOTAL = "total"  # the amount owed, emphasised


@dataclass(frozen=True)
class AuditLine:
    kind: LineKind
    label: str
    amount_cents: int | None = None
    style: Style = Style.AMOUNT

    @property
    def amount_text(self) -> str:
        """The amount as shown: "−$96.00" for a credit, "$125.00" otherwise, "" for none."""
        if self.amount_cents is None:
            return ""
        sign = MINUS if self.style in (Style.CREDIT, Style.PAYMENT) else ""
        return f"{sign}{format_cents(self.amount_cents)}"

    @property
    def text(self) -> str:
        """ "Label: amount" (or the label alone), for one-line views."""
        amount = self.amount_text
        return f"{self.label}: {amount}" if amount else self.label


@dataclass(frozen=True)
class OverrideBadge:
    """The orange "Claim-cap override applied" badge, with its approver and time when known."""

    label: str
    approved_by: str | None
    approved_at: datetime | None
    detail: str  # "approved by Admin Person on Mar 2, 2026" (or "" when unknown)

    @property
    def text(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label


@dataclass(frozen=True)
class InvoiceAudit:
    lines: tuple[AuditLine, ...]
    badge: OverrideBadge | None
    owed_cents: int

    def line(self, kind: LineKind) -> AuditLine | None:
        return next((line for line in self.lines if line.kind == kind), None)


# The audit's words, as English msgids: the catalogues (workflows.i18n) translate them.
_WORDS: dict[str, str] = {
    "original_subtotal": N_("Original subtotal"),
    "insurance": N_("Insurance applied: {policy}"),
    "copay": N_("Co-pay (the least you pay per claim)"),
    "claim_of": N_("Claim {n} of {max} this term"),
    "claim": N_("Claim {n} this term"),
    "claim_past": N_("Claim {n} this term, past the limit of {max}"),
    "cap_reached": N_("Claim cap reached ({max} of {max} this term): billed at full price"),
    "override_pending": N_("Claim-cap override requested, awaiting a decision"),
    "subtotal": N_("Subtotal owed"),
    "waiver": N_("Waived"),
    "paid": N_("Paid so far"),
    "refund": N_("Refunded to you (the charge was credited by the same amount)"),
    "cancelled": N_("Cancelled: nothing is owed"),
    "owed": N_("Remaining balance"),
    "badge": N_("Claim-cap override applied"),
    "approved_by": N_("approved by {who}"),
    "approved_on": N_("on {when}"),
}


@functools.cache
def _words(language: str) -> dict[str, str]:
    translate = translations(language).gettext
    return {key: translate(message) for key, message in _WORDS.items()}


def _day(at: datetime, tz: tzinfo, language: str) -> str:
    return format_short_date(at.astimezone(tz).date(), language)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def policy_label(snapshot: Mapping[str, Any]) -> str:
    """ "AppleCare+ (2025-2026)": the policy's name and term as the invoice recorded them."""
    name = str(snapshot.get("policy_name") or "Insurance")
    term = str(snapshot.get("term_label") or "")
    return f"{name} ({term})" if term else name


def invoice_audit(
    invoice: AuditInvoice,
    adjustments: Iterable[AuditAdjustment] | None = None,
    *,
    tz: tzinfo,
    language: str = "en",
    override_pending: bool = False,
    approved_by: str | None = None,
) -> InvoiceAudit:
    """The audit lines of one invoice, in `language` (workflows.i18n.LANGUAGES; else English).

    `adjustments`: the invoice's waivers and refunds, each shown with its reason; without them
    the totals on the invoice are shown as one line each. `override_pending`: a claim-cap
    override request for this invoice waits for a decision. `approved_by` names the approver
    when the snapshot doesn't (invoices made before it kept the name).
    """
    lang = supported_language(language)
    words = _WORDS if lang == DEFAULT_LANGUAGE else _words(lang)
    snap: Mapping[str, Any] = invoice.insurance_snapshot or {}
    lines: list[AuditLine] = [
        AuditLine(LineKind.ORIGINAL_SUBTOTAL, words["original_subtotal"], invoice.subtotal_cents)
    ]
    applied = bool(snap.get("coverage_applied")) or invoice.insurance_cents > 0
    override = bool(invoice.override_applied or snap.get("override_applied"))
    max_claims = snap.get("max_claims")
    if snap and applied:
        lines.append(
            AuditLine(
                LineKind.INSURANCE,
                words["insurance"].format(policy=policy_label(snap)),
                invoice.insurance_cents,
                Style.CREDIT,
            )
        )
        copay = snap.get("copay_cents")
        if isinstance(copay, int) and copay > 0:
            lines.append(AuditLine(LineKind.COPAY, words["copay"], copay, Style.NOTE))
        number = snap.get("claim_number")
        if isinstance(number, int):
            if not isinstance(max_claims, int):
                label = words["claim"].format(n=number)
            elif number > max_claims:
                label = words["claim_past"].format(n=number, max=max_claims)
            else:
                label = words["claim_of"].format(n=number, max=max_claims)
            lines.append(AuditLine(LineKind.CLAIM, label, style=Style.NOTE))
    elif snap and snap.get("cap_reached") and not override:
        lines.append(
            AuditLine(
                LineKind.CAP_REACHED,
                words["cap_reached"].format(max=max_claims),
                style=Style.NOTE,
            )
        )
        if override_pending:
            lines.append(
                AuditLine(LineKind.OVERRIDE_PENDING, words["override_pending"], style=Style.NOTE)
            )
    badge = None
    if override:
        who = snap.get("override_approved_by") or approved_by
        when = _parse_time(snap.get("override_approved_at"))
        parts = []
        if who:
            parts.append(words["approved_by"].format(who=who))
        if when is not None:
            parts.append(words["approved_on"].format(when=_day(when, tz, lang)))
        badge = OverrideBadge(
            label=words["badge"],
            approved_by=None if not who else str(who),
            approved_at=when,
            detail=" ".join(parts),
        )
    if snap:
        lines.append(AuditLine(LineKind.SUBTOTAL, words["subtotal"], invoice.total_cents))
    lines += _adjustment_lines(invoice, adjustments, words)
    cancelled = invoice.status == "cancelled"
    owed = 0 if cancelled else invoice.total_cents - invoice.paid_cents - invoice.waived_cents
    if cancelled:
        lines.append(AuditLine(LineKind.CANCELLED, words["cancelled"], style=Style.NOTE))
    lines.append(AuditLine(LineKind.OWED, words["owed"], owed, Style.TOTAL))
    return InvoiceAudit(lines=tuple(lines), badge=badge, owed_cents=owed)


def _adjustment_lines(
    invoice: AuditInvoice,
    adjustments: Iterable[AuditAdjustment] | None,
    words: Mapping[str, str],
) -> list[AuditLine]:
    applied = None if adjustments is None else [a for a in adjustments if a.status == "applied"]

    def of_kind(kind: str) -> list[AuditAdjustment] | None:
        return None if applied is None else [a for a in applied if a.kind == kind]

    lines = _itemised(
        LineKind.WAIVER, words["waiver"], Style.CREDIT, of_kind("waiver"), invoice.waived_cents
    )
    if invoice.paid_cents:
        lines.append(AuditLine(LineKind.PAID, words["paid"], invoice.paid_cents, Style.PAYMENT))
    lines += _itemised(
        LineKind.REFUND, words["refund"], Style.NOTE, of_kind("refund"), invoice.refunded_cents
    )
    return lines


def _itemised(
    kind: LineKind,
    word: str,
    style: Style,
    adjustments: list[AuditAdjustment] | None,
    total_cents: int,
) -> list[AuditLine]:
    """A line per adjustment with its reason; one line for the invoice's total instead when the
    adjustments aren't known or don't add up to it."""
    if adjustments is None or sum(a.amount_cents for a in adjustments) != total_cents:
        return [AuditLine(kind, word, total_cents, style)] if total_cents else []
    return [
        AuditLine(kind, f"{word}: {a.reason}" if a.reason else word, a.amount_cents, style)
        for a in adjustments
    ]


async def load_invoice_audit(
    store: UnitOfWork, invoice: InvoiceRecord, *, tz: tzinfo, language: str = "en"
) -> InvoiceAudit:
    """`invoice_audit` with what it needs from the store: the invoice's waivers and refunds,
    whether an override request for it is waiting, and the approver's name when the snapshot
    doesn't keep it."""
    pending = False
    if invoice.incident_id is not None and invoice.cap_reached and not invoice.override_applied:
        request = await store.insurance.pending_override_for(invoice.incident_id)
        pending = request is not None and request.invoice_id in (None, invoice.id)
    approver = None
    snapshot = invoice.insurance_snapshot or {}
    if invoice.override_approved_by_id is not None and not snapshot.get("override_approved_by"):
        approver = await store.people.staff_name(invoice.override_approved_by_id)
    return invoice_audit(
        invoice,
        await store.payments.adjustments_for(invoice.id),
        tz=tz,
        language=language,
        override_pending=pending,
        approved_by=approver,
    )
