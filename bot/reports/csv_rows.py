"""A report's rows as CSV: the same bytes for a Slack upload and a file on disk.

Conventions (the README's "Reports" section lists them): the spec's fixed header row; money
columns (`spec.money`, int cents) as dollars `45.00`; dates ISO `2026-03-02`; timestamps ISO in
the district's zone; percentages and hours as plain numbers (`12.5`); None as an empty cell;
numbers written as plain numbers; every other cell written through bot/csv_out.py, which
quotes text a spreadsheet would otherwise run as a formula.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.csv_out import csv_text, csv_writer, number_text
from workflows.money import to_decimal
from workflows.reports import ReportResult, ReportSpec


def cell(value: Any, *, money: bool, tz: tzinfo) -> str:
    """One value as its CSV text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if money and isinstance(value, int):
        return number_text(to_decimal(value))
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return number_text(round(value, 6))
    if isinstance(value, int | Decimal):
        return number_text(value)
    return str(value)  # text: the writer neutralises anything formula-like


def csv_row(spec: ReportSpec, row: Sequence[Any], tz: tzinfo) -> list[str]:
    return [
        cell(value, money=header in spec.money, tz=tz)
        for header, value in zip(spec.headers, row, strict=True)
    ]


def csv_lines(result: ReportResult, tz: tzinfo) -> Iterable[list[str]]:
    """The header row, then every row in order."""
    yield list(result.spec.headers)
    for row in result.rows:
        yield csv_row(result.spec, row, tz)


def csv_bytes(result: ReportResult, tz: tzinfo) -> bytes:
    """The whole CSV (UTF-8, CRLF line ends as csv writes them), for an upload."""
    return csv_text(csv_lines(result, tz)).encode("utf-8")


def write_csv_file(result: ReportResult, path: Path, tz: tzinfo) -> int:
    """Write the CSV to `path`; returns how many rows (without the header) it holds."""
    with path.open("w", newline="", encoding="utf-8") as out:
        csv_writer(out).writerows(csv_lines(result, tz))
    return len(result.rows)


async def write_csv_pages(
    path: Path,
    spec: ReportSpec,
    page: Callable[[int], Awaitable[Sequence[Sequence[Any]]]],
    tz: tzinfo,
    *,
    size: int,
) -> int:
    """Every row, fetched `size` at a time by `page(offset)`, so a long listing is never held
    whole; returns how many rows were written."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        writer.writerow(spec.headers)
        while True:
            rows = await page(count)
            writer.writerows(csv_row(spec, row, tz) for row in rows)
            count += len(rows)
            if len(rows) < size:
                return count


def file_stem(result: ReportResult) -> str:
    """`incidents-by-type_2025-07-01_2026-03-02`: names a report's CSV and chart files."""
    f = result.filters
    return f"{result.spec.name}_{f.date_from.isoformat()}_{f.date_to.isoformat()}"
