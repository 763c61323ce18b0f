"""The money reports on a district whose figures were worked out by hand
(tests/report_money_district.py), on SQLite and PostgreSQL; and the recovery figures adding up
to what was billed on random ledgers."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage import models as m
from storage.billing_reports import cancelled_report
from storage.reports import CATALOGUE, run_report
from storage.uow import UnitOfWorkFactory
from tests.builders import add_policy
from tests.report_money_district import (
    DELL,
    HP,
    LINCOLN,
    ROOSEVELT,
    TODAY,
    TZ,
    YEAR,
    MoneyDistrict,
    add_people,
    at,
    build_money_district,
    cancel,
    pay,
    refund,
    waive,
)
from workflows.clock import FixedClock
from workflows.errors import PermissionDenied
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.ledger import split_money
from workflows.permissions import Actor, Permission
from workflows.ports import Context
from workflows.reports import ReportFilters, ReportResult, require_report

L, R = LINCOLN, ROOSEVELT
PARTS = ("billed", "covered", "collected", "waived", "refunded", "outstanding", "cancelled")


async def run(
    stores: UnitOfWorkFactory,
    name: str,
    *,
    span: tuple[date, date] = YEAR,
    **filters: tuple[str, ...],
) -> ReportResult:
    async with stores() as store:
        result = await run_report(
            store.session,
            name,
            ReportFilters(date_from=span[0], date_to=span[1], **filters),
            tz=TZ,
            today=TODAY,
        )
        await store.commit()
        return result


@pytest.fixture
async def district(stores: UnitOfWorkFactory, clock: FixedClock) -> MoneyDistrict:
    return await build_money_district(stores, clock)


# --- the CSV headers (the README's "Money reports" lists the same) ---------------------------


def test_headers_are_pinned() -> None:
    headers = {name: CATALOGUE[name].headers for name in MONEY_REPORTS}
    assert headers == {
        "invoices": (
            "invoice_number",
            "student",
            "family",
            "building",
            "grade",
            "kind",
            "status",
            "issued_on",
            "due_on",
            "billed",
            "covered",
            "paid",
            "waived",
            "refunded",
            "balance",
        ),
        "balances-by-student": (
            "student",
            "family",
            "building",
            "grade",
            "invoices",
            "billed",
            "covered",
            "collected",
            "waived",
            "balance",
        ),
        "balances-by-family": (
            "family",
            "students",
            "invoices",
            "billed",
            "covered",
            "collected",
            "waived",
            "balance",
        ),
        "overdue": (
            "invoice_number",
            "student",
            "family",
            "building",
            "grade",
            "kind",
            "status",
            "due_on",
            "days_overdue",
            "billed",
            "covered",
            "paid",
            "balance",
            "partially_paid",
            "reminder_count",
            "last_reminder_at",
        ),
        "cleanup": (
            "invoice_number",
            "student",
            "family",
            "building",
            "grade",
            "kind",
            "status",
            "issued_on",
            "due_on",
            "balance",
            "suggestion",
            "reasons",
        ),
        "recovery": (
            "dimension",
            "value",
            "invoices",
            "billed",
            "covered",
            "collected",
            "waived",
            "refunded",
            "outstanding",
            "cancelled",
            "recovery_rate",
        ),
        # Unchanged from `devicecare report cancelled --csv`.
        "cancelled": (
            "invoice_number",
            "student",
            "amount",
            "cancelled_at",
            "auto_cancelled",
            "cancelled_by",
            "reason",
        ),
    }
    for name in MONEY_REPORTS:
        spec = CATALOGUE[name]
        assert spec.money <= set(spec.headers), name
        assert spec.audience == "financial", name


MONEY_REPORTS = (
    "invoices",
    "balances-by-student",
    "balances-by-family",
    "overdue",
    "cleanup",
    "recovery",
    "cancelled",
)


def test_only_financial_roles_may_run_them() -> None:
    viewer = Actor(None, "Viewer", "Technician", frozenset({Permission.VIEW_REPORTS}))
    finance = Actor(
        None,
        "Finance",
        "Billing Clerk",
        frozenset({Permission.VIEW_REPORTS, Permission.VIEW_FINANCIAL_REPORTS}),
    )
    for name in MONEY_REPORTS:
        with pytest.raises(PermissionDenied):
            require_report(viewer, CATALOGUE[name])
        require_report(finance, CATALOGUE[name])


# --- each report against the hand-worked figures ---------------------------------------------


def _row(number: int, student: str, grade: str) -> tuple[str, str, str, str, str]:
    families = {"Ana": "Rivera", "Leo": "Rivera", "Mia": "Chen", "Sam": "Okafor"}
    buildings = {"Ana": L, "Leo": R, "Mia": L, "Sam": R}
    first, last = student.split()
    return (
        f"INV-{number:06d}",
        student,
        f"{families[first]} family",
        buildings[first],
        grade,
    )


ANA, LEO, MIA, SAM = (
    ("Ana Rivera", "7"),
    ("Leo Rivera", "9"),
    ("Mia Chen", "8"),
    ("Sam Okafor", "10"),
)

INVOICE_ROWS = [
    (*_row(2, *ANA), "premium", "Paid", date(2025, 8, 1), date(2025, 9, 1), 2500, 0, 2500, 0, 0, 0),
    (
        *_row(3, *ANA),
        "incident",
        "Paid",
        date(2025, 9, 10),
        date(2025, 10, 10),
        12500,
        10000,
        2500,
        0,
        0,
        0,
    ),
    (
        *_row(4, *ANA),
        "incident",
        "Unpaid",
        date(2025, 10, 1),
        date(2025, 12, 1),
        4500,
        2000,
        1000,
        0,
        0,
        1500,
    ),
    (
        *_row(5, *SAM),
        "incident",
        "Auto-Cancelled",
        date(2025, 10, 15),
        date(2025, 11, 15),
        12500,
        0,
        0,
        0,
        0,
        0,
    ),
    (
        *_row(6, *LEO),
        "incident",
        "Unpaid",
        date(2025, 11, 3),
        date(2026, 4, 1),
        12500,
        0,
        5000,
        2500,
        0,
        5000,
    ),
    (
        *_row(7, *LEO),
        "incident",
        "Paid",
        date(2025, 12, 1),
        date(2026, 1, 15),
        3000,
        0,
        3000,
        0,
        1000,
        0,
    ),
    (
        *_row(8, *MIA),
        "incident",
        "Unpaid",
        date(2026, 1, 5),
        date(2026, 2, 1),
        4500,
        0,
        0,
        0,
        0,
        4500,
    ),
    (*_row(9, *MIA), "fee", "Cancelled", date(2026, 1, 5), date(2026, 6, 30), 2500, 0, 0, 0, 0, 0),
    (
        *_row(10, *SAM),
        "collection",
        "Collections",
        date(2026, 2, 2),
        date(2026, 2, 20),
        3000,
        0,
        0,
        0,
        0,
        3000,
    ),
    (
        *_row(11, *ANA),
        "fee",
        "Unpaid",
        date(2026, 2, 10),
        date(2026, 5, 1),
        2500,
        0,
        0,
        2100,
        0,
        400,
    ),
]


async def test_invoices(stores, district) -> None:
    result = await run(stores, "invoices")
    assert result.rows == INVOICE_ROWS
    assert result.totals == {
        "invoices": 10,
        "billed": 60000,
        "outstanding": 5,
        "outstanding_cents": 14400,
        "paid": 3,
        "cancelled": 2,
    }
    assert result.summary[1] == "Outstanding: 5 with $144.00 still owed. Paid: 3. Cancelled: 2."
    # Every column of every row splits the billed amount the ledger's way.
    for row in result.rows:
        billed, covered, paid, waived, refunded, balance = row[9:]
        cancelled = 0 if row[6] not in ("Cancelled", "Auto-Cancelled") else billed - covered
        assert (paid - refunded) + covered + waived + refunded + balance + cancelled == billed


async def test_balances_by_student_and_by_family(stores, district) -> None:
    students = await run(stores, "balances-by-student")
    assert students.rows == [
        ("Leo Rivera", "Rivera family", R, "9", 2, 15500, 0, 7000, 2500, 5000),
        ("Mia Chen", "Chen family", L, "8", 1, 4500, 0, 0, 0, 4500),
        ("Sam Okafor", "Okafor family", R, "10", 1, 3000, 0, 0, 0, 3000),
        ("Ana Rivera", "Rivera family", L, "7", 4, 22000, 12000, 6000, 2100, 1900),
    ]
    totals = {
        "invoices": 8,
        "billed": 45000,
        "covered": 12000,
        "collected": 13000,
        "waived": 4600,
        "balance": 14400,
    }
    assert students.totals == totals | {"students": 4}
    families = await run(stores, "balances-by-family")
    assert families.rows == [
        ("Rivera family", "Ana Rivera, Leo Rivera", 6, 37500, 12000, 13000, 4600, 6900),
        ("Chen family", "Mia Chen", 1, 4500, 0, 0, 0, 4500),
        ("Okafor family", "Sam Okafor", 1, 3000, 0, 0, 0, 3000),
    ]
    assert families.totals == totals | {"families": 3}
    assert families.summary[0].startswith("3 families billed on 8 invoices")


async def test_overdue_and_partially_paid(stores, district) -> None:
    result = await run(stores, "overdue")
    assert result.rows == [
        (*_row(4, *ANA), "incident", "Unpaid", date(2025, 12, 1), 91, 4500, 2000, 1000, 1500)
        + ("yes", 0, None),
        (*_row(8, *MIA), "incident", "Unpaid", date(2026, 2, 1), 29, 4500, 0, 0, 4500)
        + ("no", 0, None),
        (*_row(10, *SAM), "collection", "Collections", date(2026, 2, 20), 10, 3000, 0, 0, 3000)
        + ("no", 0, None),
        # Not due yet, but partly paid.
        (*_row(6, *LEO), "incident", "Unpaid", date(2026, 4, 1), 0, 12500, 0, 5000, 5000)
        + ("yes", 0, None),
    ]
    assert result.totals == {
        "invoices": 4,
        "balance": 14000,
        "overdue": 3,
        "overdue_cents": 9000,
        "partially_paid": 2,
        "partially_paid_cents": 6500,
    }


async def test_cleanup_list(stores, district) -> None:
    result = await run(stores, "cleanup")
    assert result.rows == [
        (*_row(8, *MIA), "incident", "Unpaid", date(2026, 1, 5), date(2026, 2, 1), 4500)
        + ("find a guardian's contact", "no reachable guardian"),
        (*_row(10, *SAM), "collection", "Collections", date(2026, 2, 2), date(2026, 2, 20), 3000)
        + ("student left: collect or cancel", "student no longer active; in collections"),
        (*_row(4, *ANA), "incident", "Unpaid", date(2025, 10, 1), date(2025, 12, 1), 1500)
        + ("carry over", ""),
        (*_row(11, *ANA), "fee", "Unpaid", date(2026, 2, 10), date(2026, 5, 1), 400)
        + ("consider a waiver", "balance under $5.00; automation off"),
        (*_row(6, *LEO), "incident", "Unpaid", date(2025, 11, 3), date(2026, 4, 1), 5000)
        + ("confirm the pending payment", "payment awaiting confirmation"),
    ]
    assert result.totals == {
        "invoices": 5,
        "balance": 14400,
        "pending_payment": 1,
        "student_inactive": 1,
        "no_guardian": 1,
        "in_collections": 0,
        "small_balance": 1,
        "automation_off": 0,
        "carry over": 1,
    }
    assert result.summary[1] == (
        "To do: confirm the pending payment 1, student left: collect or cancel 1, "
        "find a guardian's contact 1, consider a waiver 1, carry over 1."
    )


RECOVERY_ROWS = [
    ("building", R, 3, 28000, 0, 7000, 2500, 1000, 5000, 12500, 45.2),
    ("building", L, 3, 21500, 12000, 3500, 0, 0, 6000, 0, 36.8),
    ("grade", "7", 2, 17000, 12000, 3500, 0, 0, 1500, 0, 70.0),
    ("grade", "9", 2, 15500, 0, 7000, 2500, 1000, 5000, 0, 45.2),
    # Nothing left for the family to pay once the cancellation is taken out: no rate.
    ("grade", "10", 1, 12500, 0, 0, 0, 0, 0, 12500, None),
    ("grade", "8", 1, 4500, 0, 0, 0, 0, 4500, 0, 0.0),
    ("model", HP, 3, 29500, 12000, 3500, 0, 0, 1500, 12500, 70.0),
    ("model", DELL, 3, 20000, 0, 7000, 2500, 1000, 9500, 0, 35.0),
    ("total", "", 6, 49500, 12000, 10500, 2500, 1000, 11000, 12500, 42.0),
]


def assert_recovery_adds_up(rows: list[tuple[Any, ...]]) -> None:
    """Each row's parts add back up to its billed amount, and each dimension to the total."""
    total = rows[-1]
    assert total[0] == "total"
    for row in rows:
        billed, *parts = row[3:10]
        assert sum(parts) == billed, row
    for dimension in ("building", "grade", "model"):
        rows_of = [r for r in rows if r[0] == dimension]
        for i in range(2, 10):
            assert sum(r[i] for r in rows_of) == total[i], (dimension, i)


