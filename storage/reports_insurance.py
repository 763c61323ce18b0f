"""Insurance reports: claims utilization per enrollment and the enrollment summary per policy.

Both select the enrollments whose term overlaps the range. A claim is a non-cancelled invoice
attached to an enrollment (claim_enrollment_id); what insurance absorbed is its insurance_cents.
A device's own plan (AppleCare+ insured by a policy with a device plan) is insurance too: its
claims count against the device's coverage (claim_device_coverage_id), so both reports add the
device plans with claims whose coverage overlaps the range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import aliased

from storage import models as m
from storage.report_base import ReportQuery, report
from workflows.enrollment import EnrollmentStatus
from workflows.i18n import N_, _, ngettext
from workflows.invoices import InvoiceKind, InvoiceStatus
from workflows.money import format_cents
from workflows.reports import Audience, ReportResult, ReportSpec, percent

CLAIMS_UTILIZATION = ReportSpec(
    name="claims-utilization",
    title=N_("Insurance Claims Utilization"),
    description=N_(
        "Per enrollment whose term overlaps the range, and per device plan with "
        "claims: claims used of those allowed and the dollars insurance absorbed."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        "student",
        "sis_id",
        "building",
        "grade",
        "policy",
        "term",
        "term_start",
        "term_end",
        "status",
        "claims_used",
        "claims_allowed",
        "percent_used",
        "absorbed",
    ),
    money=frozenset({"absorbed"}),
    range_means="term overlaps",
)

ENROLLMENT_SUMMARY = ReportSpec(
    name="enrollment-summary",
    title=N_("Insurance Enrollment Summary"),
    description=N_(
        "Per policy and term overlapping the range: enrollments by status, new and "
        "expiring enrollments, premiums, claims and the dollars insurance absorbed (a device "
        "plan's claims on a row of their own)."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        "policy",
        "term",
        "enrollments",
        "active",
        "awaiting_premium",
        "cancelled",
        "enrolled_in_range",
        "expiring_in_range",
        "premiums_billed",
        "premiums_collected",
        "premiums_waived",
        "premiums_outstanding",
        "claims",
        "absorbed",
    ),
    money=frozenset(
        {
            "premiums_billed",
            "premiums_collected",
            "premiums_waived",
            "premiums_outstanding",
            "absorbed",
        }
    ),
    range_means="term overlaps",
)


def _overlapping(q: ReportQuery) -> list[ColumnElement[bool]]:
    e = m.InsuranceEnrollment
    return [e.term_start <= q.filters.date_to, e.term_end >= q.filters.date_from]


def _claims(q: ReportQuery, counted_against: Any = m.Invoice.claim_enrollment_id) -> Any:
    """Claims per what they count against (an enrollment, or a device coverage): count, dollars
    absorbed and the latest claim's invoice (device models filter the claims)."""
    inv = m.Invoice
    return (
        select(
            counted_against.label("key"),
            func.count(inv.id).label("claims"),
            func.sum(inv.insurance_cents).label("absorbed"),
            func.max(inv.id).label("last_invoice_id"),
        )
        .where(
            counted_against.is_not(None),
            inv.status != InvoiceStatus.CANCELLED.value,
            *q.device_scope(inv.device_id),
        )
        .group_by(counted_against)
        .subquery()
    )


def _utilization_row(row: Sequence[Any], status: str) -> tuple[Any, ...]:
    """A claims utilization row from (student, sis id, building, grade, policy, term, term start,
    term end, status, claims used, claims allowed, cents absorbed), with `status` in words."""
    student, sis, building, grade, policy, term, t0, t1, _status, n, cap, cents = row
    n, cents = int(n), int(cents)
    return (
        str(student),
        str(sis),
        building or "",
        grade or "",
        str(policy),
        str(term),
        t0,
        t1,
        status,
        n,
        cap,  # None (blank) when the policy allows unlimited claims
        None if cap is None else percent(n, int(cap)),
        cents,
    )


# What the status column says for a device's own plan: it has no enrollment status.
DEVICE_PLAN = "device plan"


def _insurer(coverage: Any) -> Any:
    """The policy that insures a device coverage: the first whose device plan names it, as
    pricing chooses (storage.repositories.insurance). An alias, so that it doesn't correlate
    with the policy the outer query joins."""
    pol = aliased(m.InsurancePolicy)
    return (
        select(pol.id)
        .where(
            pol.device_plan.is_not(None),
            func.lower(coverage.plan).startswith(func.lower(pol.device_plan)),
        )
        .order_by(pol.id)
        .limit(1)
        .scalar_subquery()
    )


def _student_and_policy() -> tuple[Any, ...]:
    """A claims utilization row's first columns: the student (name, SIS id, building, grade)
    and the policy's name."""
    st = m.Student
    return (
        st.last_name + ", " + st.first_name,
        st.sis_id,
        m.Building.name,
        st.grade,
        m.InsurancePolicy.name,
    )


