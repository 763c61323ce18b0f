from decimal import Decimal

import pytest

from workflows.errors import DomainError, ValidationError
from workflows.money import MAX_AMOUNT_CENTS, format_cents, parse_amount, percent_of, to_decimal


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("125", 12500),
        ("125.5", 12550),
        ("125.50", 12550),
        ("$1,234.56", 123456),
        (" 29.00 ", 2900),
        ("$ 29", 2900),
        ("0", 0),
        ("0.01", 1),
        (".75", 75),
        ("125.", 12500),
        ("007.10", 710),
        ("1,000,000", 100_000_000),
        ("10,000,000.00", MAX_AMOUNT_CENTS),
    ],
)
def test_parse_amount_accepts_human_input(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-5", "negative"),
        ("-$5.00", "negative"),
        ("$-5", "negative"),
        ("\u22125", "negative"),
        ("1.234", "two decimal places"),
        ("abc", "isn't a valid amount"),
        ("NaN", "isn't a valid amount"),
        ("inf", "isn't a valid amount"),
        ("Infinity", "isn't a valid amount"),
        ("1e5", "isn't a valid amount"),
        ("$", "isn't a valid amount"),
        (".", "isn't a valid amount"),
        ("1,23", "isn't a valid amount"),
        ("12,34.00", "isn't a valid amount"),
        ("1.2.3", "isn't a valid amount"),
        ("\u0661\u0662", "isn't a valid amount"),  # non-ASCII digits
        ("10,000,000.01", "largest allowed amount"),
        ("99999999999", "largest allowed amount"),
        ("9" * 5000, "largest allowed amount"),
    ],
)
def test_parse_amount_rejects_bad_input_naming_it(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(text)
    assert info.value.field == "amount"
    assert fragment in info.value.message
    shown = text.strip()
    if len(shown) <= 20:
        assert f'"{shown}"' in info.value.message


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_amount_rejects_empty(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(text)
    assert info.value.field == "amount"
    assert "Enter an amount" in info.value.message


def test_parse_amount_field_can_be_renamed_for_forms() -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount("x", field="unit_price")
    assert info.value.field == "unit_price"


def test_long_garbage_is_shortened_in_the_message() -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount("x" * 500)
    assert len(info.value.message) < 120


def test_domain_error_str_is_the_message() -> None:
    err = ValidationError("Nope.", field="amount")
    assert isinstance(err, DomainError)
    assert str(err) == "Nope."


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (2900, "$29.00"),
        (123456, "$1,234.56"),
        (100_000_000, "$1,000,000.00"),
        (-500, "-$5.00"),
        (-1, "-$0.01"),
    ],
)
def test_format_cents(cents: int, text: str) -> None:
    assert format_cents(cents) == text


@pytest.mark.parametrize("cents", [0, 1, 99, 100, 123456, MAX_AMOUNT_CENTS])
def test_format_then_parse_round_trips(cents: int) -> None:
    assert parse_amount(format_cents(cents)) == cents


def test_to_decimal() -> None:
    assert to_decimal(123456) == Decimal("1234.56")
    assert str(to_decimal(5)) == "0.05"


@pytest.mark.parametrize(
    ("cents", "percent", "expected"),
    [
        (333, Decimal("50"), 167),  # 166.5 rounds up
        (1, Decimal("50"), 1),  # 0.5 rounds up
        (1, Decimal("49.99"), 0),
        (30000, Decimal("80"), 24000),
        (12345, Decimal("12.5"), 1543),  # 1543.125
        (999, Decimal("33.33"), 333),  # 332.9667
        (100, Decimal("0"), 0),
        (100, Decimal("100"), 100),
        (0, Decimal("75"), 0),
    ],
)
def test_percent_of_rounds_half_up(cents: int, percent: Decimal, expected: int) -> None:
    assert percent_of(cents, percent) == expected


@pytest.mark.parametrize("percent", [Decimal("NaN"), Decimal("Infinity")])
def test_percent_of_rejects_non_finite(percent: Decimal) -> None:
    with pytest.raises(ValidationError):
        percent_of(100, percent)
