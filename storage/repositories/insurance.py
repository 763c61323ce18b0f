"""Insurance coverage on a day (the device's own plan or the student's enrollment), claims
counted against it, and cap override requests."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.insurance import ClaimKey, CoverageContext, PolicyTerms
from workflows.ports import NewOverrideRequest


class SqlInsuranceRepository(SqlRepository):
    async def coverage_on(
        self, student_id: int, on: date, *, device_id: int | None = None, lock: bool = False
    ) -> CoverageContext | None:
        """The coverage on `on`: the damaged device's own plan when a policy insures it (it
        goes with the device, whoever holds it), else the student's enrollment."""
        if device_id is not None:
            device = await self._device_coverage_on(device_id, on, lock=lock)
            if device is not None:
                return device
        stmt = (
            select(m.InsuranceEnrollment)
            .where(
                m.InsuranceEnrollment.student_id == student_id,
                m.InsuranceEnrollment.status == "active",
                m.InsuranceEnrollment.term_start <= on,
                m.InsuranceEnrollment.term_end >= on,
            )
            .order_by(m.InsuranceEnrollment.term_start.desc(), m.InsuranceEnrollment.id.desc())
            .limit(1)
        )
        if lock and self._for_update:
            stmt = stmt.with_for_update(of=m.InsuranceEnrollment)
        enrollment = (await self.session.execute(stmt)).unique().scalar_one_or_none()
        if enrollment is None:
            return None
        return _coverage_context(
            enrollment.policy,
            term_label=enrollment.term_label,
            term_start=enrollment.term_start,
            term_end=enrollment.term_end,
            enrollment_id=enrollment.id,
        )

    async def _device_coverage_on(
        self, device_id: int, on: date, *, lock: bool
    ) -> CoverageContext | None:
        dc, policy = m.DeviceCoverage, m.InsurancePolicy
        stmt = (
            select(dc, policy)
            .join(
                policy,
                (policy.device_plan.is_not(None))
                & (policy.active.is_(True))
                & (func.lower(dc.plan).startswith(func.lower(policy.device_plan))),
            )
            .where(dc.device_id == device_id, dc.coverage_start <= on, dc.coverage_end >= on)
            .order_by(dc.coverage_start.desc(), dc.id.desc(), policy.id)
            .limit(1)
        )
        if lock and self._for_update:
            # The coverage row is what claims count against: locking it serialises them.
            stmt = stmt.with_for_update(of=dc)
        found = (await self.session.execute(stmt)).first()
        if found is None:
            return None
        coverage, insurer = found
        return _coverage_context(
            insurer,
            term_label=f"{coverage.plan}, {coverage.coverage_start:%Y-%m-%d} to "
            f"{coverage.coverage_end:%Y-%m-%d}",
            term_start=coverage.coverage_start,
            term_end=coverage.coverage_end,
            device_coverage_id=coverage.id,
        )

    async def count_claims(self, key: ClaimKey) -> int:
        inv = m.Invoice
        column = (
            inv.claim_device_coverage_id
            if key.device_coverage_id is not None
            else inv.claim_enrollment_id
        )
        value = key.device_coverage_id if key.device_coverage_id is not None else key.enrollment_id
        stmt = select(func.count(inv.id)).where(column == value, inv.status != "cancelled")
        return await self._int(stmt)

    async def add_override_request(self, request: NewOverrideRequest) -> m.CapOverrideRequest:
        row = m.CapOverrideRequest(**columns(request, requested_at=self._now(), status="pending"))
        return await self._added(row)

    async def override_request(
        self, request_id: int, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        return await self._get(m.CapOverrideRequest, request_id, lock)

    async def _override_for(
        self, incident_id: int, status: str, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        stmt = select(m.CapOverrideRequest).where(
            m.CapOverrideRequest.incident_id == incident_id,
            m.CapOverrideRequest.status == status,
        )
        if status == "approved":
            stmt = stmt.where(m.CapOverrideRequest.invoice_id.is_(None))
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def pending_override_for(
        self, incident_id: int, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        """The incident's waiting request; `lock` takes it as a decision would (first)."""
        return await self._override_for(incident_id, "pending", lock=lock)

    async def approved_override_for(self, incident_id: int) -> m.CapOverrideRequest | None:
        return await self._override_for(incident_id, "approved")


def _coverage_context(
    policy: m.InsurancePolicy,
    *,
    term_label: str,
    term_start: date,
    term_end: date,
    enrollment_id: int | None = None,
    device_coverage_id: int | None = None,
) -> CoverageContext:
    return CoverageContext(
        enrollment_id=enrollment_id,
        device_coverage_id=device_coverage_id,
        policy_id=policy.id,
        policy_name=policy.name,
        term_label=term_label,
        term_start=term_start,
        term_end=term_end,
        terms=PolicyTerms(
            copay_cents=policy.copay_cents,
            coverage_percent=policy.coverage_percent,
            cap_cents=policy.cap_cents,
        ),
        max_claims=policy.max_claims,
        allow_override=policy.allow_override,
    )