async def _device_plan_rows(q: ReportQuery) -> list[tuple[Any, ...]]:
    """Claims utilization rows for device plans with claims, named by the student of the
    latest claim (a device changes hands; its plan's claims don't)."""
    dc, pol, st, dev = m.DeviceCoverage, m.InsurancePolicy, m.Student, m.Device
    last = aliased(m.Invoice)
    claims = _claims(q, m.Invoice.claim_device_coverage_id)
    listing = (
        select(
            *_student_and_policy(),
            dc.plan + " on " + dev.serial,
            dc.coverage_start,
            dc.coverage_end,
            literal(DEVICE_PLAN),
            claims.c.claims,
            pol.max_claims,
            claims.c.absorbed,
        )
        .select_from(claims)
        .join(dc, dc.id == claims.c.key)
        .join(dev, dev.id == dc.device_id)
        .join(pol, pol.id == _insurer(dc))
        .join(last, last.id == claims.c.last_invoice_id)
        .join(st, st.id == last.student_id)
        .outerjoin(m.Building, m.Building.id == st.building_id)
        .where(
            dc.coverage_start <= q.filters.date_to,
            dc.coverage_end >= q.filters.date_from,
            *q.student_scope(last.student_id),
        )
        .order_by(pol.name, dc.coverage_start, dev.serial, dc.id)
    )
    return [_utilization_row(row, DEVICE_PLAN) for row in (await q.session.execute(listing)).all()]


@report(CLAIMS_UTILIZATION)
async def claims_utilization(q: ReportQuery) -> ReportResult:
    e, st, pol = m.InsuranceEnrollment, m.Student, m.InsurancePolicy
    claims = _claims(q)
    used = func.coalesce(claims.c.claims, 0)
    absorbed = func.coalesce(claims.c.absorbed, 0)
    where = [*_overlapping(q), *q.student_scope(e.student_id)]
    if q.filters.models:
        # With a model chosen, only enrollments with a claim on that model are listed.
        where.append(claims.c.claims.is_not(None))
    listing = (
        select(
            *_student_and_policy(),
            e.term_label,
            e.term_start,
            e.term_end,
            e.status.label("status"),
            used,
            pol.max_claims,
            absorbed,
        )
        .select_from(e)
        .join(st, st.id == e.student_id)
        .join(pol, pol.id == e.policy_id)
        .outerjoin(m.Building, m.Building.id == st.building_id)
        .outerjoin(claims, claims.c.key == e.id)
        .where(*where)
        .order_by(pol.name, e.term_start, st.last_name, st.first_name, e.id)
    )
    rows = [
        _utilization_row(row, EnrollmentStatus(row.status).label)
        for row in (await q.session.execute(listing)).all()
    ]
    enrollments = len(rows)
    plans = await _device_plan_rows(q)
    rows += plans
    claims_used = sum(r[9] for r in rows)
    absorbed_total = sum(r[12] for r in rows)
    at_limit = sum(1 for r in rows if r[10] is not None and r[9] >= r[10])
    return q.result(
        rows,
        [
            _(
                "{enrollments} with a term in the range ({filters}) and {plans} with claims.",
                enrollments=ngettext("{n} enrollment", "{n} enrollments", enrollments),
                filters=q.filters.describe(),
                plans=ngettext("{n} device plan", "{n} device plans", len(plans)),
            )
            if plans
            else ngettext(
                "{n} enrollment with a term in the range ({filters}).",
                "{n} enrollments with a term in the range ({filters}).",
                enrollments,
                filters=q.filters.describe(),
            ),
            ngettext(
                "{n} claim used; insurance absorbed {absorbed}. {at_limit} at their claim limit.",
                "{n} claims used; insurance absorbed {absorbed}. {at_limit} at their claim limit.",
                claims_used,
                absorbed=format_cents(absorbed_total),
                at_limit=at_limit,
            ),
        ],
        totals={
            "enrollments": enrollments,
            "device_plans": len(plans),
            "claims": claims_used,
            "absorbed": absorbed_total,
            "at_limit": at_limit,
        },
    )


DEVICE_PLANS_TERM = "device plans"


async def _device_plan_totals(q: ReportQuery) -> list[tuple[str, int, int]]:
    """(policy, claims, dollars absorbed) per policy with a device plan, counting the claims on
    device coverages that overlap the range (the claim's student in scope)."""
    inv, dc, pol = m.Invoice, m.DeviceCoverage, m.InsurancePolicy
    stmt = (
        select(pol.name, func.count(inv.id), func.coalesce(func.sum(inv.insurance_cents), 0))
        .select_from(inv)
        .join(dc, dc.id == inv.claim_device_coverage_id)
        .join(pol, pol.id == _insurer(dc))
        .where(
            inv.status != InvoiceStatus.CANCELLED.value,
            dc.coverage_start <= q.filters.date_to,
            dc.coverage_end >= q.filters.date_from,
            *q.scope(inv.student_id, inv.device_id),
        )
        .group_by(pol.id, pol.name)
        .order_by(pol.name, pol.id)
    )
    return [(str(n), int(c), int(a)) for n, c, a in (await q.session.execute(stmt)).all()]


