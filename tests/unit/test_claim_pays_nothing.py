"""The rule behind the $0.00-claim warning: a claim is used while insurance pays nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from workflows.insurance import CoverageContext, PolicyTerms, claim_pays_nothing, decide_claim


def coverage(
    *,
    copay: int | None = None,
    percent: str | None = None,
    cap: int | None = None,
    max_claims: int | None = 2,
) -> CoverageContext:
    return CoverageContext(
        enrollment_id=7,
        policy_id=3,
        policy_name="AppleCare+",
        term_label="2025-2026",
        term_start=date(2025, 7, 1),
        term_end=date(2026, 6, 30),
        terms=PolicyTerms(
            copay_cents=copay,
            coverage_percent=None if percent is None else Decimal(percent),
            cap_cents=cap,
        ),
        max_claims=max_claims,
        allow_override=True,
    )


@pytest.mark.parametrize(
    ("subtotal", "cover"),
    [
        (12500, coverage(copay=15000)),  # the co-pay is larger than the bill
        (12500, coverage(copay=12500)),  # ...or exactly as large
        (12500, coverage(percent="0")),  # a 0% policy
        (12500, coverage(cap=0)),  # a $0 cap
        (0, coverage(copay=2900)),  # a $0.00 invoice still counts as a claim
    ],
)
def test_a_claim_that_pays_nothing(subtotal: int, cover: CoverageContext) -> None:
    decision = decide_claim(subtotal, cover, claims_used=0)
    assert decision.counts_as_claim and decision.split.policy_cents == 0
    assert claim_pays_nothing(decision)


@pytest.mark.parametrize(
    ("subtotal", "cover", "used"),
    [
        (12500, coverage(copay=2900), 0),  # insurance pays $96.00
        (12500, coverage(copay=12499), 0),  # one cent is still something
        (12500, None, 0),  # no coverage: no claim is used
        (12500, coverage(copay=15000), 2),  # at the cap: full price, no claim used
    ],
)
def test_not_when_insurance_pays_or_no_claim_is_used(
    subtotal: int, cover: CoverageContext | None, used: int
) -> None:
    assert not claim_pays_nothing(decide_claim(subtotal, cover, claims_used=used))


def test_an_override_past_the_cap_that_pays_nothing_is_warned_too() -> None:
    decision = decide_claim(12500, coverage(copay=15000), claims_used=2, override=True)
    assert decision.override_applied
    assert claim_pays_nothing(decision)
