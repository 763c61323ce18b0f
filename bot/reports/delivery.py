"""Running a report for delivery: one read snapshot, the district's today and school year, and
the chart that goes with a trend. Slack `/report` and `devicecare report <name>` both come
through here, so they give the same numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

from bot.reports.charts import trend_png
from bot.runtime import Runtime
from storage.db import read_one_snapshot
from storage.reports import run_report
from storage.uow import SqlUnitOfWork
from workflows.clock import local_date
from workflows.i18n import _
from workflows.reports import ReportFilters, ReportResult


@dataclass(frozen=True)
class SchoolYear:
    """Where the district's school year starts (district settings), for named ranges."""

    start_month: int = 7
    start_day: int = 1


@asynccontextmanager
async def snapshot(runtime: Runtime) -> AsyncIterator[SqlUnitOfWork]:
    """A read-only store whose queries all see one snapshot, so a report's totals and rows add
    up while invoices change: SQLite's deferred read transaction in WAL mode; REPEATABLE READ
    on PostgreSQL (set before the first query of the transaction)."""
    async with runtime.reads() as store:
        await read_one_snapshot(store)
        yield store


def district_today(runtime: Runtime) -> date:
    return local_date(runtime.clock.now(), runtime.settings.tz)


async def school_year(store: SqlUnitOfWork) -> SchoolYear:
    row = await store.settings.get()
    return SchoolYear(row.school_year_start_month or 7, row.school_year_start_day or 1)


async def compute(runtime: Runtime, name: str, filters: ReportFilters) -> ReportResult:
    """The report as of now, in one snapshot. The caller has checked require_report."""
    async with snapshot(runtime) as store:
        return await run_report(
            store,
            name,
            filters,
            tz=runtime.settings.tz,
            today=district_today(runtime),
        )


def chart_title(result: ReportResult) -> str:
    """The chart's title (drawn on it and kept in the PNG's Title metadata)."""
    assert result.trend is not None
    f = result.filters
    return _(
        "{title}, {start} to {end}",
        title=result.trend.title,
        start=f.date_from.isoformat(),
        end=f.date_to.isoformat(),
    )


def chart_png(result: ReportResult) -> bytes | None:
    """The trend's chart, or None for a report without one."""
    if result.trend is None:
        return None
    return trend_png(result.trend, title=chart_title(result))
