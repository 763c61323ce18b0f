"""Every report, by name: the catalogue people pick from and the one way to run a report.

The report modules register themselves (storage.report_base.report) when imported here.
"""

from __future__ import annotations

from datetime import date, tzinfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage import (
    reports_incidents,  # noqa: F401 - registers its reports
    reports_insurance,  # noqa: F401 - registers its reports
    reports_money,  # noqa: F401 - registers its reports
)
from storage.report_base import CATALOGUE, RUNNERS, ReportQuery, check_filters
from workflows.errors import ValidationError
from workflows.reports import ReportFilters, ReportResult

__all__ = ["CATALOGUE", "run_report"]


async def run_report(
    session: AsyncSession, name: str, filters: ReportFilters, *, tz: tzinfo, today: date
) -> ReportResult:
    """Compute one report. The caller has checked the actor may see it (require_report)."""
    spec = CATALOGUE.get(name)
    if spec is None:
        raise ValidationError(f"There's no report called {name!r}.")
    await check_filters(session, filters)
    return await RUNNERS[name](ReportQuery(session, spec, filters, tz, today))
