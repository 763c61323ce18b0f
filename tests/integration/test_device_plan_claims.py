"""A device's own coverage (AppleCare+ synced from Apple School Manager) insures incidents on
that device: a policy with a device plan sets the terms, and claims count against the device's
coverage, whoever holds it (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.db import session_factory
from storage.reports import run_report
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_district, add_policy, add_staff
from tests.integration.test_device_sync import sync
from tests.integration.test_invoices_store import _incident, _invoice, ctx_for
from tests.sync.listed_source import APPLECARE, ListedSource
from workflows.clock import FixedClock
from workflows.incidents import incident_coverage_badge
from workflows.invoices import cancel_invoice, restore_invoice
from workflows.reports import ReportFilters, ReportResult
from workflows.sync import SourceCoverage, SourceDevice

COVERED = (date(2025, 9, 1), date(2027, 8, 31))
TZ = ZoneInfo("America/Chicago")


async def _device_policy(stores: UnitOfWorkFactory, *, plan: str | None = "AppleCare+") -> int:
    async with stores() as store:
        policy = m.InsurancePolicy(
            name="AppleCare+ for iPads",
            copay_cents=2900,
            max_claims=2,
            allow_override=False,
            device_plan=plan,
            created_at=T0,
        )
        store.session.add(policy)
        await store.session.flush()
        await store.commit()
        return policy.id


async def _synced_coverage(engine: AsyncEngine, serial: str) -> int:
    """The device's AppleCare+ as the Apple School Manager sync stores it."""
    listed = SourceDevice(
        external_id="DMP0000001",
        serial=serial,
        model="iPad (9th generation)",
        status="in_service",
        coverages=(SourceCoverage("Apple", APPLECARE, COVERED[0], COVERED[1]),),
    )
    await sync(engine, ListedSource("apple", [listed]), datetime(2026, 1, 5, 8, 0, tzinfo=UTC))
    async with session_factory(engine)() as session:
        return (await session.execute(select(m.DeviceCoverage.id))).scalar_one()


async def test_a_device_plan_prices_the_incident_and_counts_claims_against_the_device(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    async with stores() as store:
        serial = (await store.session.get(m.Device, d.device_id)).serial  # type: ignore[union-attr]
        await store.commit()
    coverage_id = await _synced_coverage(engine, serial)
    policy_id = await _device_policy(stores)
    tech = await add_staff(stores, "Technician")

    first = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        fee_item_ids=(d.fee_screen_id,),
    )
    inv = first.invoice
    assert (inv.subtotal_cents, inv.insurance_cents, inv.total_cents) == (12500, 9600, 2900)
    assert inv.claim_device_coverage_id == coverage_id and inv.claim_enrollment_id is None
    snapshot = inv.insurance_snapshot
    assert snapshot["policy_id"] == policy_id and snapshot["device_coverage_id"] == coverage_id
    assert snapshot["term_label"] == f"{APPLECARE}, 2025-09-01 to 2027-08-31"
    assert snapshot["claim_number"] == 1

    second = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id, key="two"),
        fee_item_ids=(d.fee_screen_id,),
    )
    assert second.invoice.total_cents == 2900
    third_incident = await _incident(stores, clock, tech, d.device_id, key="three")
    async with stores() as store:
        badge = await incident_coverage_badge(ctx_for(store, clock), third_incident)
        await store.commit()
    assert badge.state == "exhausted", badge
    third = await _invoice(stores, clock, tech, third_incident, fee_item_ids=(d.fee_screen_id,))
    assert third.invoice.cap_reached and third.invoice.total_cents == 12500
    assert third.invoice.claim_device_coverage_id is None

    # Cancelling a claim frees its slot; restoring it when the slot is taken is refused.
    admin = await add_staff(stores, "Admin")
    async with stores() as store:
        await cancel_invoice(ctx_for(store, clock), admin, inv.id, reason="duplicate")
        await store.commit()
    fourth = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id, key="four"),
        fee_item_ids=(d.fee_screen_id,),
    )
    assert fourth.invoice.claim_device_coverage_id == coverage_id
    async with stores() as store:
        try:
            await restore_invoice(ctx_for(store, clock), admin, inv.id)
        except Exception as exc:  # noqa: BLE001 - the refusal is what is checked
            assert "claim cap" in str(exc)
        else:
            raise AssertionError("restoring past the device plan's cap was allowed")
        await store.commit()


