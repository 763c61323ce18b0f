"""Incident reports: incidents by type and hours to closure (both trended), repeat offenders."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from storage import models as m
from storage.report_base import ReportQuery, parse_bucket, report
from workflows.i18n import N_, _, ngettext
from workflows.labels import flag_label
from workflows.reports import (
    Audience,
    Period,
    ReportResult,
    ReportSpec,
    Trend,
    percent,
    period_for,
    periods_between,
)

# In the CSV rows as written; translated where a chart or summary shows it.
NO_TYPE = N_("(no type)")
# Trend titles, by period.
_BY_TYPE_TITLES = {
    Period.DAY: N_("Incidents by type per day"),
    Period.WEEK: N_("Incidents by type per week"),
    Period.MONTH: N_("Incidents by type per month"),
}
# A trend's unit stays English (what it measures); the chart's axis translates it.
INCIDENTS_UNIT = N_("incidents")
HOURS_UNIT = N_("hours")
_CLOSURE_TITLES = {
    Period.DAY: N_("Average hours to closure per day"),
    Period.WEEK: N_("Average hours to closure per week"),
    Period.MONTH: N_("Average hours to closure per month"),
}


def _trend(
    title: str, period: Period, periods: list[date], series: dict[str, list[float]], unit: str
) -> Trend:
    """A chart over `periods` from the series filled in per period."""
    return Trend(
        title=title,
        period=period,
        periods=tuple(periods),
        series={k: tuple(v) for k, v in series.items()},
        unit=unit,
    )


def _shown(flag: object) -> str:
    """A flag as a chart legend or summary names it; CSV rows keep the flag's id."""
    return _(NO_TYPE) if flag == NO_TYPE else flag_label(str(flag))


