"""Every report, by name: the catalogue people pick from and the one way to run a report.

The report modules register themselves (storage.report_base.report) when imported here.
"""

from __future__ import annotations

from datetime import date, tzinfo

from sqlalchemy import select

from storage import models as m
from storage import (
    reports_incidents,  # noqa: F401 - registers its reports
    reports_insurance,  # noqa: F401 - registers its reports
    reports_money,  # noqa: F401 - registers its reports
)
from storage.report_base import CATALOGUE, RUNNERS, ReportQuery, check_filters
from storage.session_of import Db, session_of
from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.reports import ReportFilters, ReportResult

__all__ = ["CATALOGUE", "building_names", "run_report"]


async def run_report(
    db: Db, name: str, filters: ReportFilters, *, tz: tzinfo, today: date
) -> ReportResult:
    """Compute one report. The caller has checked the actor may see it (require_report)."""
    session = session_of(db)
    spec = CATALOGUE.get(name)
    if spec is None:
        raise ValidationError(_("There's no report called {name}.", name=repr(name)))
    await check_filters(session, filters)
    return await RUNNERS[name](ReportQuery(session, spec, filters, tz, today))


async def building_names(db: Db, *, limit: int) -> list[str]:
    """The buildings a report can be narrowed to, by name (the first `limit`)."""
    stmt = select(m.Building.name).order_by(m.Building.name).limit(limit)
    return list((await session_of(db).execute(stmt)).scalars())