@report(ENROLLMENT_SUMMARY)
async def enrollment_summary(q: ReportQuery) -> ReportResult:
    e, pol, inv = m.InsuranceEnrollment, m.InsurancePolicy, m.Invoice
    claims = _claims(q)
    live = inv.status != InvoiceStatus.CANCELLED.value
    # Premiums per enrollment (a cancelled premium invoice no longer counts as billed).
    premiums = (
        select(
            inv.premium_enrollment_id.label("enrollment_id"),
            func.sum(inv.subtotal_cents).label("billed"),
            func.sum(inv.paid_cents - inv.refunded_cents).label("collected"),
            func.sum(inv.waived_cents).label("waived"),
            func.sum(m.invoice_balance()).label("outstanding"),
        )
        .where(
            inv.kind == InvoiceKind.PREMIUM.value,
            inv.premium_enrollment_id.is_not(None),
            live,
        )
        .group_by(inv.premium_enrollment_id)
        .subquery()
    )

    def count_status(status: EnrollmentStatus) -> ColumnElement[Any]:
        return func.sum(case((e.status == status.value, 1), else_=0))

    def total(column: Any) -> ColumnElement[Any]:
        return func.coalesce(func.sum(column), 0)

    not_cancelled = e.status != EnrollmentStatus.CANCELLED.value
    enrolled = [e.created_at >= q.start, e.created_at < q.end]
    expiring = [*q.day_in_range(e.term_end), not_cancelled]
    where = [*_overlapping(q), *q.scope(e.student_id)]
    listing = (
        select(
            pol.name,
            e.term_label,
            func.count(e.id),
            count_status(EnrollmentStatus.ACTIVE),
            count_status(EnrollmentStatus.PENDING_PAYMENT),
            count_status(EnrollmentStatus.CANCELLED),
            func.sum(case((enrolled[0] & enrolled[1], 1), else_=0)),
            func.sum(case((expiring[0] & expiring[1] & expiring[2], 1), else_=0)),
            total(premiums.c.billed),
            total(premiums.c.collected),
            total(premiums.c.waived),
            total(premiums.c.outstanding),
            total(claims.c.claims),
            total(claims.c.absorbed),
        )
        .select_from(e)
        .join(pol, pol.id == e.policy_id)
        .outerjoin(premiums, premiums.c.enrollment_id == e.id)
        .outerjoin(claims, claims.c.key == e.id)
        .where(*where)
        .group_by(pol.id, pol.name, e.term_label)
        .order_by(pol.name, e.term_label, pol.id)
    )
    rows: list[tuple[Any, ...]] = []
    counted: list[list[int]] = []
    found: list[Sequence[Any]] = list((await q.session.execute(listing)).all())
    # Device plans have no enrollments or premiums: their rows carry claims and dollars only.
    no_enrollments = [0] * (len(ENROLLMENT_SUMMARY.headers) - 4)
    for policy, claim_count, absorbed in await _device_plan_totals(q):
        found.append((policy, DEVICE_PLANS_TERM, *no_enrollments, claim_count, absorbed))
    for name, term, *figures in found:
        numbers = [int(v) for v in figures]
        counted.append(numbers)
        rows.append((str(name), str(term), *numbers))
    keys = ENROLLMENT_SUMMARY.headers[2:]
    totals = {k: sum(n[i] for n in counted) for i, k in enumerate(keys)}
    return q.result(
        rows,
        [
            _(
                "{enrollments} in {policies} with a term in the range ({filters}): "
                "{active} active, {awaiting} awaiting premium, {cancelled} cancelled.",
                enrollments=ngettext("{n} enrollment", "{n} enrollments", totals["enrollments"]),
                policies=ngettext("{n} policy", "{n} policies", len(rows)),
                filters=q.filters.describe(),
                active=totals["active"],
                awaiting=totals["awaiting_premium"],
                cancelled=totals["cancelled"],
            ),
            _(
                "Premiums billed {billed}, collected {collected}, waived {waived}. "
                "{claims} claims; insurance absorbed {absorbed}.",
                billed=format_cents(totals["premiums_billed"]),
                collected=format_cents(totals["premiums_collected"]),
                waived=format_cents(totals["premiums_waived"]),
                claims=totals["claims"],
                absorbed=format_cents(totals["absorbed"]),
            ),
        ],
        totals=totals,
    )
