"""The one way DeviceCare writes CSV: reports, import reports and exports all go through here.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula (and Excel also
one that starts with a tab or a carriage return), so a student's name, a payment reference or
an amount typed in a portal export could compute, reach other files or launch a program when
the business office opens the file (CSV injection). Following OWASP's guidance, every text
cell that starts with one of those characters is written with a single quote in front, which
spreadsheets show as plain text.

Numbers DeviceCare formats itself (amounts such as `-12.50`, counts, percentages) must stay
numbers a spreadsheet can add up, so they are passed as `int`, `Decimal` or `float`, or as a
`Number` (a string the product formatted, checked to be nothing but a plain decimal number).
Those are written as they are. Every other string is text and is neutralised, even when it
looks like a number: a value read from an uploaded file is never trusted to be one.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TextIO

# OWASP's list of characters that make a cell a formula in Excel, LibreOffice or Sheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class Number(str):
    """A number the product formatted itself (`"-12.50"`), written unescaped.

    Only a plain decimal number is accepted (an optional minus, digits, an optional fraction),
    so nothing that a spreadsheet could read as a formula can be marked as a number.
    """

    def __new__(cls, text: object) -> Number:
        value = str(text)
        if not _PLAIN_NUMBER.fullmatch(value):
            raise ValueError(f"Not a plain number: {value[:40]!r}")
        return super().__new__(cls, value)


def number_text(value: int | float | Decimal) -> str:
    """A number as the product writes it: a `Number` when it is a plain decimal, otherwise
    (`1e-07`, `inf`) plain text, which the writer then treats like any other text."""
    text = str(value)
    return Number(text) if _PLAIN_NUMBER.fullmatch(text) else text


Cell = str | int | float | Decimal | None


def neutralise(text: str) -> str:
    """Text that no spreadsheet runs as a formula: a leading quote where it would start one."""
    return "'" + text if text.startswith(FORMULA_START) else text


def safe_cell(value: Cell) -> str:
    """One cell as written: numbers as numbers, None as empty, any other text neutralised."""
    if value is None:
        return ""
    if isinstance(value, Number):
        return str.__str__(value)
    if isinstance(value, bool):  # a bool is an int; never meant as one here
        return "yes" if value else "no"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else str(round(value, 6))
    return neutralise(str(value))


class CsvWriter:
    """`csv.writer` with every cell passed through `safe_cell`."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(handle: TextIO) -> CsvWriter:
    """A writer for a file opened with `newline=""` (csv writes CRLF line ends itself)."""
    return CsvWriter(handle)


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """The rows as one CSV text, for an upload."""
    out = io.StringIO(newline="")
    csv_writer(out).writerows(rows)
    return out.getvalue()
