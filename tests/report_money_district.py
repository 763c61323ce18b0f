"""A small district whose money reports were worked out by hand (tests/integration/
test_reports_money.py holds the figures).

Two buildings, four students in three families, two device models, and eleven invoices made
through the real use cases, from June 2025 to February 2026 (the report runs on 2026-03-02):

number  student kind        issued      due         billed covered  what happened
     1  Leo     incident    2025-06-15  2025-07-15    4500       0  none (before the year)
     2  Ana     premium     2025-08-01  2025-09-01    2500       0  paid 2500
     3  Ana     incident    2025-09-10  2025-10-10   12500   10000  paid 2500 (claim 1)
     4  Ana     incident    2025-10-01  2025-12-01    4500    2000  paid 1000 (claim 2)
     5  Sam     incident    2025-10-15  2025-11-15   12500       0  collections; auto-cancelled
     6  Leo     incident    2025-11-03  2026-04-01   12500       0  paid 5000, waived 2500, pending
     7  Leo     incident    2025-12-01  2026-01-15    3000       0  paid 3000, refunded 1000
     8  Mia     incident    2026-01-05  2026-02-01    4500       0  none
     9  Mia     fee         2026-01-05  2026-06-30    2500       0  cancelled ("Billed twice")
    10  Sam     collection  2026-02-02  2026-02-20    3000       0  set to Collections
    11  Ana     fee         2026-02-10  2026-05-01    2500       0  automation off, waived 2100

Ana (grade 7, Lincoln Middle, HP) and Leo (grade 9, Roosevelt High, Dell) are the Rivera
family, whose guardian can be emailed; Ana is insured (co-pay $25.00). Mia (grade 8, Lincoln
Middle, Dell) is the Chen family, whose guardian's mail bounces. Sam (grade 10, Roosevelt High,
HP) of the Okafor family has left the district (inactive).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from services.billing_run import AUTOMATION_LABEL
from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_policy, add_staff
from workflows.adjustments import apply_waiver
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import (
    CreateInvoice,
    InvoiceKind,
    IssueInvoice,
    cancel_invoice,
    change_invoice_status,
    create_invoice_for_incident,
    issue_invoice,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor, Permission
from workflows.ports import Context, InvoiceLineSpec
from workflows.refunds import RefundPayment, refund_payment

TZ = ZoneInfo("America/Chicago")
TODAY = date(2026, 3, 2)  # the day the reports are run
YEAR = (date(2025, 7, 1), TODAY)  # the school year so far

LINCOLN = "Lincoln Middle"
ROOSEVELT = "Roosevelt High"
HP = "HP Chromebook 11 G9"
DELL = "Dell 3110"

AUTOMATION = Actor(
    staff_id=None,
    name=AUTOMATION_LABEL,
    role="automation",
    permissions=frozenset({Permission.CANCEL_INVOICES}),
)


@dataclass
class MoneyDistrict:
    ana: int
    leo: int
    mia: int
    sam: int
    ana_device: int
    leo_device: int
    mia_device: int
    sam_device: int
    screen: int
    keyboard: int
    charger: int
    tech: Actor
    clerk: Actor
    director: Actor


def at(day: date) -> datetime:
    """10:00 (or 11:00 in summer) in the district on `day`, as UTC."""
    return datetime.combine(day, time(16, 0), tzinfo=UTC)


async def add_people(stores: UnitOfWorkFactory) -> MoneyDistrict:
    async with stores() as store:
        s = store.session
        lincoln = m.Building(sis_id="B-L", name=LINCOLN)
        roosevelt = m.Building(sis_id="B-R", name=ROOSEVELT)
        rivera = m.Household(name="Rivera family")
        chen = m.Household(name="Chen family")
        okafor = m.Household(name="Okafor family")
        s.add_all([lincoln, roosevelt, rivera, chen, okafor])
        await s.flush()

        def student(sis: str, first: str, last: str, grade: str, b: int, h: int) -> m.Student:
            return m.Student(
                sis_id=sis,
                first_name=first,
                last_name=last,
                grade=grade,
                building_id=b,
                household_id=h,
            )

        ana = student("S-ANA", "Ana", "Rivera", "7", lincoln.id, rivera.id)
        leo = student("S-LEO", "Leo", "Rivera", "9", roosevelt.id, rivera.id)
        mia = student("S-MIA", "Mia", "Chen", "8", lincoln.id, chen.id)
        sam = student("S-SAM", "Sam", "Okafor", "10", roosevelt.id, okafor.id)
        sam.active = False
        maria = m.Guardian(
            first_name="Maria",
            last_name="Rivera",
            email="maria@example.org",
            household_id=rivera.id,
        )
        wei = m.Guardian(
            first_name="Wei",
            last_name="Chen",
            email="wei@example.org",
            household_id=chen.id,
            email_bouncing_since=T0,
        )
        grace = m.Guardian(
            first_name="Grace",
            last_name="Okafor",
            email="grace@example.org",
            household_id=okafor.id,
        )
        devices = [
            m.Device(serial="HP-ANA", model=HP, building_id=lincoln.id, created_at=T0),
            m.Device(serial="DL-LEO", model=DELL, building_id=roosevelt.id, created_at=T0),
            m.Device(serial="DL-MIA", model=DELL, building_id=lincoln.id, created_at=T0),
            m.Device(serial="HP-SAM", model=HP, building_id=roosevelt.id, created_at=T0),
        ]
        fees = [
            m.FeeItem(code="screen", name="Screen replacement", kind="damage", price_cents=12500),
            m.FeeItem(code="keyboard", name="Keyboard", kind="damage", price_cents=4500),
            m.FeeItem(code="charger", name="Lost charger", kind="damage", price_cents=3000),
        ]
        s.add_all([ana, leo, mia, sam, maria, wei, grace, *devices, *fees])
        await s.flush()
        s.add_all(
            [
                m.Guardianship(guardian_id=maria.id, student_id=ana.id),
                m.Guardianship(guardian_id=maria.id, student_id=leo.id),
                m.Guardianship(guardian_id=wei.id, student_id=mia.id),
                m.Guardianship(guardian_id=grace.id, student_id=sam.id),
            ]
        )
        for st, device in zip((ana, leo, mia, sam), devices, strict=True):
            s.add(m.DeviceAssignment(device_id=device.id, student_id=st.id, assigned_at=T0))
        ids = (ana.id, leo.id, mia.id, sam.id, *(d.id for d in devices), *(f.id for f in fees))
        await store.commit()
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    return MoneyDistrict(*ids, tech=tech, clerk=clerk, director=director)


async def incident_invoice(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    device_id: int,
    day: date,
    due: date,
    *,
    fee_id: int,
    flag: str = "screen",
) -> int:
    """An incident on `day` and its invoice, issued the same day."""
    clock.set(at(day))
    async with stores() as store:
        ctx = Context(store=store, clock=clock, tz=TZ)
        opened = await open_incident(
            ctx, d.tech, OpenIncident(device_id=device_id, occurred_on=day, flags=(flag,))
        )
        created = await create_invoice_for_incident(
            ctx,
            d.tech,
            CreateInvoice(incident_id=opened.incident.id, fee_item_ids=(fee_id,), due_date=due),
        )
        await store.commit()
        return created.invoice.id


async def other_invoice(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    student_id: int,
    kind: InvoiceKind,
    day: date,
    due: date,
    cents: int,
    *,
    device_id: int | None = None,
    automation: bool | None = None,
) -> int:
    clock.set(at(day))
    async with stores() as store:
        ctx = Context(store=store, clock=clock, tz=TZ)
        created = await issue_invoice(
            ctx,
            d.clerk,
            IssueInvoice(
                student_id=student_id,
                kind=kind,
                lines=(InvoiceLineSpec(description=kind.label, kind="fee", unit_cents=cents),),
                due_date=due,
                device_id=device_id,
                automation_enabled=automation,
            ),
        )
        await store.commit()
        return created.invoice.id


async def pay(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    invoice_id: int,
    day: date,
    cents: int,
) -> int:
    clock.set(at(day))
    async with stores() as store:
        ctx = Context(store=store, clock=clock, tz=TZ)
        paid = await record_payment(
            ctx,
            d.clerk,
            RecordPayment(
                invoice_id,
                cents,
                PaymentMethod.CASH,
                idempotency_key=f"pay:{invoice_id}:{day}:{cents}",
            ),
        )
        await store.commit()
        return paid.payment.id


async def waive(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    invoice_id: int,
    day: date,
    cents: int,
) -> None:
    clock.set(at(day))
    async with stores() as store:
        invoice = await store.invoices.get(invoice_id, lock=True)
        assert invoice is not None
        await apply_waiver(
            Context(store=store, clock=clock, tz=TZ), d.clerk, invoice, cents, "Hardship"
        )
        await store.commit()


async def refund(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    payment_id: int,
    day: date,
    cents: int,
) -> None:
    clock.set(at(day))
    async with stores() as store:
        await refund_payment(
            Context(store=store, clock=clock, tz=TZ),
            d.director,
            RefundPayment(
                payment_id, cents, "Charger found", idempotency_key=f"refund:{payment_id}:{cents}"
            ),
        )
        await store.commit()


async def cancel(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    invoice_id: int,
    day: date,
    reason: str,
    *,
    auto: bool = False,
) -> None:
    clock.set(at(day))
    async with stores() as store:
        await cancel_invoice(
            Context(store=store, clock=clock, tz=TZ), actor, invoice_id, reason=reason, auto=auto
        )
        await store.commit()


async def set_status(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    d: MoneyDistrict,
    invoice_id: int,
    day: date,
    status: str,
) -> None:
    clock.set(at(day))
    async with stores() as store:
        await change_invoice_status(
            Context(store=store, clock=clock, tz=TZ), d.clerk, invoice_id, status
        )
        await store.commit()


async def report_pending_payment(
    stores: UnitOfWorkFactory, clock: FixedClock, invoice_id: int, day: date, cents: int
) -> None:
    """A payment a parent says they sent, waiting for staff to confirm it."""
    clock.set(at(day))
    async with stores() as store:
        store.session.add(
            m.PendingPayment(
                invoice_id=invoice_id,
                amount_cents=cents,
                method="check",
                reference="2210",
                paid_on=day,
                created_at=at(day),
            )
        )
        await store.commit()


async def build_money_district(stores: UnitOfWorkFactory, clock: FixedClock) -> MoneyDistrict:
    """The district in the module docstring; leaves the clock on the report day."""
    d = await add_people(stores)
    await add_policy(stores, d.ana, name="District Plan", copay_cents=2500)

    # Before the school year: left out of every report over this year.
    await incident_invoice(
        stores, clock, d, d.leo_device, date(2025, 6, 15), date(2025, 7, 15), fee_id=d.keyboard
    )
    premium = await other_invoice(
        stores, clock, d, d.ana, InvoiceKind.PREMIUM, date(2025, 8, 1), date(2025, 9, 1), 2500
    )
    await pay(stores, clock, d, premium, date(2025, 8, 5), 2500)

    ana_screen = await incident_invoice(
        stores, clock, d, d.ana_device, date(2025, 9, 10), date(2025, 10, 10), fee_id=d.screen
    )
    await pay(stores, clock, d, ana_screen, date(2025, 9, 20), 2500)

    ana_keys = await incident_invoice(
        stores,
        clock,
        d,
        d.ana_device,
        date(2025, 10, 1),
        date(2025, 12, 1),
        fee_id=d.keyboard,
        flag="keyboard",
    )
    await pay(stores, clock, d, ana_keys, date(2025, 10, 15), 1000)

    sam_screen = await incident_invoice(
        stores, clock, d, d.sam_device, date(2025, 10, 15), date(2025, 11, 15), fee_id=d.screen
    )

    leo_screen = await incident_invoice(
        stores, clock, d, d.leo_device, date(2025, 11, 3), date(2026, 4, 1), fee_id=d.screen
    )
    await pay(stores, clock, d, leo_screen, date(2025, 11, 10), 5000)
    await waive(stores, clock, d, leo_screen, date(2025, 11, 20), 2500)

    leo_charger = await incident_invoice(
        stores,
        clock,
        d,
        d.leo_device,
        date(2025, 12, 1),
        date(2026, 1, 15),
        fee_id=d.charger,
        flag="lost",
    )
    charger_payment = await pay(stores, clock, d, leo_charger, date(2025, 12, 5), 3000)
    await refund(stores, clock, d, charger_payment, date(2025, 12, 20), 1000)

    await incident_invoice(
        stores,
        clock,
        d,
        d.mia_device,
        date(2026, 1, 5),
        date(2026, 2, 1),
        fee_id=d.keyboard,
        flag="keyboard",
    )
    mia_fee = await other_invoice(
        stores, clock, d, d.mia, InvoiceKind.FEE, date(2026, 1, 5), date(2026, 6, 30), 2500
    )
    await cancel(stores, clock, d.clerk, mia_fee, date(2026, 1, 6), "Billed twice")

    await set_status(stores, clock, d, sam_screen, date(2026, 1, 10), "collections")
    sam_collection = await other_invoice(
        stores,
        clock,
        d,
        d.sam,
        InvoiceKind.COLLECTION,
        date(2026, 2, 2),
        date(2026, 2, 20),
        3000,
        device_id=d.sam_device,
    )
    ana_fee = await other_invoice(
        stores,
        clock,
        d,
        d.ana,
        InvoiceKind.FEE,
        date(2026, 2, 10),
        date(2026, 5, 1),
        2500,
        automation=False,
    )
    await waive(stores, clock, d, ana_fee, date(2026, 2, 12), 2100)
    await cancel(
        stores,
        clock,
        AUTOMATION,
        sam_screen,
        date(2026, 2, 20),
        "Invoice automatically cancelled on 2026-02-20 after 97 days overdue.",
        auto=True,
    )
    await set_status(stores, clock, d, sam_collection, date(2026, 2, 25), "collections")
    await report_pending_payment(stores, clock, leo_screen, date(2026, 2, 25), 5000)
    clock.set(at(TODAY))
    return d
