"""The reports benchmark's district generator at a tiny scale, so bench/reports.py can't rot:
its stored totals reconcile and every report runs over it, on both backends."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.db import session_factory
from storage.report_base import CATALOGUE

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reports.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_reports", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_reports", module)
    spec.loader.exec_module(module)
    return module


async def test_tiny_district_reconciles_and_every_report_runs(engine: AsyncEngine) -> None:
    bench = _bench()
    shape = bench.Shape(2_000)
    await bench.load(engine, shape)

    counts = await bench.row_counts(engine)
    assert counts["incidents"] == 2_000
    assert counts["invoices"] == shape.invoices
    assert counts["students"] == shape.students
    # One or two flags per incident, payments on about half the invoices.
    assert 2_000 < counts["incident_flags"] < 4_000
    assert shape.invoices // 3 < counts["payments"] < shape.invoices * 2 // 3
    assert counts["invoice_adjustments"] > 0
    assert counts["student_flags"] > 0
    assert await bench.unreconciled(engine) == 0

    assert len(CATALOGUE) >= 3
    for name in CATALOGUE:
        _ms, rows = await bench.run_once(engine, name, bench.school_year(filtered=False))
        assert rows > 0, name
        await bench.run_once(engine, name, bench.school_year(filtered=True))

    # Where the damage money went adds back up to what was billed.
    recovery = bench.school_year(filtered=False)
    if "recovery" in CATALOGUE:
        from storage.reports import run_report

        async with session_factory(engine)() as session:
            t = (
                await run_report(session, "recovery", recovery, tz=bench.TZ, today=bench.TODAY)
            ).totals
        parts = ("collected", "covered", "waived", "refunded", "outstanding", "cancelled")
        assert t["billed"] > 0
        assert sum(t[p] for p in parts) == t["billed"]

    # Ids given by the generator leave the sequences ahead of them: new rows still insert.
    async with session_factory(engine)() as session, session.begin():
        await session.execute(insert(m.Household).values(name="New family"))
        newest = (await session.execute(select(func.max(m.Household.id)))).scalar_one()
    assert newest == shape.households + 1


async def test_an_incident_closed_just_after_the_range_starts_is_in_the_first_period(
    engine: AsyncEngine,
) -> None:
    """00:30 on July 1 in Chicago is 05:30 UTC; on SQLite the day comes from one offset for the
    whole range (winter's), which would put it on June 30, outside every trend period."""
    from datetime import UTC, date, datetime

    from storage.reports import run_report

    bench = _bench()
    await bench.load(engine, bench.Shape(400))
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            insert(m.Incident).values(
                device_id=1,
                student_id=1,
                occurred_on=date(2025, 6, 30),
                description="",
                status="closed",
                opened_at=datetime(2025, 6, 30, 20, 0, tzinfo=UTC),
                closed_at=datetime(2025, 7, 1, 5, 30, tzinfo=UTC),
            )
        )
    filters = bench.ReportFilters(date(2025, 7, 1), date(2026, 6, 30))
    async with session_factory(engine)() as session:
        result = await run_report(session, "closure-time", filters, tz=bench.TZ, today=bench.TODAY)
    first = result.rows[0]
    assert first[0] == date(2025, 7, 1)
    assert first[1] >= 1
