from datetime import date

import pytest

from workflows.errors import ValidationError
from workflows.offenders import (
    DEFAULT_RULES,
    INCIDENT_FLAGS,
    OffenderRule,
    flag_label,
    newly_tripped,
    parse_flags,
    tripped,
    window_start,
)

PHYSICAL = OffenderRule("physical_damage", 3)


def test_default_rule() -> None:
    assert DEFAULT_RULES == (OffenderRule("physical_damage", 3, "school_year", None),)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"flag": "screen", "threshold": 0}, "threshold"),
        ({"flag": "screen", "threshold": 2, "window": "days"}, "days"),
        ({"flag": "screen", "threshold": 2, "window": "days", "days": 0}, "days"),
        ({"flag": "screen", "threshold": 2, "days": 30}, "days"),
        ({"flag": "screen", "threshold": 2, "window": "weeks", "days": 3}, "window"),
    ],
)
def test_rule_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        OffenderRule(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_window_start_school_year() -> None:
    assert window_start(PHYSICAL, date(2026, 3, 1)) == date(2025, 7, 1)
    assert window_start(PHYSICAL, date(2026, 7, 1)) == date(2026, 7, 1)
    assert window_start(PHYSICAL, date(2026, 3, 1), year_start_month=8, year_start_day=15) == date(
        2025, 8, 15
    )


def test_window_start_days_includes_today() -> None:
    rule = OffenderRule("screen", 2, window="days", days=30)
    assert window_start(rule, date(2026, 3, 31)) == date(2026, 3, 2)
    assert window_start(OffenderRule("screen", 2, "days", 1), date(2026, 3, 31)) == date(
        2026, 3, 31
    )


def test_tripped_counts_only_inside_the_school_year() -> None:
    dates = [date(2025, 6, 30), date(2025, 9, 1), date(2026, 1, 5)]
    assert not tripped(PHYSICAL, dates, date(2026, 2, 1))
    assert tripped(PHYSICAL, [*dates, date(2026, 2, 1)], date(2026, 2, 1))


def test_tripped_ignores_future_dates() -> None:
    dates = [date(2025, 9, 1), date(2025, 10, 1), date(2026, 5, 1)]
    assert not tripped(PHYSICAL, dates, date(2026, 2, 1))


def test_tripped_resets_with_new_school_year() -> None:
    dates = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert tripped(PHYSICAL, dates, date(2026, 6, 30))
    assert not tripped(PHYSICAL, dates, date(2026, 7, 1))


def test_tripped_rolling_days_window() -> None:
    rule = OffenderRule("charger", 2, window="days", days=30)
    assert tripped(rule, [date(2026, 3, 2), date(2026, 3, 31)], date(2026, 3, 31))
    assert not tripped(rule, [date(2026, 3, 1), date(2026, 3, 31)], date(2026, 3, 31))


def test_tripped_accepts_a_generator() -> None:
    assert tripped(OffenderRule("lost", 1), (d for d in [date(2026, 1, 1)]), date(2026, 1, 2))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(2, 3, True), (0, 3, True), (1, 2, False), (3, 4, False), (2, 5, True), (3, 3, False)],
)
def test_newly_tripped_only_on_crossing(before: int, after: int, expected: bool) -> None:
    assert newly_tripped(PHYSICAL, before, after) is expected


def test_flag_labels() -> None:
    assert INCIDENT_FLAGS["water"] == "Liquid Damage"
    assert INCIDENT_FLAGS["physical_damage"] == "Physical Damage"
    assert len(INCIDENT_FLAGS) == 10
    assert flag_label("water") == "Liquid Damage"
    assert flag_label("cracked_hinge") == "Cracked Hinge"


def test_parse_flags_normalises_dedupes_and_keeps_order() -> None:
    values = ["Screen", "physical damage", "SCREEN", "Liquid Damage", " battery ", ""]
    assert parse_flags(values) == ("screen", "physical_damage", "water", "battery")


def test_parse_flags_allows_custom_district_flags() -> None:
    assert parse_flags(["Cracked Hinge", "sticker_damage2"]) == ("cracked_hinge", "sticker_damage2")


@pytest.mark.parametrize("bad", ["x", "9lives", "drop!", "a" * 41, "caf\u00e9"])
def test_parse_flags_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_flags(["screen", bad])
    assert info.value.field == "flags"
    assert bad[:40] in info.value.message


def test_parse_flags_empty() -> None:
    assert parse_flags([]) == ()
