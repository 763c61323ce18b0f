from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import PermissionDenied, ValidationError
from workflows.insurance import (
    CoverageContext,
    PolicyTerms,
    Split,
    coverage_badge,
    decide_claim,
    in_term,
    split_claim,
)

MINUS = "\u2212"


def terms(
    copay: int | None = None, percent: str | None = None, cap: int | None = None
) -> PolicyTerms:
    return PolicyTerms(
        copay_cents=copay,
        coverage_percent=None if percent is None else Decimal(percent),
        cap_cents=cap,
    )


def context(
    *,
    max_claims: int | None = 2,
    allow_override: bool = True,
    policy_terms: PolicyTerms | None = None,
) -> CoverageContext:
    return CoverageContext(
        enrollment_id=7,
        policy_id=3,
        policy_name="AppleCare+",
        term_label="2025-2026",
        term_start=date(2025, 7, 1),
        term_end=date(2026, 6, 30),
        terms=policy_terms or terms(copay=2900),
        max_claims=max_claims,
        allow_override=allow_override,
    )


# --- split_claim ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subtotal", "policy_terms", "client", "policy"),
    [
        pytest.param(12500, terms(copay=2900), 2900, 9600, id="strict-copay"),
        pytest.param(30000, terms(percent="100", cap=25000), 5000, 25000, id="full-with-cap"),
        pytest.param(30000, terms(copay=2500, cap=25000), 5000, 25000, id="copay-and-cap"),
        pytest.param(30000, terms(percent="80"), 6000, 24000, id="eighty-percent"),
        pytest.param(10000, terms(percent="100", cap=25000), 0, 10000, id="below-cap"),
    ],
)
def test_worked_examples(
    subtotal: int, policy_terms: PolicyTerms, client: int, policy: int
) -> None:
    assert split_claim(subtotal, policy_terms) == Split(policy_cents=policy, client_cents=client)


def test_no_dials_policy_pays_everything() -> None:
    assert split_claim(12345, terms()) == Split(policy_cents=12345, client_cents=0)


def test_copay_larger_than_subtotal_client_pays_only_subtotal() -> None:
    assert split_claim(2000, terms(copay=2900)) == Split(policy_cents=0, client_cents=2000)


def test_copay_on_top_of_percent_only_raises_when_below_floor() -> None:
    # 80% of 10000 leaves 2000 for the client; a 2500 co-pay lifts it.
    assert split_claim(10000, terms(copay=2500, percent="80")) == Split(7500, 2500)
    # 50% leaves 5000, already above the co-pay.
    assert split_claim(10000, terms(copay=2500, percent="50")) == Split(5000, 5000)


def test_percent_rounds_half_up_in_policy_share() -> None:
    assert split_claim(333, terms(percent="50")) == Split(policy_cents=167, client_cents=166)


def test_zero_cap_means_policy_pays_nothing() -> None:
    assert split_claim(5000, terms(cap=0)) == Split(0, 5000)


def test_zero_subtotal() -> None:
    assert split_claim(0, terms(copay=2900, percent="80", cap=100)) == Split(0, 0)


def test_negative_subtotal_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        split_claim(-1, terms())
    assert info.value.field == "subtotal"


def test_split_subtotal_property() -> None:
    assert Split(policy_cents=9600, client_cents=2900).subtotal_cents == 12500


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"copay_cents": -1, "coverage_percent": None, "cap_cents": None}, "copay_cents"),
        ({"copay_cents": None, "coverage_percent": None, "cap_cents": -1}, "cap_cents"),
        (
            {"copay_cents": None, "coverage_percent": Decimal("-0.01"), "cap_cents": None},
            "coverage_percent",
        ),
        (
            {"copay_cents": None, "coverage_percent": Decimal("100.01"), "cap_cents": None},
            "coverage_percent",
        ),
        (
            {"copay_cents": None, "coverage_percent": Decimal("NaN"), "cap_cents": None},
            "coverage_percent",
        ),
    ],
)
def test_policy_terms_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        PolicyTerms(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_policy_terms_reject_float_money_and_percent() -> None:
    with pytest.raises(TypeError):
        PolicyTerms(copay_cents=29.0, coverage_percent=None, cap_cents=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PolicyTerms(copay_cents=None, coverage_percent=0.8, cap_cents=None)  # type: ignore[arg-type]


def test_policy_terms_accept_int_percent_as_decimal() -> None:
    t = PolicyTerms(copay_cents=None, coverage_percent=80, cap_cents=None)  # type: ignore[arg-type]
    assert t.coverage_percent == Decimal(80)
    assert isinstance(t.coverage_percent, Decimal)


def test_policy_terms_bounds_inclusive() -> None:
    assert terms(percent="0").coverage_percent == 0
    assert terms(percent="100").coverage_percent == 100
    assert terms(copay=0, cap=0).cap_cents == 0


# --- properties -----------------------------------------------------------------------------

subtotals = st.integers(min_value=0, max_value=10_000_000)
optional_cents = st.none() | st.integers(min_value=0, max_value=10_000_000)
percents = st.none() | st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n) / 100)
policy_terms = st.builds(
    PolicyTerms, copay_cents=optional_cents, coverage_percent=percents, cap_cents=optional_cents
)


