"""Annual fees applied in bulk, on SQLite and PostgreSQL: preview, apply, rerun, limits, a crash
between batches, concurrent applies, permissions, and the money adding up afterwards."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.bulk_fees import BulkFeeBiller
from storage import models as m
from storage.db import session_factory
from storage.fee_store import SqlFeeStore
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff, add_students
from workflows.clock import FixedClock
from workflows.errors import ConflictError, PermissionDenied, ValidationError
from workflows.fees import FeeDefinition, FeeRecord, apply_fee, define_fee, list_fees, preview_fee
from workflows.invoices import InvoiceKind, InvoiceLineSpec, IssueInvoice, issue_invoice
from workflows.ledger import split_money
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
YEAR = "2025-2026"  # the test clock's school year (March 2026)
DUE = date(2026, 4, 15)


def _ctx(store: Any, clock: FixedClock) -> Context:
    return Context(store, clock, TZ)


async def _define(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, **changes: Any
) -> FeeRecord:
    fields: dict[str, Any] = {
        "code": "tech-fee",
        "name": "Technology fee",
        "school_year": YEAR,
        "amount_cents": 2500,
        "due_date": DUE,
    } | changes
    async with stores() as store:
        fee, _created = await define_fee(
            _ctx(store, clock), SqlFeeStore.beside(store), actor, FeeDefinition(**fields)
        )
        await store.commit()
        return fee


def _biller(engine: AsyncEngine, clock: FixedClock, **kwargs: Any) -> BulkFeeBiller:
    return BulkFeeBiller(session_factory(engine), clock, TZ, **kwargs)


async def _preview(stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, fee_id: int) -> Any:
    async with stores() as store:
        result = await preview_fee(_ctx(store, clock), SqlFeeStore.beside(store), actor, fee_id)
        await store.commit()
        return result


async def _rows(stores: UnitOfWorkFactory, stmt: Any) -> list[Any]:
    async with stores() as store:
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


async def _fee_invoices(stores: UnitOfWorkFactory, fee_id: int) -> list[m.Invoice]:
    stmt = select(m.Invoice).where(m.Invoice.annual_fee_id == fee_id).order_by(m.Invoice.id)
    return await _rows(stores, stmt)


async def _assert_one_each(stores: UnitOfWorkFactory, fee_id: int, student_ids: list[int]) -> None:
    invoices = await _fee_invoices(stores, fee_id)
    assert sorted(i.student_id for i in invoices) == sorted(student_ids)
    for invoice in invoices:
        assert split_money(invoice).adds_up(), invoice.number


async def _assert_books_add_up(stores: UnitOfWorkFactory) -> None:
    for invoice in await _rows(stores, select(m.Invoice)):
        assert split_money(invoice).adds_up(), invoice.number


async def test_preview_apply_and_rerun(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    students = await add_students(stores, 7)
    await add_students(stores, 2, sis_prefix="NOMAIL", guardian_email=False)
    await add_students(stores, 1, sis_prefix="GONE", active=False)
    fee = await _define(stores, clock, clerk)

    preview = await _preview(stores, clock, clerk, fee.id)
    assert (preview.counts.to_bill, preview.counts.already_billed) == (9, 0)
    assert preview.counts.without_email == 2
    assert preview.total_cents == 9 * 2500

    result = await apply_fee(_biller(engine, clock, batch_size=4), clerk, fee.id)
    assert (result.created, result.total_cents, result.notices) == (9, 22500, 7)
    assert (result.already_billed, result.batches) == (0, 3)

    invoices = await _fee_invoices(stores, fee.id)
    assert len(invoices) == 9
    # Numbered in id order, without gaps, and the counter moved on by as many.
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, 10)]
    (counter,) = await _rows(stores, select(m.Counter.value).where(m.Counter.name == "invoice"))
    assert counter == 9
    for invoice in invoices:
        assert invoice.kind == InvoiceKind.FEE
        assert (invoice.status, invoice.subtotal_cents, invoice.total_cents) == (
            "unpaid",
            2500,
            2500,
        )
        assert (invoice.due_date, invoice.automation_enabled) == (DUE, True)
        assert invoice.created_by_id == clerk.staff_id
        (line,) = invoice.lines
        assert (line.description, line.kind, line.quantity, line.unit_cents) == (
            "Technology fee 2025-2026",
            "fee",
            1,
            2500,
        )
    emailed = {i.id for i in invoices if i.student_id in students}
    notices = await _rows(stores, select(m.Notice).where(m.Notice.template == "invoice_issued"))
    assert {n.invoice_id for n in notices} == emailed and len(notices) == 7
    outbox = await _rows(stores, select(m.OutboxMessage.dedupe_key))
    assert sorted(outbox) == sorted(f"notice:{n.id}" for n in notices)
    created = await _rows(
        stores, select(m.ActivityEntry.entity_id).where(m.ActivityEntry.action == "created")
    )
    assert sorted(created) == [i.id for i in invoices]

    again = await apply_fee(_biller(engine, clock), clerk, fee.id)
    assert (again.created, again.notices, again.already_billed) == (0, 0, 9)
    assert len(await _fee_invoices(stores, fee.id)) == 9
    assert len(await _rows(stores, select(m.Notice.id))) == 7
    preview = await _preview(stores, clock, clerk, fee.id)
    assert (preview.counts.to_bill, preview.counts.already_billed, preview.total_cents) == (
        0,
        9,
        0,
    )
    applied = await _rows(
        stores, select(m.ActivityEntry.after).where(m.ActivityEntry.action == "fee_applied")
    )
    assert [a["created"] for a in applied] == [9, 0]
    await _assert_books_add_up(stores)


async def test_grade_and_building_limits(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        north = m.Building(name="North Middle")
        south = m.Building(name="South Middle")
        store.session.add_all([north, south])
        await store.session.flush()
        north_id, south_id = north.id, south.id
        await store.commit()
    north6 = await add_students(stores, 2, grade="6", building_id=north_id, sis_prefix="N6")
    await add_students(stores, 2, grade="7", building_id=north_id, sis_prefix="N7")
    south6 = await add_students(stores, 3, grade="6", building_id=south_id, sis_prefix="S6")
    await add_students(stores, 1, grade="9", building_id=south_id, sis_prefix="S9")

    sixth = await _define(stores, clock, clerk, code="g6", grades=("06",))
    assert sixth.grades == ["6"]
    north_sixth = await _define(
        stores, clock, clerk, code="n6", grades=("6", "8"), building_ids=(north_id,)
    )
    assert (await _preview(stores, clock, clerk, sixth.id)).counts.to_bill == 5
    assert (await _preview(stores, clock, clerk, north_sixth.id)).counts.to_bill == 2

    await apply_fee(_biller(engine, clock), clerk, sixth.id)
    await apply_fee(_biller(engine, clock), clerk, north_sixth.id)
    await _assert_one_each(stores, sixth.id, north6 + south6)
    await _assert_one_each(stores, north_sixth.id, north6)

    async with stores() as store:
        year, listed = await list_fees(_ctx(store, clock), SqlFeeStore.beside(store), clerk)
        await store.commit()
    assert year == YEAR
    assert [(f.code, c.already_billed, c.to_bill) for f, c in listed] == [
        ("g6", 5, 0),
        ("n6", 2, 0),
    ]


async def test_a_student_added_later_is_billed_on_the_rerun(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    first = await add_students(stores, 3)
    fee = await _define(stores, clock, clerk)
    await apply_fee(_biller(engine, clock), clerk, fee.id)
    late = await add_students(stores, 1, sis_prefix="LATE")
    assert (await _preview(stores, clock, clerk, fee.id)).counts.to_bill == 1
    result = await apply_fee(_biller(engine, clock), clerk, fee.id)
    assert (result.created, result.already_billed) == (1, 3)
    await _assert_one_each(stores, fee.id, first + late)
    numbers = [i.number for i in await _fee_invoices(stores, fee.id)]
    assert numbers == ["INV-000001", "INV-000002", "INV-000003", "INV-000004"]


class Crash(RuntimeError):
    pass


async def test_a_crash_between_batches_then_a_rerun_bills_each_student_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    students = await add_students(stores, 10)
    fee = await _define(stores, clock, clerk)

    async def crash(_made: int) -> None:
        raise Crash("the process died")

    with pytest.raises(Crash):
        await apply_fee(_biller(engine, clock, batch_size=4, after_batch=crash), clerk, fee.id)
    assert len(await _fee_invoices(stores, fee.id)) == 4  # the first batch was committed whole

    result = await apply_fee(_biller(engine, clock, batch_size=4), clerk, fee.id)
    assert (result.created, result.already_billed) == (6, 4)
    await _assert_one_each(stores, fee.id, students)
    notices = await _rows(stores, select(m.Notice.invoice_id))
    assert sorted(notices) == [i.id for i in await _fee_invoices(stores, fee.id)]
    await _assert_books_add_up(stores)


async def test_two_applies_at_once_bill_each_student_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, database_url: str
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    students = await add_students(stores, 60)
    fee = await _define(stores, clock, clerk)
    # Separate engines: two processes (or two web workers) clicking Apply at the same moment.
    from storage.db import create_engine

    engines = [create_engine(database_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(apply_fee(_biller(e, clock, batch_size=7), clerk, fee.id) for e in engines)
        )
    finally:
        for e in engines:
            await e.dispose()
    assert sum(r.created for r in results) == 60
    await _assert_one_each(stores, fee.id, students)
    invoices = await _fee_invoices(stores, fee.id)
    assert sorted(i.number for i in invoices) == [f"INV-{n:06d}" for n in range(1, 61)]
    notices = await _rows(stores, select(m.Notice.invoice_id))
    assert sorted(notices) == sorted(i.id for i in invoices)


async def test_a_role_without_manage_fees_is_refused_and_nothing_changes(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")
    await add_students(stores, 3)
    fee = await _define(stores, clock, clerk)
    with pytest.raises(PermissionDenied, match="Manage Fees"):
        await _define(stores, clock, tech, code="other")
    with pytest.raises(PermissionDenied):
        await _preview(stores, clock, tech, fee.id)
    with pytest.raises(PermissionDenied):
        await apply_fee(_biller(engine, clock), tech, fee.id)
    assert await _fee_invoices(stores, fee.id) == []
    assert len(await _rows(stores, select(m.AnnualFee.id))) == 1


async def test_defining_updating_and_refusals(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    await add_students(stores, 2)
    fee = await _define(stores, clock, clerk)
    same = await _define(stores, clock, clerk, name="Technology fee (Chromebook)", grades=("7",))
    assert same.id == fee.id and same.grades == ["7"]
    with pytest.raises(ValidationError, match="between today and three years"):
        await _define(stores, clock, clerk, due_date=date(2026, 3, 1))
    with pytest.raises(ValidationError, match="isn't a school year"):
        await _define(stores, clock, clerk, school_year="2026-2028")
    with pytest.raises(ValidationError, match="no building"):
        await _define(stores, clock, clerk, code="nowhere", building_ids=(999,))
    await apply_fee(_biller(engine, clock), clerk, fee.id)
    with pytest.raises(ValidationError, match="amount can't change"):
        await _define(stores, clock, clerk, amount_cents=3000)
    log = await _rows(
        stores,
        select(m.ActivityEntry.action)
        .where(m.ActivityEntry.entity_type == "annual_fee")
        .order_by(m.ActivityEntry.id),
    )
    assert log == ["fee_defined", "fee_updated", "fee_applied"]

    # A due date that has passed by the time the fee is applied is refused, billing no one.
    late = await _define(stores, clock, clerk, code="late", due_date=date(2026, 3, 10))
    clock.set(clock.now().replace(month=4))
    with pytest.raises(ValidationError, match="has passed"):
        await apply_fee(_biller(engine, clock), clerk, late.id)
    assert await _fee_invoices(stores, late.id) == []


async def test_bulk_emails_match_the_ones_issue_invoice_queues(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    (bulk_student,) = await add_students(stores, 1, sis_prefix="BULK")
    fee = await _define(stores, clock, clerk)
    await apply_fee(_biller(engine, clock), clerk, fee.id)
    (single_student,) = await add_students(stores, 1, sis_prefix="ONE")
    async with stores() as store:
        made = await issue_invoice(
            _ctx(store, clock),
            clerk,
            IssueInvoice(
                student_id=single_student,
                kind=InvoiceKind.FEE,
                lines=(InvoiceLineSpec("Technology fee 2025-2026", "fee", 2500),),
                due_date=DUE,
                annual_fee_id=fee.id,
            ),
        )
        single_id = made.invoice.id
        await store.commit()
    (bulk,) = [i for i in await _fee_invoices(stores, fee.id) if i.student_id == bulk_student]

    def invoice_fields(i: m.Invoice) -> dict[str, Any]:
        skip = {"id", "number", "student_id", "lines"}
        return {c: getattr(i, c) for c in m.Invoice.__table__.columns.keys() if c not in skip}

    async with stores() as store:
        a = await store.session.get(m.Invoice, bulk.id)
        b = await store.session.get(m.Invoice, single_id)
        assert a is not None and b is not None
        assert invoice_fields(a) == invoice_fields(b)
        assert [(x.position, x.description, x.kind, x.fee_item_id, x.quantity, x.unit_cents,
                 x.amount_cents) for x in a.lines] == [
            (x.position, x.description, x.kind, x.fee_item_id, x.quantity, x.unit_cents,
             x.amount_cents) for x in b.lines]  # fmt: skip
        pairs = []
        for invoice in (a, b):
            notice = (
                await store.session.execute(
                    select(m.Notice).where(m.Notice.invoice_id == invoice.id)
                )
            ).scalar_one()
            row = (
                await store.session.execute(
                    select(m.OutboxMessage).where(
                        m.OutboxMessage.dedupe_key == f"notice:{notice.id}"
                    )
                )
            ).scalar_one()
            pairs.append((invoice, notice, row))
        entries = {
            inv.id: (
                await store.session.execute(
                    select(m.ActivityEntry).where(
                        m.ActivityEntry.entity_id == inv.id, m.ActivityEntry.action == "created"
                    )
                )
            ).scalar_one()
            for inv in (a, b)
        }
        await store.commit()
    (ia, na, oa), (ib, nb, ob) = pairs
    for column in m.Notice.__table__.columns.keys():
        if column in ("id", "invoice_id", "guardian_id", "dedupe_key", "to_address", "message_id"):
            continue
        assert getattr(na, column) == getattr(nb, column), column
    assert na.dedupe_key == f"invoice-issued:{ia.id}" and nb.dedupe_key == f"invoice-issued:{ib.id}"
    for n in (na, nb):
        local, _at, domain = n.message_id.strip("<>").partition("@")
        assert len(local) == 32 and int(local, 16) >= 0 and domain == "devicecare.invalid"
    for column in m.OutboxMessage.__table__.columns.keys():
        if column in ("id", "dedupe_key", "payload"):
            continue
        assert getattr(oa, column) == getattr(ob, column), column
    assert oa.payload == {"notice_id": na.id} and ob.payload == {"notice_id": nb.id}
    ea, eb = entries[ia.id], entries[ib.id]
    for column in ("at", "actor_staff_id", "actor_label", "entity_type", "action", "before",
                   "comment"):  # fmt: skip
        assert getattr(ea, column) == getattr(eb, column), column
    assert {k: v for k, v in ea.after.items() if k != "number"} == {
        k: v for k, v in eb.after.items() if k != "number"
    }
    assert (ea.after["number"], eb.after["number"]) == (ia.number, ib.number)
    count = await _rows(stores, select(func.count()).select_from(m.Notice))
    assert count == [2]


async def test_the_same_fee_defined_twice_at_once_is_one_fee_and_a_clear_answer(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    actor = await add_staff(stores, "Admin", "fees-race@district.org")

    async def define() -> str:
        try:
            async with stores() as store:
                _fee, created = await define_fee(
                    _ctx(store, clock),
                    SqlFeeStore.beside(store),
                    actor,
                    FeeDefinition(
                        code="tech-fee",
                        name="Technology fee",
                        school_year=YEAR,
                        amount_cents=2500,
                        due_date=DUE,
                    ),
                )
                await asyncio.sleep(0.05)  # both transactions open before either commits
                await store.commit()
        except ConflictError as exc:
            assert "was defined by someone else a moment ago" in exc.message
            return "refused"
        return "created" if created else "updated"

    outcomes = sorted(await asyncio.gather(define(), define()))
    # PostgreSQL: the second insert waits for the first, then is refused in words (it was an
    # IntegrityError); SQLite serialises the two, so the second updates the first.
    assert outcomes in (["created", "refused"], ["created", "updated"])
    codes = await _rows(stores, select(m.AnnualFee.code).where(m.AnnualFee.code == "tech-fee"))
    assert codes == ["tech-fee"]
