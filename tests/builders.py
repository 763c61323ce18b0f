"""Small helpers that put a district's rows in the store for tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select

from storage import models as m
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from workflows.permissions import Actor

T0 = datetime(2024, 7, 1, tzinfo=UTC)  # devices were issued well before any test incident


@dataclass
class District:
    building_id: int
    household_id: int
    student_id: int
    guardian_id: int
    device_id: int
    fee_screen_id: int
    fee_keyboard_id: int
    fee_charger_id: int


async def add_district(stores: UnitOfWorkFactory) -> District:
    async with stores() as store:
        s = store.session
        building = m.Building(sis_id="B1", name="Lincoln Middle")
        household = m.Household(name="Rivera family")
        s.add_all([building, household])
        await s.flush()
        student = m.Student(
            sis_id="S1",
            first_name="Ana",
            last_name="Rivera",
            grade="7",
            building_id=building.id,
            household_id=household.id,
        )
        guardian = m.Guardian(
            sis_id="G1",
            first_name="Maria",
            last_name="Rivera",
            email="maria@example.org",
            household_id=household.id,
        )
        device = m.Device(
            serial="5CD1234XYZ",
            asset_tag="LMS-0001",
            model="HP Chromebook 11 G9",
            building_id=building.id,
            created_at=T0,
        )
        fees = [
            m.FeeItem(code="screen", name="Screen replacement", kind="damage", price_cents=12500),
            m.FeeItem(code="keyboard", name="Keyboard", kind="damage", price_cents=4500),
            m.FeeItem(code="charger", name="Lost charger", kind="damage", price_cents=3000),
        ]
        s.add_all([student, guardian, device, *fees])
        await s.flush()
        s.add(m.Guardianship(guardian_id=guardian.id, student_id=student.id))
        s.add(m.DeviceAssignment(device_id=device.id, student_id=student.id, assigned_at=T0))
        await store.commit()
        return District(
            building.id,
            household.id,
            student.id,
            guardian.id,
            device.id,
            fees[0].id,
            fees[1].id,
            fees[2].id,
        )


async def add_student_with_device(
    stores: UnitOfWorkFactory, *, sis_id: str, serial: str, household_id: int | None = None
) -> tuple[int, int]:
    async with stores() as store:
        s = store.session
        student = m.Student(
            sis_id=sis_id,
            first_name="Student",
            last_name=sis_id,
            grade="8",
            household_id=household_id,
        )
        device = m.Device(serial=serial, model="HP Chromebook 11 G9", created_at=T0)
        s.add_all([student, device])
        await s.flush()
        s.add(m.DeviceAssignment(device_id=device.id, student_id=student.id, assigned_at=T0))
        await store.commit()
        return student.id, device.id


async def add_policy(
    stores: UnitOfWorkFactory,
    student_id: int,
    *,
    name: str = "District Plan",
    copay_cents: int | None = None,
    coverage_percent: str | None = None,
    cap_cents: int | None = None,
    max_claims: int | None = None,
    allow_override: bool = False,
    term: tuple[date, date] = (date(2025, 7, 1), date(2026, 6, 30)),
) -> tuple[int, int]:
    async with stores() as store:
        s = store.session
        policy = m.InsurancePolicy(
            name=name,
            copay_cents=copay_cents,
            coverage_percent=None if coverage_percent is None else Decimal(coverage_percent),
            cap_cents=cap_cents,
            max_claims=max_claims,
            allow_override=allow_override,
            created_at=T0,
        )
        s.add(policy)
        await s.flush()
        enrollment = m.InsuranceEnrollment(
            student_id=student_id,
            policy_id=policy.id,
            term_label="2025-2026",
            term_start=term[0],
            term_end=term[1],
            created_at=T0,
        )
        s.add(enrollment)
        await s.flush()
        await store.commit()
        return policy.id, enrollment.id


async def add_staff(stores: UnitOfWorkFactory, role: str, email: str | None = None) -> Actor:
    email = email or f"{role.lower().replace(' ', '.')}@district.org"
    async with stores() as store:
        s = store.session
        role_row = (await s.execute(select(m.Role).where(m.Role.name == role))).scalar_one()
        staff = m.Staff(email=email, name=f"{role} Person", role_id=role_row.id, created_at=T0)
        s.add(staff)
        await s.flush()
        await s.refresh(staff, ["role"])
        result = await store.people.actor_for_staff(staff)
        await store.commit()
        return result


async def fetch(store: SqlUnitOfWork, model: type, ident: int):  # type: ignore[no-untyped-def]
    return await store.session.get(model, ident)


@dataclass
class CollectionFees:
    charger_id: int
    case_id: int
    keys_id: int
    stylus_id: int  # only for another model, so never offered for the district's devices


async def add_collection_fees(stores: UnitOfWorkFactory) -> CollectionFees:
    """Fee items of kind "collection", as /collect offers them."""
    async with stores() as store:
        s = store.session
        fees = [
            m.FeeItem(code="c-charger", name="Charger", kind="collection", price_cents=3500),
            m.FeeItem(code="c-case", name="Case", kind="collection", price_cents=2500),
            m.FeeItem(code="c-keys", name="Keyboard keys", kind="collection", price_cents=1500),
            m.FeeItem(
                code="c-stylus",
                name="Stylus",
                kind="collection",
                price_cents=2000,
                device_model="Apple iPad (9th gen)",
            ),
        ]
        s.add_all(fees)
        await s.flush()
        await store.commit()
        return CollectionFees(*(f.id for f in fees))


async def add_students(
    stores: UnitOfWorkFactory,
    count: int,
    *,
    grade: str = "7",
    building_id: int | None = None,
    sis_prefix: str = "BULK",
    guardian_email: bool = True,
    active: bool = True,
) -> list[int]:
    """`count` students, each with one guardian (emailable unless guardian_email=False)."""
    async with stores() as store:
        s = store.session
        students = [
            m.Student(
                sis_id=f"{sis_prefix}-{i}",
                first_name="Student",
                last_name=f"{sis_prefix}{i}",
                grade=grade,
                building_id=building_id,
                active=active,
            )
            for i in range(count)
        ]
        guardians = [
            m.Guardian(
                first_name="Parent",
                last_name=f"{sis_prefix}{i}",
                email=f"parent.{sis_prefix.lower()}{i}@example.org" if guardian_email else None,
            )
            for i in range(count)
        ]
        s.add_all([*students, *guardians])
        await s.flush()
        s.add_all(
            m.Guardianship(guardian_id=g.id, student_id=st.id)
            for st, g in zip(students, guardians, strict=True)
        )
        await store.commit()
        return [st.id for st in students]


async def add_enrollable_policy(
    stores: UnitOfWorkFactory,
    *,
    name: str = "Device Protection Plan",
    premium_cents: int = 2500,
    coverage_starts: str = "on_payment",
    term: tuple[date, date] = (date(2025, 8, 1), date(2026, 7, 31)),
    window: tuple[date | None, date | None] = (date(2025, 7, 1), date(2026, 6, 30)),
    expiry_reminder_days: int | None = None,
    copay_cents: int | None = 2500,
) -> int:
    """An active policy with a term, premium and enrollment window (no one enrolled)."""
    async with stores() as store:
        policy = m.InsurancePolicy(
            name=name,
            copay_cents=copay_cents,
            allow_override=False,
            created_at=T0,
            term_label=f"{term[0].year}-{term[1].year}",
            term_start=term[0],
            term_end=term[1],
            premium_cents=premium_cents,
            enroll_opens_on=window[0],
            enroll_closes_on=window[1],
            coverage_starts=coverage_starts,
            expiry_reminder_days=expiry_reminder_days,
        )
        store.session.add(policy)
        await store.session.flush()
        await store.commit()
        return policy.id
