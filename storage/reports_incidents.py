"""Incident reports: incidents by type (with a trend)."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import models as m
from storage.report_base import ReportQuery, parse_bucket, report
from workflows.reports import (
    Audience,
    ReportResult,
    ReportSpec,
    Trend,
    percent,
    period_for,
    periods_between,
)

NO_TYPE = "(no type)"

INCIDENTS_BY_TYPE = ReportSpec(
    name="incidents-by-type",
    title="Incidents by Type",
    description="Incidents per flag (type) that happened in the range, with a trend.",
    audience=Audience.GENERAL,
    headers=("type", "incidents", "percent_of_incidents"),
    has_trend=True,
    range_means="happened",
)


@report(INCIDENTS_BY_TYPE)
async def incidents_by_type(q: ReportQuery) -> ReportResult:
    inc = m.Incident
    where = [*q.day_in_range(inc.occurred_on), *q.scope(inc.student_id, inc.device_id)]
    flag = func.coalesce(m.IncidentFlag.flag, NO_TYPE)
    joined = select(inc.id).outerjoin(m.IncidentFlag, m.IncidentFlag.incident_id == inc.id)
    total = int(
        (await q.session.execute(select(func.count(inc.id)).where(*where))).scalar_one() or 0
    )
    by_type = (
        await q.session.execute(
            joined.with_only_columns(flag.label("flag"), func.count(inc.id))
            .where(*where)
            .group_by(flag)
            .order_by(func.count(inc.id).desc(), flag)
        )
    ).all()
    period = period_for(q.filters.date_from, q.filters.date_to)
    bucket = q.bucket(inc.occurred_on, period)
    per_period = (
        await q.session.execute(
            joined.with_only_columns(bucket.label("bucket"), flag.label("flag"), func.count(inc.id))
            .where(*where)
            .group_by(bucket, flag)
        )
    ).all()
    periods = periods_between(q.filters.date_from, q.filters.date_to, period)
    index = {p: i for i, p in enumerate(periods)}
    series: dict[str, list[float]] = {str(f): [0.0] * len(periods) for f, _n in by_type}
    for b, f, n in per_period:
        series[str(f)][index[parse_bucket(b)]] = float(n)
    rows = [(str(f), int(n), percent(int(n), total)) for f, n in by_type]
    top = ", ".join(f"{f} {n}" for f, n, _p in rows[:3]) or "none"
    return ReportResult(
        spec=q.spec,
        filters=q.filters,
        rows=rows,
        summary=[
            f"{total} incident{'s' if total != 1 else ''} happened "
            f"({q.filters.describe()}). Most common: {top}.",
            "An incident with several flags counts once under each.",
        ],
        totals={"incidents": total},
        trend=Trend(
            title=f"Incidents by type per {period.value}",
            period=period,
            periods=tuple(periods),
            series={k: tuple(v) for k, v in series.items()},
            unit="incidents",
        ),
    )
