"""The one CSV writer: formula-looking text is quoted, numbers the product formats are not."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.csv_out import Number, csv_text, number_text, safe_cell
from tests.csv_cells import HOSTILE, rows_of, unsafe_cells


@pytest.mark.parametrize("text", [*HOSTILE, "-12.50", "+1", "=", "@", "\t", "\r", "-"])
def test_formula_looking_text_is_quoted(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["Rivera, Ana", "INV-000001", "2026-03-02", "12.50", "", "'=1"])
def test_ordinary_text_is_kept(text: str) -> None:
    assert safe_cell(text) == text


def test_numbers_stay_numbers() -> None:
    assert [safe_cell(v) for v in (-1250, Decimal("-12.50"), -0.5, Number("-12.50"))] == [
        "-1250",
        "-12.50",
        "-0.5",
        "-12.50",
    ]
    assert [safe_cell(v) for v in (None, True, False, float("nan"))] == ["", "yes", "no", ""]


@pytest.mark.parametrize("text", ["=1+1", "-2+3", "-12.50 ", "1e5", "-", "", "12,50", "−5"])
def test_only_a_plain_decimal_can_be_a_number(text: str) -> None:
    with pytest.raises(ValueError):
        Number(text)


def test_number_text_falls_back_to_text() -> None:
    assert isinstance(number_text(Decimal("-3.20")), Number)
    assert not isinstance(number_text(1e-7), Number)
    assert safe_cell(number_text(float("-inf"))) == "'-inf"


def test_a_whole_file() -> None:
    rows = [["name", "amount"], *([h, Number("-12.50")] for h in HOSTILE)]
    written = rows_of(csv_text(rows))
    assert unsafe_cells(written) == []
    assert [r[1] for r in written[1:]] == ["-12.50"] * len(HOSTILE)
    assert [r[0] for r in written[1:]] == ["'" + h for h in HOSTILE]