@given(subtotals, policy_terms)
def test_shares_never_negative_and_sum_to_subtotal(subtotal: int, t: PolicyTerms) -> None:
    split = split_claim(subtotal, t)
    assert split.policy_cents >= 0
    assert split.client_cents >= 0
    assert split.policy_cents + split.client_cents == subtotal


@given(subtotals, policy_terms)
def test_client_pays_at_least_the_copay_floor(subtotal: int, t: PolicyTerms) -> None:
    split = split_claim(subtotal, t)
    if t.copay_cents is not None:
        assert split.client_cents >= min(t.copay_cents, subtotal)


@given(subtotals, policy_terms)
def test_policy_never_exceeds_cap(subtotal: int, t: PolicyTerms) -> None:
    split = split_claim(subtotal, t)
    if t.cap_cents is not None:
        assert split.policy_cents <= t.cap_cents


@given(subtotals, policy_terms)
def test_policy_never_exceeds_its_percentage(subtotal: int, t: PolicyTerms) -> None:
    split = split_claim(subtotal, t)
    if t.coverage_percent is not None:
        exact = Decimal(subtotal) * t.coverage_percent / 100
        assert split.policy_cents <= exact + Decimal("0.5")


@given(subtotals)
def test_no_dials_policy_pays_all(subtotal: int) -> None:
    assert split_claim(subtotal, terms()) == Split(policy_cents=subtotal, client_cents=0)


# --- decide_claim ---------------------------------------------------------------------------


def test_no_coverage_bills_full_price() -> None:
    decision = decide_claim(12500, None, 0)
    assert decision.coverage_applied is False
    assert decision.counts_as_claim is False
    assert decision.split == Split(policy_cents=0, client_cents=12500)
    assert decision.claim_number is None
    assert decision.cap_reached is False
    assert decision.override_applied is False
    assert decision.audit_lines == ("No active insurance coverage on the incident date.",)


def test_no_coverage_ignores_override_flag() -> None:
    assert decide_claim(500, None, 0, override=True).override_applied is False


def test_first_claim_applies_coverage() -> None:
    decision = decide_claim(12500, context(), 0)
    assert decision.coverage_applied is True
    assert decision.counts_as_claim is True
    assert decision.split == Split(policy_cents=9600, client_cents=2900)
    assert decision.claim_number == 1
    assert decision.cap_reached is False
    assert decision.override_applied is False
    assert decision.audit_lines == (
        f"Insurance applied: AppleCare+ (2025-2026) {MINUS}$96.00",
        "Claim 1 of 2 this term",
    )


def test_last_claim_before_cap() -> None:
    decision = decide_claim(12500, context(), 1)
    assert decision.claim_number == 2
    assert decision.audit_lines[1] == "Claim 2 of 2 this term"


def test_no_claim_limit_counts_without_maximum() -> None:
    decision = decide_claim(12500, context(max_claims=None), 2)
    assert decision.coverage_applied is True
    assert decision.claim_number == 3
    assert decision.audit_lines[1] == "Claim 3 this term"


def test_cap_reached_bills_full_price() -> None:
    decision = decide_claim(12500, context(), 2)
    assert decision.coverage_applied is False
    assert decision.counts_as_claim is False
    assert decision.cap_reached is True
    assert decision.override_applied is False
    assert decision.claim_number is None
    assert decision.split == Split(policy_cents=0, client_cents=12500)
    assert decision.audit_lines == ("Claim cap reached (2 of 2 this term); billed at full price.",)


