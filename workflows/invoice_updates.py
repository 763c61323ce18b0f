"""Keeping what a family was told true: holding the first notice while a decision that changes
the amount is pending, and telling the family once when an amount they know about changes.

- **Hold.** An invoice created while a claim-cap override is pending keeps its invoice notice
  held (written, not sent) and is skipped by the billing run. The decision releases it in the
  same transaction, and the email then shows the amount that stands (`release_after_decision`).
- **Update.** When the amount of an invoice changes (an override, a waiver, a refund, a
  cancellation or a restore) and an email about it already went out, one `invoice_updated`
  notice says the old amount, the new amount and why (`notify_amount_change`). A family never
  told anything gets nothing: the first email they get shows the amount as it is then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workflows.ports import Context, InvoiceRecord

INVOICE_UPDATED = "invoice_updated"
INVOICE_ISSUED = "invoice_issued"
CAP_OVERRIDE_HOLD = "cap_override"
NOTHING_LEFT = "nothing was left to pay after the decision"


class UpdateReason(StrEnum):
    """Why an invoice's amount changed; the `invoice_updated` templates word each one."""

    OVERRIDE_APPROVED = "override_approved"
    WAIVER = "waiver"
    REFUND = "refund"
    CANCELLED = "cancelled"
    RESTORED = "restored"


def amount_of(invoice: InvoiceRecord) -> int:
    """What the invoice charges the family now: the amount after insurance less waivers and
    refunds (nothing when cancelled). Payments don't change it; they lower the balance."""
    if invoice.status == "cancelled":
        return 0
    return invoice.total_cents - invoice.waived_cents - invoice.refunded_cents


def hold_key(request_id: int) -> str:
    """The `notice_hold` of an invoice waiting for claim-cap override request `request_id`."""
    return f"{CAP_OVERRIDE_HOLD}:{request_id}"


@dataclass(frozen=True)
class AmountChange:
    """One change of an invoice's amount, as the `invoice_updated` notice stores it."""

    reason: UpdateReason
    old_cents: int
    new_cents: int
    balance_cents: int
    note: str | None = None
    by: str | None = None

    @property
    def changed(self) -> bool:
        return self.old_cents != self.new_cents

    def context(self) -> dict[str, Any]:
        """JSON-safe; the templates read it as `extra`."""
        return {
            "reason": self.reason.value,
            "old_cents": self.old_cents,
            "new_cents": self.new_cents,
            "balance_cents": self.balance_cents,
            "note": self.note,
            "by": self.by,
        }


def update_key(invoice_id: int, cause: str) -> str:
    """One notice per change: `cause` names it (e.g. "waiver:12", "override:3")."""
    return f"invoice-updated:{invoice_id}:{cause}"


async def notify_amount_change(
    ctx: Context,
    invoice: InvoiceRecord,
    *,
    old_cents: int,
    reason: UpdateReason,
    cause: str,
    note: str | None = None,
    by: str | None = None,
) -> int:
    """Queue one `invoice_updated` notice per guardian when the amount changed and the family
    was already told about the invoice; returns how many were queued (0 otherwise)."""
    change = AmountChange(
        reason=reason,
        old_cents=old_cents,
        new_cents=amount_of(invoice),
        balance_cents=0 if invoice.status == "cancelled" else _balance(invoice),
        note=note,
        by=by,
    )
    if not change.changed or invoice.notice_hold is not None:
        return 0
    if not await ctx.store.outbox.family_told(invoice.id):
        return 0
    return await ctx.store.outbox.queue_notice(
        INVOICE_UPDATED, invoice.id, update_key(invoice.id, cause), change.context()
    )


async def release_after_decision(ctx: Context, invoice: InvoiceRecord, hold: str) -> bool:
    """End `hold` on the invoice: its held first notice goes out now (showing the amount that
    stands), or is withdrawn when nothing is left to pay.

    False when nothing was held by `hold`: not held at all, or its email went out before the
    hold took (a worker was already sending it), so the family may need an update instead."""
    if invoice.notice_hold != hold:
        return False
    invoice.notice_hold = None
    if invoice.status in ("paid", "cancelled") or _balance(invoice) <= 0:
        return await ctx.store.outbox.withdraw_held(invoice.id, NOTHING_LEFT) > 0
    return await ctx.store.outbox.release_held(invoice.id) > 0


def _balance(invoice: InvoiceRecord) -> int:
    return invoice.total_cents - invoice.paid_cents - invoice.waived_cents
