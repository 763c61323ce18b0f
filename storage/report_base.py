"""What every report query shares: the filters as SQL, local days and trend buckets on both
backends, and the catalogue each report module registers into.

A report is an async function `(ReportQuery) -> ReportResult` registered with `@report(spec)`.
It aggregates in SQL (GROUP BY, SUM, COUNT) and returns only the rows a CSV will hold; it never
loads the invoices or incidents it summarises into Python.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Date, Integer, String, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.reports import Period, ReportFilters, ReportResult, ReportSpec, Trend

Runner = Callable[["ReportQuery"], Awaitable[ReportResult]]
CATALOGUE: dict[str, ReportSpec] = {}
RUNNERS: dict[str, Runner] = {}


def report(spec: ReportSpec) -> Callable[[Runner], Runner]:
    """Register a report under `spec.name` (the modules are imported by storage.reports)."""

    def add(fn: Runner) -> Runner:
        if spec.name in CATALOGUE:
            raise RuntimeError(f"report {spec.name!r} registered twice")
        CATALOGUE[spec.name] = spec
        RUNNERS[spec.name] = fn
        return fn

    return add


@dataclass(frozen=True)
class ReportQuery:
    """One report run: the session (one snapshot), the filters, the district's zone and today."""

    session: AsyncSession
    spec: ReportSpec
    filters: ReportFilters
    tz: tzinfo
    today: date

    @property
    def is_pg(self) -> bool:
        bind = self.session.bind
        return bind is not None and bind.dialect.name == "postgresql"

    def result(
        self,
        rows: list[tuple[Any, ...]],
        summary: list[str],
        totals: dict[str, int] | None = None,
        trend: Trend | None = None,
    ) -> ReportResult:
        """This run's result: its spec and filters with the rows, summary, totals and trend."""
        return ReportResult(self.spec, self.filters, rows, summary, totals or {}, trend)

    # --- the date range -------------------------------------------------------------------

    @property
    def start(self) -> datetime:
        """The first instant of date_from in the district's zone, in UTC."""
        return datetime.combine(self.filters.date_from, time.min, tzinfo=self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first instant after date_to in the district's zone, in UTC (exclusive)."""
        day_after = self.filters.date_to + timedelta(days=1)
        return datetime.combine(day_after, time.min, tzinfo=self.tz).astimezone(UTC)

    def at_in_range(self, column: Any) -> list[ColumnElement[bool]]:
        """A timestamp column within the range's district days."""
        return [column >= self.start, column < self.end]

    def day_in_range(self, column: Any) -> list[ColumnElement[bool]]:
        """A date column within the range (both ends included)."""
        return [column >= self.filters.date_from, column <= self.filters.date_to]

    # --- filters --------------------------------------------------------------------------

    def student_scope(self, student_id: Any) -> list[ColumnElement[bool]]:
        """Conditions keeping rows whose student is in the chosen buildings and grades."""
        f = self.filters
        if not f.buildings and not f.grades:
            return []
        students = select(m.Student.id)
        if f.buildings:
            students = students.join(m.Building, m.Building.id == m.Student.building_id).where(
                func.lower(m.Building.name).in_([b.lower() for b in f.buildings])
            )
        if f.grades:
            students = students.where(m.Student.grade.in_(f.grades))
        return [student_id.in_(students)]

    def device_scope(self, device_id: Any) -> list[ColumnElement[bool]]:
        """Conditions keeping rows whose device is one of the chosen models (rows without a
        device, such as fee invoices, drop out when a model is chosen)."""
        if not self.filters.models:
            return []
        devices = select(m.Device.id).where(
            func.lower(m.Device.model).in_([x.lower() for x in self.filters.models])
        )
        return [device_id.in_(devices)]

    def scope(self, student_id: Any, device_id: Any | None = None) -> list[ColumnElement[bool]]:
        out = self.student_scope(student_id)
        if device_id is not None:
            out += self.device_scope(device_id)
        elif self.filters.models:
            # This report's rows have no device, so a model filter leaves nothing.
            out.append(literal(False))
        return out

    # --- days and trend buckets -----------------------------------------------------------

    def local_day(self, column: Any) -> ColumnElement[Any]:
        """A UTC timestamp column as the district's day (text YYYY-MM-DD on both backends).

        PostgreSQL converts with the zone's rules. SQLite has no time zones, so it shifts by the
        zone's offset in the middle of the range: a daylight-saving change inside the range can
        move an event within an hour of midnight to the neighbouring day.
        """
        if self.is_pg:
            name = getattr(self.tz, "key", None) or "UTC"
            return func.to_char(func.timezone(name, column), "YYYY-MM-DD")
        middle = self.start + (self.end - self.start) / 2
        offset = middle.astimezone(self.tz).utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        day = func.date(column, f"{minutes:+d} minutes")
        # Columns passed here are already limited to the range (at_in_range); at its edges that
        # one offset can push an event a day outside, into a trend bucket that doesn't exist.
        first, last = self.filters.date_from.isoformat(), self.filters.date_to.isoformat()
        return func.max(func.min(day, last), first)

    def bucket(self, day: Any, period: Period) -> ColumnElement[Any]:
        """The first day (text YYYY-MM-DD) of the period holding `day`, a date or local-day
        text expression. Weeks start on Monday."""
        if self.is_pg:
            as_date = day if isinstance(day.type, Date) else cast(day, Date)
            if period is Period.DAY:
                return func.to_char(as_date, "YYYY-MM-DD")
            return func.to_char(func.date_trunc(period.value, as_date), "YYYY-MM-DD")
        if period is Period.DAY:
            return func.date(day)
        if period is Period.MONTH:
            return func.strftime("%Y-%m-01", day)
        # strftime('%w') is 0 on Sunday; step back to Monday.
        back = (cast(func.strftime("%w", day), Integer) + 6) % 7
        return func.date(day, "-" + cast(back, String) + " days")

    # --- dialect helpers ------------------------------------------------------------------

    def hours_between(self, start: Any, end: Any) -> ColumnElement[Any]:
        """Hours from one timestamp column to another, as a float, on both backends."""
        if self.is_pg:
            return func.extract("epoch", end - start) / 3600.0
        return (func.julianday(end) - func.julianday(start)) * 24.0

    def joined_text(self, column: Any, separator: str = ", ") -> ColumnElement[Any]:
        """An aggregate joining a text column's values into one cell, sorted.

        PostgreSQL sorts inside string_agg. SQLite (before 3.44) has no ORDER BY in aggregates
        and joins values in the order rows arrive, so callers aggregate over a sorted subquery.
        """
        if self.is_pg:
            return func.string_agg(column, aggregate_order_by(literal(separator), column))
        return func.group_concat(column, separator)


def parse_bucket(text: str | date) -> date:
    return text if isinstance(text, date) else date.fromisoformat(str(text)[:10])


async def check_filters(session: AsyncSession, filters: ReportFilters) -> None:
    """Unknown building names are refused with the names that exist, not answered with zeros."""
    if not filters.buildings:
        return
    wanted = {b.lower(): b for b in filters.buildings}
    found = set(
        (
            await session.execute(
                select(func.lower(m.Building.name)).where(
                    func.lower(m.Building.name).in_(list(wanted))
                )
            )
        ).scalars()
    )
    missing = [wanted[k] for k in wanted if k not in found]
    if missing:
        names = sorted((await session.execute(select(m.Building.name))).scalars())
        listed = ", ".join(names[:15]) or _("none yet")
        raise ValidationError(
            _(
                "There's no building called {names}. Buildings: {listed}.",
                names=", ".join(repr(x) for x in missing),
                listed=listed,
            ),
            field="building",
        )