async def test_recovery_by_building_grade_and_model(stores, district) -> None:
    result = await run(stores, "recovery")
    assert result.rows == RECOVERY_ROWS
    assert_recovery_adds_up(result.rows)
    assert result.totals == dict(
        zip(("invoices", *PARTS), (6, 49500, 12000, 10500, 2500, 1000, 11000, 12500), strict=True)
    )
    assert result.summary[2].startswith("Recovery rate: 42.0%")


async def test_cancelled_with_the_auto_cancelled_designation(stores, district) -> None:
    result = await run(stores, "cancelled")
    assert result.rows == [
        ("INV-000009", "Mia Chen", 2500, at(date(2026, 1, 6)), "no")
        + ("Billing Clerk Person", "Billed twice"),
        ("INV-000005", "Sam Okafor", 12500, at(date(2026, 2, 20)), "yes")
        + (
            "DeviceCare automation",
            "Invoice automatically cancelled on 2026-02-20 after 97 days overdue.",
        ),
    ]
    assert result.totals == {
        "invoices": 2,
        "amount": 15000,
        "auto_cancelled": 1,
        "auto_cancelled_cents": 12500,
        "manual": 1,
        "manual_cents": 2500,
    }
    # The same rows as the billing report `devicecare report cancelled` prints.
    async with stores() as store:
        billing = await cancelled_report(store.session, *YEAR, tz=TZ)
        await store.commit()
    assert [(c.number, c.amount_cents, c.auto_cancelled, c.reason) for c in billing.rows] == [
        (r[0], r[2], r[4] == "yes", r[6]) for r in result.rows
    ]
    # Cancelled in the range, whenever issued: January alone holds only the manual one.
    january = await run(stores, "cancelled", span=(date(2026, 1, 1), date(2026, 1, 31)))
    assert [r[0] for r in january.rows] == ["INV-000009"]


