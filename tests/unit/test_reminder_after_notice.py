"""No pre-due reminder within three days of the invoice's own notice (workflows.billing)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from workflows.billing import (
    REMINDER_QUIET_DAYS,
    InvoiceFacts,
    PauseCalendar,
    decide,
    notice_day,
    too_soon_after_notice,
)
from workflows.billing_settings import BillingSettings
from workflows.clock import FixedClock, local_date

CHICAGO = ZoneInfo("America/Chicago")
S = BillingSettings()  # reminders 14, 7 and 1 days before the due date
DUE = date(2026, 4, 30)


def facts(created_on: date, notice_on: date | None) -> InvoiceFacts:
    return InvoiceFacts(
        id=7,
        status="unpaid",
        due_date=DUE,
        created_on=created_on,
        total_cents=5_000,
        paid_cents=0,
        automation_enabled=True,
        notice_on=notice_on,
    )


def reminders(inv: InvoiceFacts, start: date) -> dict[date, str]:
    """Every reminder a daily run would send from `start` to the due date."""
    sent: dict[date, str] = {}
    day = start
    while day < DUE:
        action = decide(inv, S, day, day - timedelta(days=1), PauseCalendar())
        if action is not None:
            sent[day] = action.step_name
        day += timedelta(days=1)
    return sent


def test_the_quiet_period_is_three_days() -> None:
    assert REMINDER_QUIET_DAYS == 3
    notice = date(2026, 4, 10)
    assert too_soon_after_notice(notice, notice, notice)
    assert too_soon_after_notice(notice + timedelta(days=2), notice, notice)
    assert not too_soon_after_notice(notice + timedelta(days=3), notice, notice)


def test_invoice_issued_on_the_fourteen_day_reminder_day_gets_no_reminder_that_day() -> None:
    issued = DUE - timedelta(days=14)
    sent = reminders(facts(issued, issued), issued)
    assert issued not in sent
    assert sent == {DUE - timedelta(days=7): "pre_due_7", DUE - timedelta(days=1): "pre_due_1"}


def test_invoice_issued_ten_days_before_due_gets_no_fourteen_day_reminder() -> None:
    issued = DUE - timedelta(days=10)
    sent = reminders(facts(issued, issued), issued)
    assert "pre_due_14" not in sent.values()
    assert sent == {DUE - timedelta(days=7): "pre_due_7", DUE - timedelta(days=1): "pre_due_1"}


def test_invoice_issued_two_days_before_the_one_day_reminder_skips_it() -> None:
    issued = DUE - timedelta(days=3)  # the 1-day reminder falls two days later
    assert reminders(facts(issued, issued), issued) == {}


def test_three_days_after_the_notice_the_reminder_goes() -> None:
    issued = DUE - timedelta(days=4)  # the 1-day reminder falls three days later
    assert reminders(facts(issued, issued), issued) == {DUE - timedelta(days=1): "pre_due_1"}


def test_a_notice_sent_later_than_the_invoice_was_made_counts_from_its_own_day() -> None:
    created = DUE - timedelta(days=20)
    notice = DUE - timedelta(days=15)  # held, then sent five days after the invoice
    sent = reminders(facts(created, notice), created)
    assert sent == {DUE - timedelta(days=7): "pre_due_7", DUE - timedelta(days=1): "pre_due_1"}
    # Without the notice's day, the 14-day reminder would have gone a day after it.
    assert reminders(facts(created, None), created)[DUE - timedelta(days=14)] == "pre_due_14"


def test_a_skipped_reminder_is_not_sent_late_by_a_catch_up_run() -> None:
    issued = DUE - timedelta(days=15)
    inv = facts(issued, DUE - timedelta(days=13))  # the notice went out two days later
    # A run covering the 14-day reminder's day (e.g. after downtime) still sends nothing.
    day = DUE - timedelta(days=12)
    assert decide(inv, S, day, day - timedelta(days=4), PauseCalendar()) is None


def test_notice_day_is_the_district_day_of_the_send_else_the_queue_time() -> None:
    clock = FixedClock(datetime(2026, 4, 11, 4, 30, tzinfo=UTC))  # 23:30 on April 10 in Chicago
    queued = clock.now()
    assert notice_day(None, queued, CHICAGO) == date(2026, 4, 10)
    sent = clock.advance(hours=1)  # 00:30 on April 11 in Chicago
    assert notice_day(sent, queued, CHICAGO) == date(2026, 4, 11)
    assert notice_day(None, None, CHICAGO) is None


def test_late_evening_notice_counts_on_the_district_day() -> None:
    # Sent at 22:00 district time three days before the 1-day reminder: allowed, though in
    # UTC it is already the next day (which would have made it two days and skipped it).
    clock = FixedClock(datetime(2026, 4, 27, 3, 0, tzinfo=UTC))
    notice_on = notice_day(clock.now(), None, CHICAGO)
    assert notice_on == date(2026, 4, 26)
    assert local_date(clock.now(), "UTC") == date(2026, 4, 27)
    inv = replace(facts(notice_on, notice_on))
    assert reminders(inv, notice_on) == {DUE - timedelta(days=1): "pre_due_1"}
