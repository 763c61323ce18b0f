"""A small sample district, so a new install has something to try every flow on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of
from workflows.clock import Clock, local_date
from workflows.school_year import school_year_of

PREFIX = "DEMO-"

BUILDINGS = [
    ("DEMO-B-LHS", "Lincoln High School", "school"),
    ("DEMO-B-RMS", "Riverside Middle School", "school"),
]

# (sis suffix, first, last, grade, building index, guardian first, guardian email, language)
FAMILIES = [
    ("1001", "Ana", "Rivera", "9", 0, "Maria", "maria.rivera@example.org", "es"),
    ("1002", "Luis", "Rivera", "7", 1, "Maria", "maria.rivera@example.org", "es"),
    ("1003", "Jordan", "Lee", "10", 0, "Sam", "sam.lee@example.org", "en"),
    ("1004", "Priya", "Patel", "11", 0, "Anil", "anil.patel@example.org", "en"),
    ("1005", "Noah", "Johnson", "8", 1, "Erin", "erin.johnson@example.org", "en"),
    ("1006", "Ava", "Nguyen", "6", 1, "Linh", "linh.nguyen@example.org", "en"),
    ("1007", "Mateo", "Garcia", "12", 0, "Rosa", "rosa.garcia@example.org", "es"),
    ("1008", "Emma", "Brown", "9", 0, "Chris", "chris.brown@example.org", "en"),
]

MODELS = ["HP Chromebook 11 G9 EE", "Lenovo 300e Chromebook Gen 3", "Apple iPad (9th gen)"]

FEES = [
    ("screen", "Screen replacement", "damage", 12500, None),
    ("keyboard", "Keyboard / top case", "damage", 6500, None),
    ("battery", "Battery", "damage", 5500, None),
    ("charger", "Lost or damaged charger", "damage", 3000, None),
    ("case", "Protective case", "damage", 2500, None),
    ("ipad-screen", "iPad screen replacement", "damage", 14900, "Apple iPad (9th gen)"),
    ("device-loss", "Lost device (full replacement)", "damage", 30000, None),
]

# What `/collect` offers when a device comes back (fee items of kind "collection").
COLLECTION_FEES = [
    ("collect-charger", "Charger", 3500, None),
    ("collect-case", "Case", 2500, None),
    ("collect-keys", "Keyboard keys", 1500, None),
    ("collect-screen", "Cracked screen", 9500, None),
    ("collect-asset-tag", "Asset tag label", 500, None),
    ("collect-stylus", "Stylus", 2000, "Apple iPad (9th gen)"),
]


@dataclass(frozen=True)
class DemoResult:
    created: bool
    students: int
    devices: int


async def load_demo(db: Db, clock: Clock, tz: str) -> DemoResult:
    """Idempotent: a second run finds the demo district and changes nothing."""
    session = session_of(db)
    exists = (
        await session.execute(select(m.Student.id).where(m.Student.sis_id == f"{PREFIX}1001"))
    ).first()
    if exists is not None:
        return DemoResult(created=False, students=len(FAMILIES), devices=len(FAMILIES) + 2)
    now = clock.now()
    buildings = [m.Building(sis_id=sis, name=name, kind=kind) for sis, name, kind in BUILDINGS]
    session.add_all(buildings)
    policy = m.InsurancePolicy(
        name="District Device Protection Plan",
        copay_cents=2500,
        coverage_percent=None,
        cap_cents=25000,
        max_claims=2,
        allow_override=True,
        created_at=now,
    )
    applecare = m.InsurancePolicy(
        name="AppleCare+ for Schools",
        copay_cents=2900,
        coverage_percent=Decimal("100"),
        cap_cents=None,
        max_claims=2,
        allow_override=False,
        created_at=now,
    )
    session.add_all([policy, applecare])
    for code, name, kind, price, model in FEES:
        session.add(
            m.FeeItem(
                code=f"demo-{code}", name=name, kind=kind, price_cents=price, device_model=model
            )
        )
    await _add_collection_fees(session)
    await session.flush()

    year = school_year_of(local_date(now, tz))
    issued_at = datetime.combine(
        year.start, time(8), tzinfo=ZoneInfo(tz)
    )  # devices go out in August
    households: dict[str, m.Household] = {}
    guardians: dict[str, m.Guardian] = {}
    for i, (sis, first, last, grade, b, g_first, g_email, lang) in enumerate(FAMILIES):
        household = households.get(g_email)
        if household is None:
            household = m.Household(name=f"{last} family")
            session.add(household)
            await session.flush()
            households[g_email] = household
            guardian = m.Guardian(
                sis_id=f"{PREFIX}G{sis}",
                first_name=g_first,
                last_name=last,
                email=g_email,
                preferred_language=lang,
                household_id=household.id,
            )
            session.add(guardian)
            guardians[g_email] = guardian
        student = m.Student(
            sis_id=f"{PREFIX}{sis}",
            first_name=first,
            last_name=last,
            grade=grade,
            email=f"{first.lower()}.{last.lower()}@students.example.org",
            building_id=buildings[b].id,
            household_id=household.id,
        )
        model = MODELS[i % len(MODELS)]
        device = m.Device(
            serial=f"{PREFIX}SN{sis}",
            asset_tag=f"{PREFIX}AT{sis}",
            model=model,
            kind="ipad" if "iPad" in model else "chromebook",
            building_id=buildings[b].id,
            created_at=now,
        )
        session.add_all([student, device])
        await session.flush()
        session.add(m.Guardianship(guardian_id=guardians[g_email].id, student_id=student.id))
        session.add(
            m.DeviceAssignment(
                device_id=device.id, student_id=student.id, assigned_at=issued_at, reason="demo"
            )
        )
        if i % 4 != 3:  # most families enrol; a few don't, to show "No Active Coverage"
            chosen = applecare if "iPad" in model else policy
            session.add(
                m.InsuranceEnrollment(
                    student_id=student.id,
                    policy_id=chosen.id,
                    term_label=year.label,
                    term_start=year.start,
                    term_end=year.end,
                    created_at=now,
                )
            )
    for n in (1, 2):
        session.add(
            m.Device(
                serial=f"{PREFIX}SPARE{n}",
                asset_tag=f"{PREFIX}SPARE{n}",
                model=MODELS[0],
                kind="chromebook",
                building_id=buildings[0].id,
                status="spare",
                created_at=now,
            )
        )
    await session.flush()
    return DemoResult(created=True, students=len(FAMILIES), devices=len(FAMILIES) + 2)


async def _add_collection_fees(session: AsyncSession) -> None:
    """Collection fee items, unless the district already has some of its own."""
    existing = (
        await session.execute(select(m.FeeItem.id).where(m.FeeItem.kind == "collection").limit(1))
    ).first()
    if existing is not None:
        return
    for code, name, price, model in COLLECTION_FEES:
        session.add(
            m.FeeItem(
                code=f"demo-{code}",
                name=name,
                kind="collection",
                price_cents=price,
                device_model=model,
            )
        )


async def demo_fee_item_id(db: Db, code: str) -> int:
    """The id of the demo's fee item `code` (stored as `demo-<code>`)."""
    found = await session_of(db).execute(
        select(m.FeeItem.id).where(m.FeeItem.code == f"demo-{code}")
    )
    return int(found.scalar_one())


async def guardian_id_by_email(db: Db, email: str) -> int | None:
    """The guardian (not erased) with exactly this email, if any."""
    found = await session_of(db).execute(
        select(m.Guardian.id).where(m.Guardian.email == email, m.Guardian.erased_at.is_(None))
    )
    return found.scalars().first()
