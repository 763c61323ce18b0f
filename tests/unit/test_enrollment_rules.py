"""Enrollment rules as plain functions: the window, the term, the first status, the premium."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest

from services.enrollment_import import read_enrollment_rows
from storage.csv_in import CsvFileError
from storage.device_coverage import parse_day, read_coverage_rows
from workflows.enrollment import (
    EnrollmentStatus,
    Term,
    check_policy_setup,
    check_window,
    clean_waiver_reason,
    covered_from,
    enrollable_term,
    initial_status,
    premium_lines,
    term_of,
    window_open,
)
from workflows.errors import ValidationError


@dataclass
class Policy:
    id: int = 1
    name: str = "Device Plan"
    active: bool = True
    term_label: str | None = "2026-2027"
    term_start: date | None = date(2026, 8, 1)
    term_end: date | None = date(2027, 7, 31)
    premium_cents: int = 2500
    enroll_opens_on: date | None = date(2026, 7, 1)
    enroll_closes_on: date | None = date(2026, 9, 30)
    coverage_starts: str = "on_payment"
    expiry_reminder_days: int | None = 30


def test_window_includes_both_ends_and_never_the_time_after_the_term() -> None:
    p = Policy()
    assert not window_open(p, date(2026, 6, 30))
    assert window_open(p, date(2026, 7, 1)) and window_open(p, date(2026, 9, 30))
    assert not window_open(p, date(2026, 10, 1))
    open_ended = replace(p, enroll_opens_on=None, enroll_closes_on=None)
    assert window_open(open_ended, date(2020, 1, 1))
    assert not window_open(open_ended, date(2027, 8, 1))


def test_window_messages_say_when() -> None:
    p = Policy()
    with pytest.raises(ValidationError, match="opens on Jul 1, 2026"):
        check_window(p, date(2026, 6, 1))
    with pytest.raises(ValidationError, match="closed on Sep 30, 2026"):
        check_window(p, date(2026, 10, 1))
    with pytest.raises(ValidationError, match="term of Device Plan has ended"):
        check_window(replace(p, enroll_closes_on=None), date(2027, 8, 1))
    check_window(p, date(2026, 8, 15))


def test_term_of_a_policy() -> None:
    assert term_of(Policy()) == Term("2026-2027", date(2026, 8, 1), date(2027, 7, 31))
    assert term_of(Policy(term_label=None)) == Term(
        "2026-2027", date(2026, 8, 1), date(2027, 7, 31)
    )
    assert term_of(Policy(term_start=None)) is None
    with pytest.raises(ValidationError, match="no term set"):
        enrollable_term(Policy(term_end=None))
    with pytest.raises(ValidationError, match="no longer offered"):
        enrollable_term(Policy(active=False))


def test_first_status_follows_coverage_starts() -> None:
    assert initial_status("on_payment", 2500, waived=False) is EnrollmentStatus.PENDING_PAYMENT
    assert initial_status("on_payment", 2500, waived=True) is EnrollmentStatus.ACTIVE
    assert initial_status("on_payment", 0, waived=False) is EnrollmentStatus.ACTIVE
    assert initial_status("immediately", 2500, waived=False) is EnrollmentStatus.ACTIVE
    with pytest.raises(ValueError):
        initial_status("someday", 2500, waived=False)


def test_coverage_starts_no_earlier_than_the_term_nor_later_than_its_end() -> None:
    term = Term("2026-2027", date(2026, 8, 1), date(2027, 7, 31))
    assert covered_from(term, date(2026, 7, 15)) == date(2026, 8, 1)
    assert covered_from(term, date(2026, 9, 3)) == date(2026, 9, 3)
    assert covered_from(term, date(2027, 9, 1)) == date(2027, 7, 31)


def test_premium_line_and_waiver_reason() -> None:
    [line] = premium_lines("Device Plan", "2026-2027", 2500)
    assert (line.description, line.kind, line.amount_cents) == (
        "Device Plan premium, 2026-2027",
        "premium",
        2500,
    )
    assert clean_waiver_reason("  free \n lunch ") == "free lunch"
    assert clean_waiver_reason("   ") is None and clean_waiver_reason(None) is None
    with pytest.raises(ValidationError):
        clean_waiver_reason("x" * 201)


def test_policy_setup_rules() -> None:
    check_policy_setup(Policy())
    bad = [
        Policy(term_end=None),
        Policy(term_end=date(2026, 1, 1)),
        Policy(premium_cents=-1),
        Policy(enroll_closes_on=date(2026, 6, 1)),
        Policy(enroll_closes_on=date(2027, 8, 1)),
        Policy(expiry_reminder_days=400),
        Policy(coverage_starts="later"),
    ]
    for policy in bad:
        with pytest.raises((ValidationError, ValueError)):
            check_policy_setup(policy)


def test_enrollment_rows_are_checked_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "Student_ID,Policy,Waiver_Reason\nS1,Plan,\n,Plan,\nS2,,\nS3,Plan," + "x" * 201 + "\n",
        encoding="utf-8",
    )
    rows, problems = read_enrollment_rows(path)
    assert [(r.line, r.student_sis_id, r.policy) for r in rows] == [(2, "S1", "Plan")]
    assert [(p.line, p.reason) for p in problems] == [
        (3, "student_id is empty"),
        (4, "policy is empty"),
        (5, "waiver_reason is longer than 200 characters"),
    ]


def test_coverage_rows_accept_export_headers_and_dates(tmp_path: Path) -> None:
    assert parse_day("2027-08-31") == parse_day("08/31/2027") == date(2027, 8, 31)
    assert parse_day("31.08.2027") is None
    path = tmp_path / "c.csv"
    path.write_text(
        "serial,plan,coverage_start,coverage_end,provider\n"
        " abc1 ,AppleCare+,2025-09-01,2027-08-31,\n"
        "abc2,Warranty,2025-09-01,2027-08-31,Dell\n",
        encoding="utf-8",
    )
    rows, problems = read_coverage_rows(path)
    assert problems == []
    assert [(r.serial, r.provider) for r in rows] == [("ABC1", "Apple"), ("ABC2", "Dell")]
    missing = tmp_path / "m.csv"
    missing.write_text("serial,plan\nabc1,AppleCare+\n", encoding="utf-8")
    with pytest.raises(CsvFileError, match="m.csv has no column coverage_start, coverage_end"):
        read_coverage_rows(missing)