async def test_the_range_selects_invoices_issued_in_it(stores, district) -> None:
    # INV-000001 (issued 2025-06-15) shows only in a range that reaches back to it.
    june = await run(stores, "invoices", span=(date(2025, 6, 1), date(2025, 6, 30)))
    assert [r[0] for r in june.rows] == ["INV-000001"]
    overdue = await run(stores, "overdue", span=(date(2025, 6, 1), date(2025, 6, 30)))
    assert [(r[0], r[8]) for r in overdue.rows] == [("INV-000001", 230)]
    autumn = await run(stores, "recovery", span=(date(2025, 10, 1), date(2025, 11, 30)))
    assert autumn.rows[-1] == ("total", "", 3, 29500, 2000, 6000, 2500, 0, 6500, 12500, 40.0)


async def test_filters_change_the_numbers(stores, district) -> None:
    lincoln = await run(stores, "invoices", buildings=("lincoln middle",))
    assert [r[0] for r in lincoln.rows] == [
        "INV-000002",
        "INV-000003",
        "INV-000004",
        "INV-000008",
        "INV-000009",
        "INV-000011",
    ]
    assert (lincoln.totals["outstanding"], lincoln.totals["outstanding_cents"]) == (3, 6400)

    grade9 = await run(stores, "balances-by-student", grades=("9",))
    assert grade9.rows == [("Leo Rivera", "Rivera family", R, "9", 2, 15500, 0, 7000, 2500, 5000)]
    family9 = await run(stores, "balances-by-family", grades=("9",))
    assert family9.rows == [("Rivera family", "Leo Rivera", 2, 15500, 0, 7000, 2500, 5000)]

    # A model keeps the invoices for that model's devices; fees have no device.
    dell = await run(stores, "invoices", models=("dell 3110",))
    assert [r[0] for r in dell.rows] == ["INV-000006", "INV-000007", "INV-000008"]
    dell_recovery = await run(stores, "recovery", models=(DELL,))
    assert dell_recovery.rows[-1] == ("total", "", *RECOVERY_ROWS[7][2:])
    assert [r[1] for r in dell_recovery.rows if r[0] == "model"] == [DELL]

    lincoln_recovery = await run(stores, "recovery", buildings=(L,))
    assert lincoln_recovery.rows == [
        ("building", L, 3, 21500, 12000, 3500, 0, 0, 6000, 0, 36.8),
        ("grade", "7", 2, 17000, 12000, 3500, 0, 0, 1500, 0, 70.0),
        ("grade", "8", 1, 4500, 0, 0, 0, 0, 4500, 0, 0.0),
        ("model", HP, 2, 17000, 12000, 3500, 0, 0, 1500, 0, 70.0),
        ("model", DELL, 1, 4500, 0, 0, 0, 0, 4500, 0, 0.0),
        ("total", "", 3, 21500, 12000, 3500, 0, 0, 6000, 0, 36.8),
    ]
    grade9_recovery = await run(stores, "recovery", grades=("9",))
    assert grade9_recovery.rows[-1] == ("total", "", *RECOVERY_ROWS[3][2:])

    overdue_r = await run(stores, "overdue", buildings=(R,))
    assert [r[0] for r in overdue_r.rows] == ["INV-000010", "INV-000006"]
    cleanup_hp = await run(stores, "cleanup", models=(HP,))
    assert [(r[0], r[10]) for r in cleanup_hp.rows] == [
        ("INV-000010", "student left: collect or cancel"),
        ("INV-000004", "carry over"),
    ]
    cancelled_hp = await run(stores, "cancelled", models=(HP,))
    assert [r[0] for r in cancelled_hp.rows] == ["INV-000005"]
    cancelled_l = await run(stores, "cancelled", buildings=(L,))
    assert [r[0] for r in cancelled_l.rows] == ["INV-000009"]
    assert cancelled_l.totals["amount"] == 2500