INCIDENTS_BY_TYPE = ReportSpec(
    name="incidents-by-type",
    title=N_("Incidents by Type"),
    description=N_("Incidents per flag (type) that happened in the range, with a trend."),
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
    series: dict[str, list[float]] = {_shown(f): [0.0] * len(periods) for f, _n in by_type}
    for b, f, n in per_period:
        series[_shown(f)][index[parse_bucket(b)]] = float(n)
    rows = [(str(f), int(n), percent(int(n), total)) for f, n in by_type]
    top = ", ".join(f"{_shown(f)} {n}" for f, n, _p in rows[:3]) or _("none")
    return q.result(
        rows,
        [
            ngettext(
                "{n} incident happened ({filters}). Most common: {top}.",
                "{n} incidents happened ({filters}). Most common: {top}.",
                total,
                filters=q.filters.describe(),
                top=top,
            ),
            _("An incident with several flags counts once under each."),
        ],
        totals={"incidents": total},
        trend=_trend(_(_BY_TYPE_TITLES[period]), period, periods, series, INCIDENTS_UNIT),
    )


# --- closure time ---------------------------------------------------------------------------

ALL_INCIDENTS = N_("All incidents")  # a chart's legend, translated where it is drawn

CLOSURE_TIME = ReportSpec(
    name="closure-time",
    title=N_("Average Hours to Closure"),
    description=N_(
        "Incidents closed in the range and the average hours from opening to closing, "
        "per period and per type, with a trend."
    ),
    audience=Audience.GENERAL,
    headers=("period_start", "incidents_closed", "average_hours"),
    has_trend=True,
    range_means="closed",
)


def _hours(value: object) -> float | None:
    return None if value is None else round(float(str(value)), 1)


@report(CLOSURE_TIME)
async def closure_time(q: ReportQuery) -> ReportResult:
    inc = m.Incident
    where = [
        inc.closed_at.is_not(None),
        *q.at_in_range(inc.closed_at),
        *q.scope(inc.student_id, inc.device_id),
    ]
    hours = q.hours_between(inc.opened_at, inc.closed_at)
    period = period_for(q.filters.date_from, q.filters.date_to)
    bucket = q.bucket(q.local_day(inc.closed_at), period)
    closed_n, overall = (
        await q.session.execute(select(func.count(inc.id), func.avg(hours)).where(*where))
    ).one()
    per_period = (
        await q.session.execute(
            select(bucket.label("bucket"), func.count(inc.id), func.avg(hours))
            .where(*where)
            .group_by(bucket)
        )
    ).all()
    flag = func.coalesce(m.IncidentFlag.flag, NO_TYPE)
    per_type = (
        await q.session.execute(
            select(bucket.label("bucket"), flag.label("flag"), func.avg(hours))
            .select_from(inc)
            .outerjoin(m.IncidentFlag, m.IncidentFlag.incident_id == inc.id)
            .where(*where)
            .group_by(bucket, flag)
            .order_by(flag)
        )
    ).all()
    periods = periods_between(q.filters.date_from, q.filters.date_to, period)
    index = {p: i for i, p in enumerate(periods)}
    counts = [0] * len(periods)
    averages: list[float | None] = [None] * len(periods)
    for b, n, avg in per_period:
        i = index[parse_bucket(b)]
        counts[i], averages[i] = int(n), _hours(avg)
    # A period with nothing closed has no average: NaN leaves a gap in the chart, not a zero.
    nan = float("nan")
    series: dict[str, list[float]] = {_(ALL_INCIDENTS): [nan if a is None else a for a in averages]}
    for b, f, avg in per_type:
        line = series.setdefault(_shown(f), [nan] * len(periods))
        line[index[parse_bucket(b)]] = _hours(avg) or 0.0
    rows = [(p, counts[i], averages[i]) for i, p in enumerate(periods)]
    closed = int(closed_n or 0)
    average = _hours(overall)
    filters = q.filters.describe()
    summary = [
        _("No incidents closed ({filters}).", filters=filters)
        if not closed
        else ngettext(
            "{n} incident closed ({filters}).",
            "{n} incidents closed ({filters}).",
            closed,
            filters=filters,
        )
    ]
    if average is not None:
        summary.append(_("Average time to closure: {average} hours.", average=average))
    return q.result(
        rows,
        summary,
        totals={"incidents_closed": closed},
        trend=_trend(_(_CLOSURE_TITLES[period]), period, periods, series, HOURS_UNIT),
    )


# --- repeat offenders -----------------------------------------------------------------------

REPEAT_OFFENDERS = ReportSpec(
    name="repeat-offenders",
    title=N_("Repeat Offenders"),
    description=N_(
        "Students flagged as repeat offenders in the range: their tripped flags, "
        "building, grade and last incident date."
    ),
    audience=Audience.GENERAL,
    headers=(
        "student",
        "sis_id",
        "building",
        "grade",
        "flags",
        "flag_count",
        "first_flagged_on",
        "last_incident_on",
    ),
    range_means="flagged",
)


@report(REPEAT_OFFENDERS)
async def repeat_offenders(q: ReportQuery) -> ReportResult:
    sf = m.StudentFlag
    where = [*q.at_in_range(sf.flagged_at), *q.student_scope(sf.student_id)]
    if q.filters.models:
        # A flag belongs to the model of the device in the incident that tripped it.
        tripped_on = select(m.Incident.id).where(*q.device_scope(m.Incident.device_id))
        where.append(sf.incident_id.in_(tripped_on))
    # One row per student and flag, sorted by flag, so SQLite joins the names in order too.
    per_flag = (
        select(
            sf.student_id.label("student_id"),
            sf.flag.label("flag"),
            func.count(sf.id).label("times"),
            func.min(sf.flagged_at).label("first_at"),
        )
        .where(*where)
        .group_by(sf.student_id, sf.flag)
        .order_by(sf.student_id, sf.flag)
        .subquery()
    )
    per_student = (
        select(
            per_flag.c.student_id,
            q.joined_text(per_flag.c.flag).label("flags"),
            func.sum(per_flag.c.times).label("flag_count"),
            func.min(per_flag.c.first_at).label("first_at"),
        )
        .group_by(per_flag.c.student_id)
        .subquery()
    )
    last_incident = (
        select(func.max(m.Incident.occurred_on))
        .where(
            m.Incident.student_id == per_student.c.student_id,
            m.Incident.occurred_on <= q.filters.date_to,
        )
        .scalar_subquery()
    )
    st = m.Student
    name = st.last_name + ", " + st.first_name
    listing = (
        select(
            name,
            st.sis_id,
            m.Building.name,
            st.grade,
            per_student.c.flags,
            per_student.c.flag_count,
            q.local_day(per_student.c.first_at),
            last_incident.label("last_incident"),
        )
        .select_from(per_student)
        .join(st, st.id == per_student.c.student_id)
        .outerjoin(m.Building, m.Building.id == st.building_id)
        .order_by(last_incident.desc().nulls_last(), st.last_name, st.first_name, st.id)
    )
    rows = [
        (
            str(student),
            str(sis),
            building or "",
            grade or "",
            str(flags),
            int(count),
            parse_bucket(first),
            parse_bucket(last) if last is not None else None,
        )
        for student, sis, building, grade, flags, count, first, last in (
            await q.session.execute(listing)
        ).all()
    ]
    n = len(rows)
    summary = [
        ngettext(
            "{n} student flagged as repeat offender ({filters}).",
            "{n} students flagged as repeat offenders ({filters}).",
            n,
            filters=q.filters.describe(),
        )
    ]
    if rows:
        summary.append(
            _("Most recent incident: {student} on {day}.", student=rows[0][0], day=rows[0][7])
        )
    return q.result(
        rows,
        summary,
        totals={"students": n, "flags": sum(r[5] for r in rows)},
    )
