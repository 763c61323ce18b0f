"""A report's CSV: fixed headers, money as dollars, ISO dates, blanks, numbers, inert text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from bot.reports.csv_rows import csv_bytes, file_stem
from workflows.reports import Audience, ReportFilters, ReportResult, ReportSpec

TZ = ZoneInfo("America/Chicago")
SPEC = ReportSpec(
    name="sample",
    title="Sample",
    description="A report for the CSV rules.",
    audience=Audience.FINANCIAL,
    headers=("student", "issued_on", "paid_at", "billed", "count", "percent", "note", "paid"),
    money=frozenset({"billed"}),
)


def _result(*rows: tuple[object, ...]) -> ReportResult:
    filters = ReportFilters(date(2026, 2, 1), date(2026, 2, 28))
    return ReportResult(SPEC, filters, list(rows), ["summary"])


def test_cells_follow_the_conventions() -> None:
    result = _result(
        (
            "Rivera, Ana",
            date(2026, 2, 3),
            datetime(2026, 2, 3, 15, 0, tzinfo=UTC),
            4_500,
            3,
            57.1,
            "=HYPERLINK(1)",
            True,
        ),
        ("-Cole", None, None, 0, 0, None, "+1", False),
    )
    rows = list(csv.reader(io.StringIO(csv_bytes(result, TZ).decode("utf-8"))))
    assert rows == [
        list(SPEC.headers),
        [
            "Rivera, Ana",
            "2026-02-03",
            "2026-02-03T09:00:00-06:00",
            "45.00",
            "3",
            "57.1",
            "'=HYPERLINK(1)",
            "yes",
        ],
        ["'-Cole", "", "", "0.00", "0", "", "'+1", "no"],
    ]


def test_empty_report_has_the_header_row_and_a_stable_name() -> None:
    result = _result()
    assert csv_bytes(result, TZ) == b"student,issued_on,paid_at,billed,count,percent,note,paid\r\n"
    assert file_stem(result) == "sample_2026-02-01_2026-02-28"


def test_nan_hours_are_blank() -> None:
    result = _result(("x", None, None, 1, 1, float("nan"), "", False))
    line = csv_bytes(result, TZ).decode("utf-8").splitlines()[1]
    assert line == "x,,,0.01,1,,,no"
