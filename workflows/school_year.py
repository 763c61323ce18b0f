"""School years: the default counting window for repeat-offender flags and reports."""

from dataclasses import dataclass
from datetime import date, timedelta

from workflows.errors import ValidationError
from workflows.i18n import _


@dataclass(frozen=True)
class SchoolYear:
    start: date
    end: date  # inclusive: the last day that still belongs to this year

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValidationError(_("A school year can't end before it starts."))

    @property
    def label(self) -> str:
        # A calendar-year school year (January start) would otherwise read "2025-2025".
        if self.start.year == self.end.year:
            return str(self.start.year)
        return f"{self.start.year}-{self.end.year}"

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end


def _first_day(year: int, month: int, day: int) -> date:
    try:
        # Checked against a non-leap year so the setting works every year (no Feb 29).
        date(2001, month, day)
        return date(year, month, day)
    except ValueError as exc:
        raise ValidationError(
            _("{month}/{day} isn't a usable first day of the school year.", month=month, day=day),
            field="school_year_start",
        ) from exc


def school_year_of(d: date, start_month: int = 7, start_day: int = 1) -> SchoolYear:
    """The school year containing `d`, for a district whose year begins on start_month/start_day."""
    start = _first_day(d.year, start_month, start_day)
    if d < start:
        start = _first_day(d.year - 1, start_month, start_day)
    next_start = _first_day(start.year + 1, start_month, start_day)
    return SchoolYear(start=start, end=next_start - timedelta(days=1))
