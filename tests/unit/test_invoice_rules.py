"""Pure invoice rules: fee lines, applicable fees, the insurance snapshot, payment checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from workflows.errors import ConflictError, OverpaymentError, ValidationError
from workflows.insurance import CoverageContext, PolicyTerms, decide_claim
from workflows.invoices import (
    CustomLine,
    applicable_fees,
    build_lines,
    default_due_date,
    insurance_snapshot,
)
from workflows.payments import check_payment, remaining_balance
from workflows.permissions import DEFAULT_ROLES


@dataclass
class Fee:
    id: int
    code: str
    name: str
    kind: str
    price_cents: int
    device_model: str | None = None
    incident_flag: str | None = None
    active: bool = True


FEES = [
    Fee(1, "screen", "Screen", "damage", 12500),
    Fee(2, "ipad-screen", "iPad screen", "damage", 14900, device_model="Apple iPad (9th gen)"),
    Fee(3, "water", "Liquid damage", "damage", 5000, incident_flag="water"),
    Fee(4, "old", "Retired fee", "damage", 100, active=False),
]


def test_applicable_fees_match_model_and_flags() -> None:
    names = [f.name for f in applicable_fees(FEES, "Apple iPad (9th gen)", ["screen"])]
    assert names == ["Screen", "iPad screen"]
    names = [f.name for f in applicable_fees(FEES, "HP Chromebook", ["water"])]
    assert names == ["Screen", "Liquid damage"]


def test_build_lines_counts_repeats_and_adds_custom_lines() -> None:
    lines = build_lines(FEES, (1, 1, 3), (CustomLine("  Labor ", 2000, 2),))
    assert [(ln.description, ln.quantity, ln.amount_cents) for ln in lines] == [
        ("Screen", 2, 25000),
        ("Liquid damage", 1, 5000),
        ("Labor", 2, 4000),
    ]


@pytest.mark.parametrize(
    ("ids", "custom", "message"),
    [
        ((), (), "at least one line"),
        ((4,), (), "no longer exists"),
        ((99,), (), "no longer exists"),
        ((), (CustomLine(" ", 100),), "description"),
        ((), (CustomLine("x", -1),), "out of range"),
        ((), (CustomLine("x", 100, 0),), "at least 1"),
    ],
)
def test_build_lines_refuses_bad_input(ids, custom, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=message):
        build_lines(FEES, ids, custom)


def test_snapshot_keeps_everything_the_invoice_shows() -> None:
    coverage = CoverageContext(
        enrollment_id=7,
        policy_id=3,
        policy_name="AppleCare+",
        term_label="2025-2026",
        term_start=date(2025, 7, 1),
        term_end=date(2026, 6, 30),
        terms=PolicyTerms(copay_cents=2900, coverage_percent=Decimal("80"), cap_cents=None),
        max_claims=2,
        allow_override=True,
    )
    decision = decide_claim(12500, coverage, 2, override=True)
    approver = DEFAULT_ROLES["Admin"].actor(5, "Pat Admin")
    snap = insurance_snapshot(
        coverage, decision, approver=approver, approved_at=datetime(2026, 1, 5, tzinfo=UTC)
    )
    assert snap is not None
    assert snap["policy_name"] == "AppleCare+" and snap["coverage_percent"] == "80"
    assert snap["absorbed_cents"] == 9600 and snap["claim_number"] == 3
    assert snap["override_applied"] and snap["override_approved_by"] == "Pat Admin"
    assert insurance_snapshot(None, decide_claim(100, None, 0)) is None


def test_default_due_date() -> None:
    assert default_due_date(date(2026, 1, 1), 90) == date(2026, 4, 1)


@dataclass
class Inv:
    number: str = "INV-000001"
    status: str = "unpaid"
    total_cents: int = 10000
    paid_cents: int = 0
    waived_cents: int = 0


def test_payment_checks() -> None:
    check_payment(Inv(), 10000)
    assert remaining_balance(Inv(paid_cents=2500)) == 7500
    with pytest.raises(OverpaymentError, match=r"\$100.01 is more than the \$100.00"):
        check_payment(Inv(), 10001)
    with pytest.raises(OverpaymentError, match="already paid in full"):
        check_payment(Inv(paid_cents=10000, status="paid"), 1)
    with pytest.raises(ConflictError, match="cancelled"):
        check_payment(Inv(status="cancelled"), 1)
    # A waiver lowers what a payment may cover.
    assert remaining_balance(Inv(paid_cents=2500, waived_cents=2500)) == 5000
    with pytest.raises(OverpaymentError, match=r"more than the \$50.00"):
        check_payment(Inv(paid_cents=2500, waived_cents=2500), 5001)
    with pytest.raises(ValidationError):
        check_payment(Inv(), 0)
