from datetime import date

import pytest

from workflows.errors import ValidationError
from workflows.school_year import SchoolYear, school_year_of


def test_june_30_belongs_to_the_year_that_is_ending() -> None:
    year = school_year_of(date(2026, 6, 30))
    assert year == SchoolYear(start=date(2025, 7, 1), end=date(2026, 6, 30))
    assert year.label == "2025-2026"


def test_july_1_starts_a_new_year() -> None:
    year = school_year_of(date(2026, 7, 1))
    assert year == SchoolYear(start=date(2026, 7, 1), end=date(2027, 6, 30))
    assert year.label == "2026-2027"


def test_mid_year_dates() -> None:
    assert school_year_of(date(2026, 1, 1)).label == "2025-2026"
    assert school_year_of(date(2025, 12, 31)).label == "2025-2026"


def test_contains_is_inclusive() -> None:
    year = school_year_of(date(2025, 9, 1))
    assert year.contains(date(2025, 7, 1))
    assert year.contains(date(2026, 6, 30))
    assert not year.contains(date(2025, 6, 30))
    assert not year.contains(date(2026, 7, 1))


def test_custom_start_date() -> None:
    year = school_year_of(date(2025, 8, 14), start_month=8, start_day=15)
    assert year == SchoolYear(start=date(2024, 8, 15), end=date(2025, 8, 14))
    assert school_year_of(date(2025, 8, 15), 8, 15).start == date(2025, 8, 15)


def test_end_of_february_across_leap_year() -> None:
    year = school_year_of(date(2024, 1, 10), start_month=3, start_day=1)
    assert year.end == date(2024, 2, 29)


def test_calendar_year_label() -> None:
    assert school_year_of(date(2025, 5, 5), start_month=1).label == "2025"


@pytest.mark.parametrize(("month", "day"), [(2, 29), (13, 1), (4, 31), (0, 1)])
def test_impossible_start_day_rejected(month: int, day: int) -> None:
    with pytest.raises(ValidationError):
        school_year_of(date(2025, 1, 1), month, day)


def test_school_year_end_before_start_rejected() -> None:
    with pytest.raises(ValidationError):
        SchoolYear(start=date(2025, 7, 1), end=date(2025, 6, 30))