# --- reconciliation on random ledgers ---------------------------------------------------------


async def _random_ledger(stores: UnitOfWorkFactory, clock: FixedClock, seed: int) -> None:
    """Damage invoices on random days with random amounts, insurance for one student, and
    random payments, refunds, waivers and cancellations, all through the use cases."""
    rng = random.Random(seed)
    d = await add_people(stores)
    await add_policy(stores, d.ana, name="District Plan", copay_cents=2000, cap_cents=15000)
    devices = [d.ana_device, d.leo_device, d.mia_device, d.sam_device]
    days = sorted(date(2025, 7, 1) + timedelta(days=rng.randrange(240)) for _ in range(24))
    for day in days:
        clock.set(at(day))
        async with stores() as store:
            ctx = Context(store=store, clock=clock, tz=TZ)
            opened = await open_incident(
                ctx,
                d.tech,
                OpenIncident(device_id=rng.choice(devices), occurred_on=day, flags=("screen",)),
            )
            created = await create_invoice_for_incident(
                ctx,
                d.tech,
                CreateInvoice(
                    incident_id=opened.incident.id,
                    custom_lines=(CustomLine("Repair", rng.randrange(500, 25000)),),
                    due_date=day + timedelta(days=30),
                ),
            )
            invoice = created.invoice
            invoice_id, owed = invoice.id, invoice.balance_cents
            await store.commit()
        if owed == 0:
            continue
        later = day + timedelta(days=1)
        action = rng.choice(("pay", "part", "refund", "waive", "cancel", "nothing"))
        if action == "cancel":
            await cancel(stores, clock, d.clerk, invoice_id, later, "Entered in error")
            continue
        if action in ("pay", "part", "refund"):
            cents = owed if action != "part" else rng.randrange(1, owed + 1)
            payment_id = await pay(stores, clock, d, invoice_id, later, cents)
            owed -= cents
            if action == "refund":
                await refund(stores, clock, d, payment_id, later, rng.randrange(1, cents + 1))
        if owed > 0 and rng.random() < 0.5:
            await waive(stores, clock, d, invoice_id, later, rng.randrange(1, owed + 1))
    clock.set(at(TODAY))


