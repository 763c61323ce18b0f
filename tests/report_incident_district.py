"""A small fixed district for the insurance and incident reports, built through the real use
cases, so the figures the reports give can be worked out by hand.

Buildings: Lincoln Middle (Ana Rivera, Ben Cole: grade 7, HP Chromebook 11 G9; Eve Fox: grade 8,
no device) and Washington High (Cara Diaz, Dev Eng: grade 10, Apple iPad (9th gen)).

Repeat-offender rules: Physical Damage at 3 incidents, Screen at 2, in the school year.

Insurance (both policies' term 2025-08-01 to 2026-07-31, label "2025-2026"), enrolled on
2026-01-05 unless said otherwise:
- Device Protection Plan: premium $25.00, co-pay $25.00, at most 2 claims, coverage once the
  premium is paid. Ana (premium paid: active), Ben (premium waived: active), Eve (enrolled
  2026-02-05, premium unpaid: awaiting premium, term from 2025-08-01).
- Basic Plan: premium $40.00, co-pay $10.00, unlimited claims, coverage at enrollment.
  Cara (active, $15.00 of the premium paid), Dev (cancelled, so his premium invoice is too).

Incidents (opened at 15:00 UTC, 09:00 in Chicago, on the day they happened):
  #8  Cara  2026-01-20  physical_damage        closed after 24 h (2026-01-21)
  #1  Ana   2026-02-02  physical_damage,screen  closed after 24 h (02-03); invoice $125 (claim 1:
                                                insurance $100)
  #4  Ben   2026-02-03  screen                  open; invoice $80 (insurance $55), cancelled
  #2  Ana   2026-02-09  physical_damage         closed after 6 h; invoice $45 (claim 2: $20)
  #6  Cara  2026-02-10  water                   closed after 12 h, at 21:00 in Chicago on 02-10
                                                (already 02-11 in UTC); invoice $200 (claim:
                                                $190)
  #3  Ana   2026-02-16  physical_damage,screen  closed after 48 h; trips Physical Damage and
                                                Screen; invoice $90 at the claim cap (no claim)
  #5  Ben   2026-02-20  screen                  closed after 2 h; trips Screen; invoice $125
                                                (claim 1: $100)
  #7  Dev   2026-02-25  lost                    open
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_enrollable_policy, add_staff
from workflows.clock import FixedClock
from workflows.enrollment import EnrollStudent, cancel_enrollment, enroll_student
from workflows.incident_status import IncidentStatus
from workflows.incidents import OpenIncident, change_incident_status, open_incident
from workflows.invoices import (
    CreateInvoice,
    CustomLine,
    cancel_invoice,
    create_invoice_for_incident,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
HP = "HP Chromebook 11 G9"
IPAD = "Apple iPad (9th gen)"
ENROLLED_AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@dataclass
class ReportDistrict:
    students: dict[str, int]  # first name -> id
    devices: dict[str, int]  # first name -> device id
    policies: dict[str, int]  # "protection", "basic"
    incidents: dict[int, int]  # the numbers above -> id


async def _student(
    stores: UnitOfWorkFactory,
    first: str,
    last: str,
    grade: str,
    building_id: int,
    model: str | None,
) -> tuple[int, int | None]:
    async with stores() as store:
        s = store.session
        student = m.Student(
            sis_id=f"S-{first.upper()}",
            first_name=first,
            last_name=last,
            grade=grade,
            building_id=building_id,
        )
        s.add(student)
        await s.flush()
        if model is None:
            await store.commit()
            return student.id, None
        device = m.Device(
            serial=f"SN-{first.upper()}", model=model, building_id=building_id, created_at=T0
        )
        s.add(device)
        await s.flush()
        s.add(m.DeviceAssignment(device_id=device.id, student_id=student.id, assigned_at=T0))
        await store.commit()
        return student.id, device.id


class _Acts:
    """Runs each use case in its own unit of work, at the clock's time."""

    def __init__(self, stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor) -> None:
        self.stores, self.clock, self.actor = stores, clock, actor

    def at(self, when: datetime) -> None:
        self.clock.set(when)

    async def enroll(self, student_id: int, policy_id: int, waiver: str | None = None) -> int:
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            done = await enroll_student(
                ctx, self.actor, EnrollStudent(student_id, policy_id, waiver_reason=waiver)
            )
            await store.commit()
            return done.enrollment.id

    async def premium_invoice(self, enrollment_id: int) -> int:
        async with self.stores() as store:
            invoice = await store.enrollments.premium_invoice(enrollment_id)
            assert invoice is not None
            await store.commit()
            return invoice.id

    async def pay(self, invoice_id: int, cents: int, key: str) -> None:
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            await record_payment(
                ctx, self.actor, RecordPayment(invoice_id, cents, PaymentMethod.CASH, key)
            )
            await store.commit()

    async def cancel_enrollment(self, enrollment_id: int) -> None:
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            await cancel_enrollment(ctx, self.actor, enrollment_id, reason="Moved away")
            await store.commit()

    async def incident(self, device_id: int | None, day: date, *flags: str) -> int:
        assert device_id is not None
        self.at(datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC))
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            opened = await open_incident(
                ctx,
                self.actor,
                OpenIncident(device_id=device_id, occurred_on=day, flags=flags),
            )
            await store.commit()
            return opened.incident.id

    async def close_after(self, incident_id: int, opened_day: date, hours: int) -> None:
        opened = datetime(opened_day.year, opened_day.month, opened_day.day, 15, tzinfo=UTC)
        self.at(opened + timedelta(hours=hours))
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            await change_incident_status(ctx, self.actor, incident_id, IncidentStatus.CLOSED)
            await store.commit()

    async def invoice(self, incident_id: int, cents: int) -> int:
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            created = await create_invoice_for_incident(
                ctx,
                self.actor,
                CreateInvoice(incident_id=incident_id, custom_lines=(CustomLine("Repair", cents),)),
            )
            await store.commit()
            return created.invoice.id

    async def cancel_invoice(self, invoice_id: int) -> None:
        async with self.stores() as store:
            ctx = Context(store=store, clock=self.clock, tz=TZ)
            await cancel_invoice(ctx, self.actor, invoice_id, reason="Entered twice")
            await store.commit()


