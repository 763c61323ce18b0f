"""The reports: what each one is, who may see it, and how people ask for one.

Plain rules, no I/O: the report catalogue, the filters every report takes (a date range, and
optionally buildings, grades and device models), parsing "/report <name> [range] [filters]",
and the period a trend is bucketed by. The figures themselves are computed in SQL
(storage/reports.py); the result they come back in is defined here so every surface (Slack,
CLI, weekly digest) renders the same thing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from workflows.errors import ValidationError
from workflows.grades import clean_grades
from workflows.i18n import _
from workflows.permissions import Actor, Permission, require
from workflows.school_year import school_year_of

MAX_RANGE_DAYS = 3 * 366
MAX_FILTER_VALUES = 20


class Audience(StrEnum):
    """Money reports need View Financial Reports; the others View Reports."""

    GENERAL = "general"
    FINANCIAL = "financial"

    @property
    def permission(self) -> Permission:
        if self is Audience.FINANCIAL:
            return Permission.VIEW_FINANCIAL_REPORTS
        return Permission.VIEW_REPORTS


@dataclass(frozen=True)
class ReportSpec:
    name: str  # what people type: `/report overdue`
    title: str
    description: str
    audience: Audience
    headers: tuple[str, ...]  # the CSV's fixed header row (README lists them)
    # Headers whose values are int cents; the CSV and the summary write them as dollars.
    money: frozenset[str] = frozenset()
    has_trend: bool = False
    # What the date range selects, for the help text and the summary line.
    range_means: str = "issued"


@dataclass(frozen=True)
class ReportFilters:
    """Every report takes these. Empty tuples mean "all"."""

    date_from: date
    date_to: date
    buildings: tuple[str, ...] = ()  # building names, matched without case
    grades: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # device models, matched without case

    def __post_init__(self) -> None:
        check_range(self.date_from, self.date_to)

    def describe(self) -> str:
        parts = [
            _(
                "{start} to {end}",
                start=self.date_from.isoformat(),
                end=self.date_to.isoformat(),
            )
        ]
        if self.buildings:
            parts.append(_("building {names}", names=", ".join(self.buildings)))
        if self.grades:
            parts.append(_("grade {names}", names=", ".join(self.grades)))
        if self.models:
            parts.append(_("model {names}", names=", ".join(self.models)))
        return "; ".join(parts)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def period_for(date_from: date, date_to: date) -> Period:
    """Days for a month or less, weeks up to about half a year, months beyond."""
    days = (date_to - date_from).days + 1
    if days <= 31:
        return Period.DAY
    if days <= 190:
        return Period.WEEK
    return Period.MONTH


def period_start(d: date, period: Period) -> date:
    if period is Period.DAY:
        return d
    if period is Period.WEEK:
        return d - timedelta(days=d.weekday())  # ISO weeks start on Monday
    return d.replace(day=1)


def periods_between(date_from: date, date_to: date, period: Period) -> list[date]:
    """Every period's first day from the one holding date_from to the one holding date_to, so a
    trend shows the empty periods too."""
    out: list[date] = []
    current = period_start(date_from, period)
    while current <= date_to:
        out.append(current)
        if period is Period.DAY:
            current += timedelta(days=1)
        elif period is Period.WEEK:
            current += timedelta(days=7)
        else:
            current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return out


@dataclass(frozen=True)
class Trend:
    """A series per label over consecutive periods (e.g. incidents per flag per week)."""

    title: str
    period: Period
    periods: tuple[date, ...]
    series: dict[str, tuple[float, ...]]
    unit: str  # "incidents", "hours"


@dataclass(frozen=True)
class ReportResult:
    spec: ReportSpec
    filters: ReportFilters
    rows: list[tuple[Any, ...]]  # one per CSV line, in `spec.headers` order
    summary: list[str]  # a few sentences for the channel and the terminal
    totals: dict[str, int] = field(default_factory=dict)
    trend: Trend | None = None


def check_range(date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise ValidationError(_("The range ends before it starts."), field="range")
    if (date_to - date_from).days > MAX_RANGE_DAYS:
        raise ValidationError(_("Choose a range of three years or less."), field="range")


def require_report(actor: Actor, spec: ReportSpec) -> None:
    """Every report needs View Reports; money reports also View Financial Reports."""
    require(actor, Permission.VIEW_REPORTS)
    if spec.audience is Audience.FINANCIAL:
        require(actor, Permission.VIEW_FINANCIAL_REPORTS)


def visible_reports(actor: Actor, catalogue: dict[str, ReportSpec]) -> list[ReportSpec]:
    """What to offer in the picker: only reports the actor may run."""
    if not actor.can(Permission.VIEW_REPORTS):
        return []
    return [
        spec
        for spec in catalogue.values()
        if spec.audience is Audience.GENERAL or actor.can(Permission.VIEW_FINANCIAL_REPORTS)
    ]


# --- parsing "/report <name> [range] [filters]" ---------------------------------------------

_ISO = r"\d{4}-\d{2}-\d{2}"
_RANGE_RE = re.compile(rf"^({_ISO})(?:\.\.|/|:)({_ISO})$")
_FILTER_KEYS = {
    "building": "buildings",
    "school": "buildings",
    "grade": "grades",
    "model": "models",
}


def _iso(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(
            _("{text!r} isn't a date; write YYYY-MM-DD.", text=text), field="range"
        ) from exc


def named_range(
    word: str, today: date, *, start_month: int = 7, start_day: int = 1
) -> tuple[date, date] | None:
    """Ranges people say: this-year (the school year so far), last-year, this-month,
    last-month, this-week, last-week, last-30-days (any number of days), ytd."""
    w = word.lower()
    year = school_year_of(today, start_month, start_day)
    if w in ("this-year", "school-year", "year"):
        return year.start, today
    if w == "last-year":
        prior = school_year_of(year.start - timedelta(days=1), start_month, start_day)
        return prior.start, prior.end
    if w == "ytd":
        return date(today.year, 1, 1), today
    if w == "this-month":
        return today.replace(day=1), today
    if w == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    if w == "this-week":
        return today - timedelta(days=today.weekday()), today
    if w == "last-week":
        start = today - timedelta(days=today.weekday() + 7)
        return start, start + timedelta(days=6)
    match = re.fullmatch(r"last-(\d{1,4})-days", w)
    if match:
        days = int(match.group(1))
        if days < 1:
            return None
        return today - timedelta(days=days - 1), today
    return None


def default_range(today: date, *, start_month: int = 7, start_day: int = 1) -> tuple[date, date]:
    """The school year so far."""
    return school_year_of(today, start_month, start_day).start, today


@dataclass(frozen=True)
class ReportRequest:
    name: str
    filters: ReportFilters


def parse_request(
    text: str,
    catalogue: dict[str, ReportSpec],
    today: date,
    *,
    start_month: int = 7,
    start_day: int = 1,
) -> ReportRequest:
    """`overdue 2026-01-01..2026-03-31 building:"Lincoln Middle" grade:7,8 model:"HP 11 G9"`.

    The range may also be two dates, or a named range (this-year, last-month, last-30-days…);
    without one it is the school year so far. Filter values are comma-separated.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValidationError(_("A quote is left open."), field="text") from exc
    if not words:
        raise ValidationError(_("Name a report."), field="name")
    name = words[0].lower()
    if name not in catalogue:
        known = ", ".join(sorted(catalogue))
        raise ValidationError(
            _("There's no report called {name!r}. Reports: {known}.", name=words[0], known=known)
        )
    dates: list[date] = []
    picked: tuple[date, date] | None = None
    values: dict[str, list[str]] = {"buildings": [], "grades": [], "models": []}
    for word in words[1:]:
        key, sep, value = word.partition(":")
        if sep and key.lower() in _FILTER_KEYS and not re.fullmatch(_ISO, key):
            items = [v.strip() for v in value.split(",") if v.strip()]
            if not items:
                raise ValidationError(_("Say which {key}: {key}:VALUE.", key=key.lower()))
            values[_FILTER_KEYS[key.lower()]].extend(items)
            continue
        span = _RANGE_RE.match(word)
        if span:
            picked = (_iso(span.group(1)), _iso(span.group(2)))
            continue
        if re.fullmatch(_ISO, word):
            dates.append(_iso(word))
            continue
        named = named_range(word, today, start_month=start_month, start_day=start_day)
        if named is not None:
            picked = named
            continue
        raise ValidationError(
            _(
                "I don't understand {word!r}. Give a range (2026-01-01..2026-03-31, this-year, "
                "last-month, last-30-days) and filters (building:NAME grade:7 model:NAME).",
                word=word,
            )
        )
    if dates:
        if picked is not None or len(dates) > 2:
            raise ValidationError(
                _("Give one range: two dates, or one named range."), field="range"
            )
        picked = (dates[0], dates[-1]) if len(dates) == 2 else (dates[0], today)
    date_from, date_to = picked or default_range(
        today, start_month=start_month, start_day=start_day
    )
    for key, items in values.items():
        if len(items) > MAX_FILTER_VALUES:
            raise ValidationError(_("At most {max} {key} at once.", max=MAX_FILTER_VALUES, key=key))
    return ReportRequest(
        name=name,
        filters=ReportFilters(
            date_from=date_from,
            date_to=date_to,
            buildings=tuple(values["buildings"]),
            grades=clean_grades(values["grades"], field="grade"),
            models=tuple(values["models"]),
        ),
    )


def percent(part: int, whole: int) -> float | None:
    """A share to one decimal place, or None when there is nothing to share."""
    if whole <= 0:
        return None
    return round(100 * part / whole, 1)