async def test_the_device_plan_goes_before_the_students_own_plan_only_on_its_dates(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    _policy, enrollment_id = await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=5000,
        term=(date(2025, 7, 1), date(2027, 6, 30)),
    )
    async with stores() as store:
        serial = (await store.session.get(m.Device, d.device_id)).serial  # type: ignore[union-attr]
        await store.commit()
    await _synced_coverage(engine, serial)
    await _device_policy(stores)
    tech = await add_staff(stores, "Technician")

    inside = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        fee_item_ids=(d.fee_screen_id,),
    )
    assert inside.invoice.total_cents == 2900  # AppleCare+ on the device
    before = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id, occurred=date(2025, 8, 20), key="b"),
        fee_item_ids=(d.fee_screen_id,),
    )
    assert before.invoice.total_cents == 5000  # before the device's coverage: the district plan
    assert before.invoice.claim_enrollment_id == enrollment_id


async def test_without_a_device_plan_a_policy_ignores_device_coverage(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    async with stores() as store:
        serial = (await store.session.get(m.Device, d.device_id)).serial  # type: ignore[union-attr]
        await store.commit()
    await _synced_coverage(engine, serial)
    await _device_policy(stores, plan=None)
    await _device_policy(stores, plan="Protect Plus")  # another vendor's plan name
    tech = await add_staff(stores, "Technician")
    created = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        fee_item_ids=(d.fee_screen_id,),
    )
    assert created.invoice.total_cents == 12500 and created.invoice.insurance_cents == 0


async def test_insurance_reports_count_device_plan_claims(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    async with stores() as store:
        serial = (await store.session.get(m.Device, d.device_id)).serial  # type: ignore[union-attr]
        await store.commit()
    await _synced_coverage(engine, serial)
    await _device_policy(stores)
    tech = await add_staff(stores, "Technician")
    for key in ("one", "two"):
        incident = await _incident(stores, clock, tech, d.device_id, key=key)
        created = await _invoice(stores, clock, tech, incident, fee_item_ids=(d.fee_screen_id,))
        assert created.invoice.insurance_cents == 9600

    async def run(name: str, **filters: tuple[str, ...]) -> ReportResult:
        async with stores() as store:
            span = ReportFilters(date_from=date(2026, 1, 1), date_to=date(2026, 6, 30), **filters)
            return await run_report(store.session, name, span, tz=TZ, today=date(2026, 3, 2))

    used = await run("claims-utilization")
    term = f"{APPLECARE} on {serial}"
    assert used.rows == [
        ("Rivera, Ana", "S1", "Lincoln Middle", "7", "AppleCare+ for iPads", term, *COVERED)
        + ("device plan", 2, 2, 100.0, 19200)
    ]
    assert used.totals == {
        "enrollments": 0,
        "device_plans": 1,
        "claims": 2,
        "absorbed": 19200,
        "at_limit": 1,
    }
    assert "0 enrollments with a term in the range" in used.summary[0]
    assert "and 1 device plan with claims." in used.summary[0]
    summary = await run("enrollment-summary")
    assert summary.rows == [
        ("AppleCare+ for iPads", "device plans", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 19200)
    ]
    assert summary.totals["absorbed"] == used.totals["absorbed"] == 19200
    # The grades (and buildings) filters follow the claim's student.
    assert (await run("claims-utilization", grades=("12",))).rows == []
    assert (await run("enrollment-summary", grades=("12",))).rows == []