async def build_report_district(stores: UnitOfWorkFactory, clock: FixedClock) -> ReportDistrict:
    async with stores() as store:
        s = store.session
        lincoln = m.Building(sis_id="B-LIN", name="Lincoln Middle")
        washington = m.Building(sis_id="B-WAS", name="Washington High")
        s.add_all([lincoln, washington])
        await s.flush()
        await s.execute(
            update(m.DistrictSettings).values(
                offender_rules=[
                    {"flag": "physical_damage", "threshold": 3},
                    {"flag": "screen", "threshold": 2},
                ]
            )
        )
        lin, was = lincoln.id, washington.id
        await store.commit()
    students: dict[str, int] = {}
    devices: dict[str, int] = {}
    for first, last, grade, building, model in (
        ("Ana", "Rivera", "7", lin, HP),
        ("Ben", "Cole", "7", lin, HP),
        ("Eve", "Fox", "8", lin, None),
        ("Cara", "Diaz", "10", was, IPAD),
        ("Dev", "Eng", "10", was, IPAD),
    ):
        students[first], device = await _student(stores, first, last, grade, building, model)
        if device is not None:
            devices[first] = device
    protection = await add_enrollable_policy(stores, premium_cents=2500, copay_cents=2500)
    basic = await add_enrollable_policy(
        stores,
        name="Basic Plan",
        premium_cents=4000,
        copay_cents=1000,
        coverage_starts="immediately",
    )
    async with stores() as store:
        await store.session.execute(
            update(m.InsurancePolicy).where(m.InsurancePolicy.id == protection).values(max_claims=2)
        )
        await store.commit()
    admin = await add_staff(stores, "SuperAdmin", "admin@district.org")
    act = _Acts(stores, clock, admin)

    act.at(ENROLLED_AT)
    ana = await act.enroll(students["Ana"], protection)
    await act.pay(await act.premium_invoice(ana), 2500, "premium-ana")
    await act.enroll(students["Ben"], protection, waiver="Hardship")
    cara = await act.enroll(students["Cara"], basic)
    await act.pay(await act.premium_invoice(cara), 1500, "premium-cara")
    dev = await act.enroll(students["Dev"], basic)
    await act.cancel_enrollment(dev)

    incidents: dict[int, int] = {}
    incidents[8] = await act.incident(devices["Cara"], date(2026, 1, 20), "physical_damage")
    await act.close_after(incidents[8], date(2026, 1, 20), 24)

    incidents[1] = await act.incident(devices["Ana"], date(2026, 2, 2), "physical_damage", "screen")
    await act.invoice(incidents[1], 12500)
    await act.close_after(incidents[1], date(2026, 2, 2), 24)

    incidents[4] = await act.incident(devices["Ben"], date(2026, 2, 3), "screen")
    await act.cancel_invoice(await act.invoice(incidents[4], 8000))

    act.at(datetime(2026, 2, 5, 15, tzinfo=UTC))
    await act.enroll(students["Eve"], protection)

    incidents[2] = await act.incident(devices["Ana"], date(2026, 2, 9), "physical_damage")
    await act.invoice(incidents[2], 4500)
    await act.close_after(incidents[2], date(2026, 2, 9), 6)

    incidents[6] = await act.incident(devices["Cara"], date(2026, 2, 10), "water")
    await act.invoice(incidents[6], 20000)
    await act.close_after(incidents[6], date(2026, 2, 10), 12)

    incidents[3] = await act.incident(
        devices["Ana"], date(2026, 2, 16), "physical_damage", "screen"
    )
    await act.invoice(incidents[3], 9000)
    await act.close_after(incidents[3], date(2026, 2, 16), 48)

    incidents[5] = await act.incident(devices["Ben"], date(2026, 2, 20), "screen")
    await act.invoice(incidents[5], 12500)
    await act.close_after(incidents[5], date(2026, 2, 20), 2)

    incidents[7] = await act.incident(devices["Dev"], date(2026, 2, 25), "lost")
    return ReportDistrict(students, devices, {"protection": protection, "basic": basic}, incidents)
