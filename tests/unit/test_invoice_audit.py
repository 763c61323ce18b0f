"""The insurance audit lines every view of an invoice shows (workflows.invoice_audit), and the
rules that keep what a family is told true (workflows.invoice_updates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from workflows.insurance import CoverageContext, PolicyTerms, decide_claim
from workflows.invoice_audit import LineKind, Style, invoice_audit
from workflows.invoice_updates import AmountChange, UpdateReason, amount_of, hold_key
from workflows.invoices import insurance_snapshot
from workflows.permissions import Actor

TZ = ZoneInfo("America/Chicago")
MINUS = "\u2212"


@dataclass
class Bill:
    subtotal_cents: int
    insurance_cents: int = 0
    paid_cents: int = 0
    waived_cents: int = 0
    refunded_cents: int = 0
    status: str = "unpaid"
    override_applied: bool = False
    insurance_snapshot: dict[str, Any] | None = None
    notice_hold: str | None = None

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.insurance_cents


@dataclass
class Adjustment:
    kind: str
    amount_cents: int
    reason: str
    status: str = "applied"


@dataclass
class Priced:
    bill: Bill
    snapshot: dict[str, Any] = field(default_factory=dict)


def coverage(
    *,
    copay: int | None = None,
    percent: str | None = None,
    cap: int | None = None,
    max_claims: int | None = 2,
    name: str = "AppleCare+",
) -> CoverageContext:
    return CoverageContext(
        enrollment_id=7,
        policy_id=3,
        policy_name=name,
        term_label="2025-2026",
        term_start=date(2025, 8, 1),
        term_end=date(2026, 7, 31),
        terms=PolicyTerms(
            copay_cents=copay,
            coverage_percent=None if percent is None else Decimal(percent),
            cap_cents=cap,
        ),
        max_claims=max_claims,
        allow_override=True,
    )


def priced(
    subtotal: int,
    cov: CoverageContext,
    used: int = 0,
    *,
    override: bool = False,
    approver: Actor | None = None,
) -> Bill:
    """An invoice priced the way `create_invoice_for_incident` prices it."""
    decision = decide_claim(subtotal, cov, used, override=override)
    snapshot = insurance_snapshot(
        cov,
        decision,
        approver=approver,
        approved_at=datetime(2026, 3, 2, 15, tzinfo=UTC) if approver else None,
    )
    return Bill(
        subtotal_cents=subtotal,
        insurance_cents=decision.split.policy_cents,
        override_applied=decision.override_applied,
        insurance_snapshot=snapshot,
    )


def texts(bill: Bill, **kw: Any) -> list[str]:
    return [line.text for line in invoice_audit(bill, tz=TZ, **kw).lines]


ADMIN = Actor(staff_id=4, name="Admin Person", role="Admin", permissions=frozenset())


@pytest.mark.parametrize(
    ("subtotal", "cov", "owed", "covered"),
    [
        # The seed's worked examples: original, then what the family owes and the policy covers.
        (12500, coverage(copay=2900), 2900, 9600),
        (30000, coverage(percent="100", cap=25000), 5000, 25000),
        (30000, coverage(copay=2500, cap=25000), 5000, 25000),
        (30000, coverage(percent="80"), 6000, 24000),
        (10000, coverage(percent="100", cap=25000), 0, 10000),
    ],
)
def test_the_seed_examples_read_as_audit_lines(
    subtotal: int, cov: CoverageContext, owed: int, covered: int
) -> None:
    audit = invoice_audit(priced(subtotal, cov), tz=TZ)
    original = audit.line(LineKind.ORIGINAL_SUBTOTAL)
    insurance = audit.line(LineKind.INSURANCE)
    assert original is not None and original.amount_cents == subtotal
    assert insurance is not None and insurance.amount_cents == covered
    assert insurance.style is Style.CREDIT and insurance.amount_text.startswith(MINUS)
    assert insurance.label == "Insurance applied: AppleCare+ (2025-2026)"
    assert audit.owed_cents == owed
    assert audit.lines[-1].kind is LineKind.OWED and audit.lines[-1].amount_cents == owed


def test_applecare_example_in_full() -> None:
    assert texts(priced(12500, coverage(copay=2900))) == [
        "Original subtotal: $125.00",
        f"Insurance applied: AppleCare+ (2025-2026): {MINUS}$96.00",
        "Co-pay (the least you pay per claim): $29.00",
        "Claim 1 of 2 this term",
        "Subtotal owed: $29.00",
        "Remaining balance: $29.00",
    ]


def test_no_cap_says_claim_without_a_limit() -> None:
    lines = texts(priced(12500, coverage(copay=2900, max_claims=None), used=4))
    assert "Claim 5 this term" in lines


def test_the_cap_reached_bills_full_price_and_a_pending_override_says_so() -> None:
    bill = priced(12500, coverage(copay=2500, max_claims=1), used=1)
    assert bill.total_cents == 12500
    lines = texts(bill)
    assert "Claim cap reached (1 of 1 this term): billed at full price" in lines
    assert not any("Insurance applied" in line for line in lines)
    assert lines[-1] == "Remaining balance: $125.00"
    waiting = texts(bill, override_pending=True)
    assert "Claim-cap override requested, awaiting a decision" in waiting


def test_the_override_badge_names_who_approved_it_and_when() -> None:
    bill = priced(12500, coverage(copay=2500, max_claims=1), used=1, override=True, approver=ADMIN)
    audit = invoice_audit(bill, tz=TZ)
    assert audit.badge is not None
    assert audit.badge.text == (
        "Claim-cap override applied (approved by Admin Person on Mar 2, 2026)"
    )
    assert audit.badge.approved_by == "Admin Person"
    assert "Claim 2 this term, past the limit of 1" in [line.text for line in audit.lines]
    assert audit.owed_cents == 2500
    spanish = invoice_audit(bill, tz=TZ, language="es")
    assert spanish.badge is not None
    assert spanish.badge.text == (
        "Excepción al límite de reclamos aplicada (aprobada por Admin Person el 2 mar 2026)"
    )
    assert spanish.lines[0].text == "Subtotal original: $125.00"


def test_an_older_snapshot_without_the_name_takes_the_approver_given() -> None:
    bill = priced(12500, coverage(copay=2500, max_claims=1), used=1, override=True)
    audit = invoice_audit(bill, tz=TZ, approved_by="Finance Director")
    assert audit.badge is not None and audit.badge.text == (
        "Claim-cap override applied (approved by Finance Director)"
    )


def test_waivers_payments_and_refunds_with_their_reasons() -> None:
    bill = priced(12500, coverage(copay=2900))
    bill.paid_cents, bill.waived_cents, bill.refunded_cents = 2000, 400, 1500
    adjustments = [
        Adjustment("waiver", 400, "Late fee waived"),
        Adjustment("waiver", 900, "Asked for, denied", status="denied"),
        Adjustment("refund", 1500, "Charger found"),
    ]
    lines = texts(bill, adjustments=adjustments)
    assert lines[-4:] == [
        f"Waived: Late fee waived: {MINUS}$4.00",
        f"Paid so far: {MINUS}$20.00",
        "Refunded to you (the charge was credited by the same amount): Charger found: $15.00",
        "Remaining balance: $5.00",
    ]
    # Without the adjustments, the invoice's totals are shown.
    assert texts(bill)[-4:] == [
        f"Waived: {MINUS}$4.00",
        f"Paid so far: {MINUS}$20.00",
        "Refunded to you (the charge was credited by the same amount): $15.00",
        "Remaining balance: $5.00",
    ]


def test_no_insurance_shows_only_the_money() -> None:
    assert texts(Bill(subtotal_cents=4500)) == [
        "Original subtotal: $45.00",
        "Remaining balance: $45.00",
    ]


def test_a_cancelled_invoice_owes_nothing() -> None:
    bill = Bill(subtotal_cents=4500, status="cancelled")
    assert texts(bill)[-2:] == ["Cancelled: nothing is owed", "Remaining balance: $0.00"]


# --- what a change of amount tells the family ---------------------------------------------------


def test_amount_of_is_the_charge_after_credits() -> None:
    bill = Bill(subtotal_cents=12500, insurance_cents=9600)
    assert amount_of(bill) == 2900
    bill.waived_cents = 400
    assert amount_of(bill) == 2500
    bill.paid_cents, bill.refunded_cents = 2500, 1000
    assert amount_of(bill) == 1500  # a payment doesn't change it; a refund credits it
    bill.status = "cancelled"
    assert amount_of(bill) == 0


def test_a_change_is_stored_as_json_for_the_template() -> None:
    change = AmountChange(UpdateReason.WAIVER, 12500, 10000, 10000, note="Hardship")
    assert change.changed
    assert change.context() == {
        "reason": "waiver",
        "old_cents": 12500,
        "new_cents": 10000,
        "balance_cents": 10000,
        "note": "Hardship",
        "by": None,
    }
    assert not AmountChange(UpdateReason.REFUND, 500, 500, 0).changed
    assert hold_key(12) == "cap_override:12"
