"""Insurance enrollment and premiums on SQLite and PostgreSQL: coverage waits for the premium,
waivers, the window, idempotency, reminders, the CSV imports, and the money split after each."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from services.enrollment_import import Outcome, import_enrollments
from storage import models as m
from storage.csv_in import CsvFileError
from storage.device_coverage import coverage_for_device, import_coverage
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_enrollable_policy, add_staff
from workflows.clock import FixedClock
from workflows.enrollment import (
    EnrollStudent,
    cancel_enrollment,
    enroll_student,
    send_expiry_reminders,
)
from workflows.errors import NotFound, PermissionDenied, ValidationError
from workflows.ledger import split_money
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
TODAY = date(2026, 3, 2)  # the clock fixture's day in the district


def ctx_for(store, clock: FixedClock) -> Context:  # type: ignore[no-untyped-def]
    return Context(store=store, clock=clock, tz=TZ)


async def assert_ledger_holds(stores: UnitOfWorkFactory) -> None:
    async with stores() as store:
        invoices = (await store.session.execute(select(m.Invoice))).scalars().all()
        await store.commit()
    for invoice in invoices:
        split = split_money(invoice)
        assert split.adds_up(), (invoice.number, split)


async def _count(stores: UnitOfWorkFactory, model: type) -> int:
    async with stores() as store:
        result = int(
            (await store.session.execute(select(func.count()).select_from(model))).scalar()
        )
        await store.commit()
        return result


async def _notices(stores: UnitOfWorkFactory, template: str) -> list[m.Notice]:
    async with stores() as store:
        stmt = select(m.Notice).where(m.Notice.template == template).order_by(m.Notice.id)
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


async def _enroll(stores, clock, actor: Actor, cmd: EnrollStudent):  # type: ignore[no-untyped-def]
    async with stores() as store:
        result = await enroll_student(ctx_for(store, clock), actor, cmd)
        await store.commit()
        return result


async def test_on_payment_coverage_starts_the_day_the_premium_is_paid(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    done = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert done.created and done.enrollment.status == "pending_payment"
    assert done.invoice is not None and done.invoice.kind == "premium"
    assert done.invoice.total_cents == 2500 and done.invoice.premium_enrollment_id
    assert done.notices == ("invoice_issued",)
    async with stores() as store:
        assert await store.insurance.coverage_on(d.student_id, TODAY) is None  # not paid yet
        await store.commit()

    clock.advance(days=3)  # paid on March 5
    async with stores() as store:
        paid = await record_payment(
            ctx_for(store, clock),
            clerk,
            RecordPayment(done.invoice.id, 2500, PaymentMethod.CASH, "premium-cash"),
        )
        assert paid.invoice.status == "paid"
        await store.commit()
    async with stores() as store:
        enrollment = await store.enrollments.get(done.enrollment.id)
        assert enrollment is not None and enrollment.status == "active"
        assert enrollment.activated_at == clock.now()
        assert enrollment.term_start == date(2026, 3, 5)
        # An incident from before the premium was paid is not covered; from that day on it is.
        assert await store.insurance.coverage_on(d.student_id, date(2026, 3, 4)) is None
        covered = await store.insurance.coverage_on(d.student_id, date(2026, 3, 5))
        assert covered is not None and covered.enrollment_id == enrollment.id
        await store.commit()
    [confirmation] = await _notices(stores, "enrollment_confirmation")
    assert confirmation.invoice_id == done.invoice.id
    assert confirmation.context["policy_name"] == "Device Protection Plan"
    assert confirmation.context["premium_waived"] is False
    # Recording the same payment again changes nothing and queues nothing.
    async with stores() as store:
        again = await record_payment(
            ctx_for(store, clock),
            clerk,
            RecordPayment(done.invoice.id, 2500, PaymentMethod.CASH, "premium-cash"),
        )
        assert not again.created
        await store.commit()
    assert len(await _notices(stores, "enrollment_confirmation")) == 1
    await assert_ledger_holds(stores)


async def test_partial_premium_keeps_the_enrollment_waiting(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    done = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert done.invoice is not None
    async with stores() as store:
        await record_payment(
            ctx_for(store, clock),
            clerk,
            RecordPayment(done.invoice.id, 1000, PaymentMethod.CASH, "part-1"),
        )
        await store.commit()
    async with stores() as store:
        enrollment = await store.enrollments.get(done.enrollment.id)
        assert enrollment is not None and enrollment.status == "pending_payment"
        await store.commit()
    await assert_ledger_holds(stores)


async def test_immediately_is_covered_at_once(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores, coverage_starts="immediately")
    clerk = await add_staff(stores, "Billing Clerk")
    done = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert done.enrollment.status == "active"
    assert done.invoice is not None and done.invoice.status == "unpaid"
    assert set(done.notices) == {"invoice_issued", "enrollment_confirmation"}
    async with stores() as store:
        assert await store.insurance.coverage_on(d.student_id, TODAY) is not None
        # Coverage never reaches back before the enrollment.
        assert await store.insurance.coverage_on(d.student_id, TODAY - timedelta(days=1)) is None
        await store.commit()
    await assert_ledger_holds(stores)


async def test_waived_premium_is_active_without_payment(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    done = await _enroll(
        stores,
        clock,
        clerk,
        EnrollStudent(d.student_id, policy_id, waiver_reason="  Free lunch  eligible "),
    )
    assert done.enrollment.status == "active" and done.premium_waived
    assert done.enrollment.premium_waiver_reason == "Free lunch eligible"
    assert done.notices == ("enrollment_confirmation",)  # no bill to pay, so no invoice email
    async with stores() as store:
        invoice = await store.invoices.get(done.invoice.id)  # type: ignore[union-attr]
        assert invoice is not None
        assert (invoice.status, invoice.waived_cents, invoice.paid_cents) == ("paid", 2500, 0)
        assert split_money(invoice).waived == 2500
        [adjustment] = await store.payments.adjustments_for(invoice.id)
        assert adjustment.kind == "waiver" and "Free lunch eligible" in adjustment.reason
        assert await store.insurance.coverage_on(d.student_id, TODAY) is not None
        await store.commit()
    [confirmation] = await _notices(stores, "enrollment_confirmation")
    assert confirmation.context["premium_waived"] is True
    assert await _notices(stores, "invoice_issued") == []
    await assert_ledger_holds(stores)


async def test_a_waiver_needs_waive_charges(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    admin = await add_staff(stores, "Admin")
    async with stores() as store:
        role = (
            await store.session.execute(select(m.Role).where(m.Role.name == "Billing Clerk"))
        ).scalar_one()
        role.permissions = [p for p in role.permissions if p != "waive_charges"]
        await store.commit()
    clerk = await add_staff(stores, "Billing Clerk")
    with pytest.raises(PermissionDenied):
        await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id, "lunch"))
    assert await _count(stores, m.InsuranceEnrollment) == 0
    done = await _enroll(stores, clock, admin, EnrollStudent(d.student_id, policy_id, "lunch"))
    assert done.created


async def test_window_closed_and_other_refusals_change_nothing(stores, clock) -> None:
    d = await add_district(stores)
    closed = await add_enrollable_policy(
        stores, name="Closed Plan", window=(date(2025, 7, 1), date(2025, 9, 30))
    )
    later = await add_enrollable_policy(
        stores,
        name="Next Year",
        window=(date(2026, 5, 1), None),
        term=(date(2026, 8, 1), date(2027, 7, 31)),
    )
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")
    with pytest.raises(ValidationError, match="closed on Sep 30, 2025"):
        await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, closed))
    with pytest.raises(ValidationError, match="opens on May 1, 2026"):
        await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, later))
    with pytest.raises(PermissionDenied):
        await _enroll(stores, clock, tech, EnrollStudent(d.student_id, closed))
    with pytest.raises(NotFound):
        await _enroll(stores, clock, clerk, EnrollStudent(999_999, closed))
    with pytest.raises(NotFound):
        await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, 999_999))
    assert await _count(stores, m.InsuranceEnrollment) == 0
    assert await _count(stores, m.Invoice) == 0


async def test_re_enrolling_returns_the_live_enrollment(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    first = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    again = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert not again.created and again.enrollment.id == first.enrollment.id
    assert again.invoice is not None and again.invoice.id == first.invoice.id  # type: ignore[union-attr]
    assert await _count(stores, m.InsuranceEnrollment) == 1
    assert await _count(stores, m.Invoice) == 1
    # Cancelling frees the term (and cancels the unpaid premium); a new enrollment may follow.
    async with stores() as store:
        await cancel_enrollment(
            ctx_for(store, clock), clerk, first.enrollment.id, reason="family declined"
        )
        await store.commit()
    async with stores() as store:
        invoice = await store.invoices.get(first.invoice.id)  # type: ignore[union-attr]
        assert invoice is not None and invoice.status == "cancelled"
        await store.commit()
    third = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert third.created and third.enrollment.id != first.enrollment.id
    await assert_ledger_holds(stores)


async def test_concurrent_enrollments_make_one(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    results = await asyncio.gather(
        *(_enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id)) for _ in range(3))
    )
    assert sum(r.created for r in results) == 1
    assert len({r.enrollment.id for r in results}) == 1
    assert await _count(stores, m.InsuranceEnrollment) == 1
    assert await _count(stores, m.Invoice) == 1
    await assert_ledger_holds(stores)


async def test_expiry_reminder_goes_once_per_term(stores, clock) -> None:
    d = await add_district(stores)
    policy_id = await add_enrollable_policy(
        stores, coverage_starts="immediately", expiry_reminder_days=30
    )
    free = await add_enrollable_policy(
        stores, name="Free Plan", premium_cents=0, expiry_reminder_days=30
    )
    clerk = await add_staff(stores, "Billing Clerk")
    await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, free))
    system = Actor.system()
    async with stores() as store:
        early = await send_expiry_reminders(ctx_for(store, clock), system, date(2026, 6, 30))
        await store.commit()
    assert (early.queued, early.no_invoice) == (0, 0)  # 31 days before the end
    async with stores() as store:
        totals = await send_expiry_reminders(ctx_for(store, clock), system, date(2026, 7, 1))
        await store.commit()
    assert (totals.queued, totals.no_invoice) == (1, 1)  # the free plan has no invoice to email
    async with stores() as store:
        again = await send_expiry_reminders(ctx_for(store, clock), system, date(2026, 7, 2))
        await store.commit()
    assert again.queued == 0
    [notice] = await _notices(stores, "coverage_expiring")
    assert notice.context["term_end"] == "2026-07-31" and notice.context["days_left"] == 30


# --- imports ------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def _add_students(stores: UnitOfWorkFactory, household_id: int, *sis_ids: str) -> None:
    async with stores() as store:
        for sis in sis_ids:
            store.session.add(
                m.Student(sis_id=sis, first_name="Kid", last_name=sis, household_id=household_id)
            )
        await store.commit()


async def test_enrollment_import_validates_then_applies_once(stores, clock, tmp_path) -> None:
    d = await add_district(stores)
    await _add_students(stores, d.household_id, "S2", "S3")
    plan = await add_enrollable_policy(stores)
    await add_enrollable_policy(
        stores, name="Closed Plan", window=(date(2025, 7, 1), date(2025, 9, 30))
    )
    clerk = await add_staff(stores, "Billing Clerk")
    csv_file = _write(
        tmp_path / "enroll.csv",
        "student_id,policy,waiver_reason\n"
        "S1,Device Protection Plan,\n"
        "S2,device protection plan,Free lunch\n"
        "S404,Device Protection Plan,\n"
        "S3,No Such Plan,\n"
        "S1,Device Protection Plan,\n"
        "S3,Closed Plan,\n"
        ",Device Protection Plan,\n"
        f"S3,{plan},\n",
    )
    preview = await import_enrollments(stores, clock, TZ, clerk, csv_file, apply=False)
    assert not preview.ok
    outcomes = [(r.line, r.outcome, r.reason) for r in preview.rows]
    assert outcomes[0][:2] == (2, Outcome.WOULD_ENROLL)
    assert outcomes[1][:2] == (3, Outcome.WOULD_ENROLL) and "waived" in outcomes[1][2]
    assert outcomes[2] == (4, Outcome.ERROR, "unknown student S404")
    assert outcomes[3] == (5, Outcome.ERROR, "unknown policy No Such Plan")
    assert outcomes[4] == (6, Outcome.ERROR, "duplicate of line 2")
    assert outcomes[5][:2] == (7, Outcome.ERROR) and "closed" in outcomes[5][2]
    assert outcomes[6] == (8, Outcome.ERROR, "student_id is empty")
    assert outcomes[7][:2] == (9, Outcome.WOULD_ENROLL)  # the policy by its number
    # The validate step wrote nothing at all.
    assert await _count(stores, m.InsuranceEnrollment) == 0
    assert await _count(stores, m.Invoice) == 0
    assert await _count(stores, m.ActivityEntry) == 0

    applied = await import_enrollments(stores, clock, TZ, clerk, csv_file, apply=True)
    assert [r.line for r in applied.rows if r.outcome is Outcome.ENROLLED] == [2, 3, 9]
    assert [r.line for r in applied.bad] == [4, 5, 6, 7, 8]
    async with stores() as store:
        sources = (await store.session.execute(select(m.InsuranceEnrollment.source))).scalars()
        assert set(sources) == {"import"}
        await store.commit()
    assert await _count(stores, m.InsuranceEnrollment) == 3
    rerun = await import_enrollments(stores, clock, TZ, clerk, csv_file, apply=True)
    assert [r.line for r in rerun.rows if r.outcome is Outcome.ALREADY] == [2, 3, 9]
    assert await _count(stores, m.InsuranceEnrollment) == 3
    assert await _count(stores, m.Invoice) == 3
    await assert_ledger_holds(stores)


async def test_enrollment_import_refuses_a_missing_column(stores, clock, tmp_path) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    csv_file = _write(tmp_path / "bad.csv", "student,plan\nS1,Plan\n")
    with pytest.raises(CsvFileError, match="bad.csv has no column student_id, policy"):
        await import_enrollments(stores, clock, TZ, clerk, csv_file, apply=True)
    tech = await add_staff(stores, "Technician")
    with pytest.raises(PermissionDenied):
        await import_enrollments(stores, clock, TZ, tech, csv_file, apply=False)


async def test_applecare_import_is_rerun_safe(stores, clock, tmp_path) -> None:
    d = await add_district(stores)
    csv_file = _write(
        tmp_path / "applecare.csv",
        "Serial Number,Coverage Description,Coverage Start Date,Coverage End Date\n"
        "5cd1234xyz ,AppleCare+ for Schools,2025-09-01,2027-08-31\n"
        "NOPE999,AppleCare+ for Schools,2025-09-01,2027-08-31\n"
        "5CD1234XYZ,AppleCare+ for Schools,09/01/2025,08/31/2027\n"
        "5CD1234XYZ,Accidental Damage,2027-01-01,2026-01-01\n"
        "5CD1234XYZ,Accidental Damage,soon,2026-01-01\n",
    )
    async with stores() as store:
        preview = await import_coverage(store.session, csv_file, clock.now(), apply=False)
        await store.commit()
    assert preview.added == 1 and await _count(stores, m.DeviceCoverage) == 0
    async with stores() as store:
        result = await import_coverage(store.session, csv_file, clock.now())
        await store.commit()
    assert (result.added, result.updated, result.unchanged) == (1, 0, 0)
    assert [(p.line, p.reason) for p in result.problems] == [
        (3, "unknown serial NOPE999"),
        (4, "duplicate of line 2"),
        (5, "coverage ends before it starts"),
        (6, "coverage start 'soon' is not a date (YYYY-MM-DD)"),
    ]
    async with stores() as store:
        again = await import_coverage(store.session, csv_file, clock.now())
        await store.commit()
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    async with stores() as store:
        [coverage] = await coverage_for_device(store.session, d.device_id, TODAY)
        assert (coverage.provider, coverage.plan) == ("Apple", "AppleCare+ for Schools")
        assert coverage.coverage_end == date(2027, 8, 31)
        assert await coverage_for_device(store.session, d.device_id, date(2027, 9, 1)) == []
        await store.commit()


async def test_waiving_a_premium_through_the_waive_flow_starts_coverage(stores, clock) -> None:
    from workflows.waivers import RequestWaiver, request_waiver

    d = await add_district(stores)
    policy_id = await add_enrollable_policy(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    done = await _enroll(stores, clock, clerk, EnrollStudent(d.student_id, policy_id))
    assert done.invoice is not None and done.enrollment.status == "pending_payment"
    async with stores() as store:
        outcome = await request_waiver(
            ctx_for(store, clock),
            clerk,
            RequestWaiver(done.invoice.id, 2500, "Free lunch eligible", "waive-premium"),
        )
        assert outcome.invoice.status == "paid"
        await store.commit()
    async with stores() as store:
        enrollment = await store.enrollments.get(done.enrollment.id)
        assert enrollment is not None and enrollment.status == "active"
        assert await store.insurance.coverage_on(d.student_id, TODAY) is not None
        await store.commit()
    assert len(await _notices(stores, "enrollment_confirmation")) == 1
    await assert_ledger_holds(stores)