@pytest.mark.parametrize("seed", [7, 2026])
async def test_recovery_reconciles_on_random_ledgers(stores, clock, seed: int) -> None:
    await _random_ledger(stores, clock, seed)
    result = await run(stores, "recovery")
    assert_recovery_adds_up(result.rows)
    async with stores() as store:
        invoices = list((await store.session.execute(select(m.Invoice))).scalars())
        await store.commit()
    splits = [split_money(i) for i in invoices]
    assert all(s.adds_up() for s in splits)
    expected = tuple(sum(getattr(s, part) for s in splits) for part in PARTS)
    assert result.rows[-1][2:10] == (len(invoices), *expected)
    assert expected[PARTS.index("covered")] > 0  # the insured student's claims are in

    # The balances and the invoice listing agree with the same ledger.
    listing = await run(stores, "invoices")
    assert listing.totals["billed"] == expected[0]
    assert listing.totals["outstanding_cents"] == expected[PARTS.index("outstanding")]
    students = await run(stores, "balances-by-student")
    cancelled_billed = sum(i.subtotal_cents for i in invoices if i.status == "cancelled")
    assert students.totals["billed"] == expected[0] - cancelled_billed
    assert students.totals["balance"] == expected[PARTS.index("outstanding")]
    assert sum(r[9] for r in students.rows) == students.totals["balance"]
