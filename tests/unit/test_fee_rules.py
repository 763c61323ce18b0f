"""The annual-fee rules as plain functions: validating a definition, who matches, the terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest

from workflows.errors import ValidationError
from workflows.fees import (
    FeeDefinition,
    StudentFacts,
    billing_terms,
    clean_school_year,
    fee_line_description,
    student_matches,
    validate_fee,
)
from workflows.grades import normalize_grade, parse_grades

TODAY = date(2026, 3, 2)


def _valid(**changes: Any) -> FeeDefinition:
    fields: dict[str, Any] = {
        "code": "Tech-Fee",
        "name": "  Technology   fee ",
        "school_year": "2026-2027",
        "amount_cents": 2500,
        "grades": ("06", "7", "k"),
        "building_ids": (3, 1, 3),
        "due_date": date(2026, 9, 15),
        "today": TODAY,
    } | changes
    return validate_fee(**fields)


def test_a_valid_definition_is_cleaned() -> None:
    fee = _valid()
    assert fee == FeeDefinition(
        code="tech-fee",
        name="Technology fee",
        school_year="2026-2027",
        amount_cents=2500,
        grades=("6", "7", "KG"),
        building_ids=(1, 3),
        due_date=date(2026, 9, 15),
    )
    assert _valid(grades=(), building_ids=(), due_date=None).grades == ()


@pytest.mark.parametrize(
    ("changes", "field_name", "message"),
    [
        ({"code": "tech fee"}, "code", "isn't a usable fee code"),
        ({"code": ""}, "code", "isn't a usable fee code"),
        ({"name": "   "}, "name", "Give the fee a name"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"school_year": "2026-2028"}, "school_year", "isn't a school year"),
        ({"school_year": "26-27"}, "school_year", "isn't a school year"),
        ({"amount_cents": 0}, "amount", "more than \\$0\\.00"),
        ({"amount_cents": -100}, "amount", "more than \\$0\\.00"),
        ({"amount_cents": 100_000_01}, "amount", "more than a fee can be"),
        ({"grades": ("14",)}, "grades", "isn't a grade"),
        ({"grades": ("senior",)}, "grades", "isn't a grade"),
        ({"due_date": date(2026, 3, 1)}, "due_date", "between today and three years"),
        ({"due_date": date(2029, 12, 1)}, "due_date", "between today and three years"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(
    changes: dict[str, Any], field_name: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _valid(**changes)
    assert caught.value.field == field_name


def test_school_years_and_grades() -> None:
    assert clean_school_year(" 2026-2027 ") == "2026-2027"
    assert clean_school_year("2026") == "2026"  # a district whose year is the calendar year
    assert [normalize_grade(g) for g in ("01", "12", "k", "KG", "pk", "other")] == [
        "1", "12", "KG", "KG", "PK", "Other",
    ]  # fmt: skip
    assert parse_grades("8, 6 7,,6") == ("6", "7", "8")
    assert parse_grades("KG,1") == ("1", "KG")
    assert parse_grades("") == () and parse_grades(None) == ()


def test_who_matches() -> None:
    every = _valid(grades=(), building_ids=())
    sixth_north = _valid(grades=("6",), building_ids=(1,))
    assert student_matches(every, StudentFacts(True, None, None))
    assert not student_matches(every, StudentFacts(False, "6", 1))  # inactive students never
    assert student_matches(sixth_north, StudentFacts(True, "6", 1))
    assert not student_matches(sixth_north, StudentFacts(True, "7", 1))
    assert not student_matches(sixth_north, StudentFacts(True, "6", 2))
    assert not student_matches(sixth_north, StudentFacts(True, None, 1))
    assert not student_matches(sixth_north, StudentFacts(True, "6", None))


@dataclass
class _Fee:
    id: int = 1
    code: str = "tech-fee"
    name: str = "Technology fee"
    school_year: str = "2025-2026"
    amount_cents: int = 2500
    grades: list[str] = field(default_factory=list)
    building_ids: list[Any] = field(default_factory=list)
    due_date: date | None = None
    active: bool = True
    created_by_id: int | None = None
    created_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class _Settings:
    default_due_days: int = 30
    automation_default: bool = False


def test_billing_terms() -> None:
    terms = billing_terms(_Fee(), _Settings(), TODAY)  # type: ignore[arg-type]
    assert terms.due_date == date(2026, 4, 1)  # the district's default: 30 days
    assert (terms.amount_cents, terms.automation_enabled) == (2500, False)
    assert terms.description == fee_line_description("Technology fee", "2025-2026")
    assert terms.description == "Technology fee 2025-2026"
    fixed = billing_terms(_Fee(due_date=date(2026, 5, 1)), _Settings(), TODAY)  # type: ignore[arg-type]
    assert fixed.due_date == date(2026, 5, 1)
    with pytest.raises(ValidationError, match="has passed"):
        billing_terms(_Fee(due_date=date(2026, 3, 1)), _Settings(), TODAY)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="switched off"):
        billing_terms(_Fee(active=False), _Settings(), TODAY)  # type: ignore[arg-type]