def test_zero_max_claims_is_always_at_cap() -> None:
    assert decide_claim(100, context(max_claims=0), 0).cap_reached is True


def test_override_applies_when_policy_allows() -> None:
    decision = decide_claim(12500, context(allow_override=True), 2, override=True)
    assert decision.coverage_applied is True
    assert decision.counts_as_claim is True
    assert decision.override_applied is True
    assert decision.cap_reached is True
    assert decision.claim_number == 3
    assert decision.split == Split(policy_cents=9600, client_cents=2900)
    assert "Claim-cap override applied" in decision.audit_lines
    assert decision.audit_lines[0] == f"Insurance applied: AppleCare+ (2025-2026) {MINUS}$96.00"


def test_override_refused_when_policy_forbids() -> None:
    with pytest.raises(PermissionDenied) as info:
        decide_claim(12500, context(allow_override=False), 2, override=True)
    assert info.value.message == "This policy does not allow claim-cap overrides."


def test_override_below_cap_is_an_ordinary_claim() -> None:
    decision = decide_claim(12500, context(allow_override=False), 0, override=True)
    assert decision.coverage_applied is True
    assert decision.override_applied is False
    assert decision.claim_number == 1


def test_decide_claim_rejects_negative_inputs() -> None:
    with pytest.raises(ValidationError):
        decide_claim(-1, context(), 0)
    with pytest.raises(ValueError):
        decide_claim(100, context(), -1)


def test_coverage_context_validation() -> None:
    with pytest.raises(ValidationError):
        CoverageContext(
            enrollment_id=1,
            policy_id=None,
            policy_name="X",
            term_label="T",
            term_start=date(2026, 1, 1),
            term_end=date(2025, 1, 1),
            terms=terms(),
            max_claims=None,
            allow_override=False,
        )
    with pytest.raises(ValidationError):
        context(max_claims=-1)


# --- badge ----------------------------------------------------------------------------------


def test_badge_without_coverage() -> None:
    badge = coverage_badge(None, 0)
    assert badge.state == "none"
    assert badge.label == "No Active Coverage"


def test_badge_active_shows_next_claim() -> None:
    badge = coverage_badge(context(), 1)
    assert badge.state == "active"
    assert badge.label == "AppleCare+ (2025-2026)"
    assert badge.detail == "Claim 2 of 2 this term"


def test_badge_active_without_limit() -> None:
    badge = coverage_badge(context(max_claims=None), 4)
    assert badge.state == "active"
    assert badge.detail == "Claim 5 this term"


def test_badge_exhausted() -> None:
    badge = coverage_badge(context(), 2)
    assert badge.state == "exhausted"
    assert badge.label == "AppleCare+ (2025-2026)"
    assert badge.detail == "Coverage exhausted (2 of 2 this term)"


def test_badge_exhausted_reads_y_of_y_even_past_cap() -> None:
    assert coverage_badge(context(), 3).detail == "Coverage exhausted (2 of 2 this term)"


def test_badge_for_incident_that_already_used_a_claim() -> None:
    # This incident's own invoice was claim 2 of 2: it is covered, not exhausted.
    badge = coverage_badge(context(), 2, own_claim_number=2)
    assert badge.state == "active"
    assert badge.detail == "Claim 2 of 2 this term"


def test_badge_own_claim_without_limit() -> None:
    assert coverage_badge(context(max_claims=None), 3, own_claim_number=1).detail == (
        "Claim 1 this term"
    )


def test_badge_own_claim_past_cap_via_override() -> None:
    badge = coverage_badge(context(), 3, own_claim_number=3)
    assert badge.state == "active"
    assert badge.detail == "Claim 3 this term (over the cap of 2)"


# --- in_term --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2025, 6, 30), False),
        (date(2025, 7, 1), True),
        (date(2026, 1, 15), True),
        (date(2026, 6, 30), True),
        (date(2026, 7, 1), False),
    ],
)
def test_in_term_inclusive(on: date, expected: bool) -> None:
    assert in_term(date(2025, 7, 1), date(2026, 6, 30), on) is expected
