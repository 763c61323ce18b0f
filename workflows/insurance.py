"""Insurance math and claim counting: how an invoice subtotal splits between policy and family."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from workflows.errors import PermissionDenied, ValidationError
from workflows.i18n import _
from workflows.money import format_cents, percent_of

_MINUS = "\u2212"  # typographic minus, so the absorbed amount reads as a deduction


@dataclass(frozen=True)
class PolicyTerms:
    """The three independent dials of a policy; None switches a dial off."""

    copay_cents: int | None
    coverage_percent: Decimal | None
    cap_cents: int | None

    def __post_init__(self) -> None:
        for name in ("copay_cents", "cap_cents"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be int cents, got {type(value).__name__}")
            if value < 0:
                if name == "copay_cents":
                    raise ValidationError(_("The co-pay can't be negative."), field=name)
                raise ValidationError(_("The coverage cap can't be negative."), field=name)
        pct = self.coverage_percent
        if pct is None:
            return
        # Floats would bring binary rounding into money math; only exact types get in.
        if isinstance(pct, bool) or not isinstance(pct, Decimal | int):
            raise TypeError(f"coverage_percent must be Decimal, got {type(pct).__name__}")
        pct = Decimal(pct)
        object.__setattr__(self, "coverage_percent", pct)
        if not pct.is_finite() or not 0 <= pct <= 100:
            raise ValidationError(
                _("Coverage % must be between 0 and 100."), field="coverage_percent"
            )


@dataclass(frozen=True)
class Split:
    """Who pays what. The two shares always add up to the subtotal."""

    policy_cents: int
    client_cents: int

    @property
    def subtotal_cents(self) -> int:
        return self.policy_cents + self.client_cents


def split_claim(subtotal_cents: int, terms: PolicyTerms) -> Split:
    """Apply the dials in a fixed order: coverage %, then cap, then co-pay floor."""
    if subtotal_cents < 0:
        raise ValidationError(_("An invoice subtotal can't be negative."), field="subtotal")
    if terms.coverage_percent is None:
        policy = subtotal_cents
    else:
        policy = percent_of(subtotal_cents, terms.coverage_percent)
    if terms.cap_cents is not None:
        policy = min(policy, terms.cap_cents)
    policy = max(0, min(policy, subtotal_cents))
    client = subtotal_cents - policy
    if terms.copay_cents is not None:
        # The family never pays more than the invoice itself, even with a large co-pay.
        floor = min(terms.copay_cents, subtotal_cents)
        if client < floor:
            client = floor
            policy = subtotal_cents - client
    return Split(policy_cents=policy, client_cents=client)


@dataclass(frozen=True)
class ClaimKey:
    """What a claim counts against: a student's enrollment, or a device's own coverage
    (AppleCare+ on that device, whoever holds it)."""

    enrollment_id: int | None = None
    device_coverage_id: int | None = None


def invoice_claim_key(invoice: Any) -> ClaimKey | None:
    """The key an invoice's claim counts against, or None when it isn't a claim."""
    enrollment = getattr(invoice, "claim_enrollment_id", None)
    device = getattr(invoice, "claim_device_coverage_id", None)
    if enrollment is None and device is None:
        return None
    return ClaimKey(enrollment, device)


@dataclass(frozen=True)
class CoverageContext:
    """The coverage valid on the incident date, with its policy terms: the student's
    enrollment, or the damaged device's own coverage (then `device_coverage_id` is set and
    `enrollment_id` is None)."""

    enrollment_id: int | None
    policy_id: int | None  # None once the policy itself was deleted; the enrollment survives
    policy_name: str
    term_label: str
    term_start: date
    term_end: date
    terms: PolicyTerms
    max_claims: int | None
    allow_override: bool
    device_coverage_id: int | None = None

    @property
    def claim_key(self) -> ClaimKey:
        return ClaimKey(self.enrollment_id, self.device_coverage_id)

    def __post_init__(self) -> None:
        if self.term_end < self.term_start:
            raise ValidationError(_("A policy term can't end before it starts."), field="term_end")
        if self.max_claims is not None and self.max_claims < 0:
            raise ValidationError(_("Max claims per term can't be negative."), field="max_claims")

    @property
    def label(self) -> str:
        return f"{self.policy_name} ({self.term_label})"


@dataclass(frozen=True)
class ClaimDecision:
    """Outcome of applying (or not applying) insurance to one new invoice."""

    coverage_applied: bool
    split: Split
    claim_number: int | None
    cap_reached: bool
    override_applied: bool
    audit_lines: tuple[str, ...]

    @property
    def counts_as_claim(self) -> bool:
        return self.coverage_applied


def claim_pays_nothing(decision: ClaimDecision) -> bool:
    """The invoice would use up one of the term's claims while insurance pays $0.00 of it (a
    co-pay as large as the bill, a 0% policy, a $0 cap): worth a warning before it is made."""
    return decision.counts_as_claim and decision.split.policy_cents == 0


def _claim_line(number: int, max_claims: int | None) -> str:
    if max_claims is None:
        return f"Claim {number} this term"
    if number > max_claims:
        return f"Claim {number} this term (over the cap of {max_claims})"
    return f"Claim {number} of {max_claims} this term"


def _claim_detail(number: int, max_claims: int | None) -> str:
    """`_claim_line` in the staff language, for the incident card (the audit keeps English)."""
    if max_claims is None:
        return _("Claim {number} this term", number=number)
    if number > max_claims:
        return _(
            "Claim {number} this term (over the cap of {max_claims})",
            number=number,
            max_claims=max_claims,
        )
    return _("Claim {number} of {max_claims} this term", number=number, max_claims=max_claims)


def _applied_line(coverage: CoverageContext, split: Split) -> str:
    return f"Insurance applied: {coverage.label} {_MINUS}{format_cents(split.policy_cents)}"


def decide_claim(
    subtotal_cents: int,
    coverage: CoverageContext | None,
    claims_used: int,
    *,
    override: bool = False,
) -> ClaimDecision:
    """Decide whether a new invoice uses a claim, and how the subtotal splits.

    `claims_used` is the number of non-cancelled covered invoices already on the enrollment.
    The approver's own permission is the caller's job; this only checks the policy's gate.
    """
    if claims_used < 0:
        raise ValueError("claims_used can't be negative")
    if subtotal_cents < 0:
        raise ValidationError(_("An invoice subtotal can't be negative."), field="subtotal")
    full_price = Split(policy_cents=0, client_cents=subtotal_cents)
    if coverage is None:
        return ClaimDecision(
            coverage_applied=False,
            split=full_price,
            claim_number=None,
            cap_reached=False,
            override_applied=False,
            audit_lines=("No active insurance coverage on the incident date.",),
        )

    max_claims = coverage.max_claims
    at_cap = max_claims is not None and claims_used >= max_claims
    number = claims_used + 1
    if not at_cap:
        split = split_claim(subtotal_cents, coverage.terms)
        return ClaimDecision(
            coverage_applied=True,
            split=split,
            claim_number=number,
            cap_reached=False,
            override_applied=False,
            audit_lines=(_applied_line(coverage, split), _claim_line(number, max_claims)),
        )

    if not override:
        return ClaimDecision(
            coverage_applied=False,
            split=full_price,
            claim_number=None,
            cap_reached=True,
            override_applied=False,
            audit_lines=(
                f"Claim cap reached ({claims_used} of {max_claims} this term); "
                "billed at full price.",
            ),
        )

    if not coverage.allow_override:
        raise PermissionDenied(_("This policy does not allow claim-cap overrides."))
    split = split_claim(subtotal_cents, coverage.terms)
    return ClaimDecision(
        coverage_applied=True,
        split=split,
        claim_number=number,
        cap_reached=True,
        override_applied=True,
        audit_lines=(
            _applied_line(coverage, split),
            _claim_line(number, max_claims),
            "Claim-cap override applied",
        ),
    )


@dataclass(frozen=True)
class CoverageBadge:
    """What the incident card shows about insurance, as of the incident date."""

    state: Literal["active", "none", "exhausted"]
    label: str
    detail: str


def coverage_badge(
    coverage: CoverageContext | None,
    claims_used: int,
    *,
    own_claim_number: int | None = None,
) -> CoverageBadge:
    """Badge for an incident. `own_claim_number` is set when this incident already used a claim,
    so its own invoice isn't reported as the next one or as exhausting the cap."""
    if coverage is None:
        return CoverageBadge(
            state="none",
            label=_("No Active Coverage"),
            detail=_("The student had no insurance enrollment on the day of the incident."),
        )
    max_claims = coverage.max_claims
    if own_claim_number is not None:
        return CoverageBadge("active", coverage.label, _claim_detail(own_claim_number, max_claims))
    if max_claims is not None and claims_used >= max_claims:
        return CoverageBadge(
            "exhausted",
            coverage.label,
            _("Coverage exhausted ({max_claims} of {max_claims} this term)", max_claims=max_claims),
        )
    return CoverageBadge("active", coverage.label, _claim_detail(claims_used + 1, max_claims))


def in_term(coverage_start: date, coverage_end: date, on: date) -> bool:
    """True when `on` falls inside the term; both ends count."""
    return coverage_start <= on <= coverage_end
