"""The billing run's rules as plain functions: which step an invoice takes on a day."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.billing import (
    InvoiceFacts,
    PauseCalendar,
    PauseWindow,
    Step,
    cancel_comment,
    candidate_filter,
    decide,
    run_window,
    skip_reason,
    step_label,
    summarise_steps,
    validate_pause,
)
from workflows.billing_settings import BillingSettings
from workflows.errors import ValidationError
from workflows.invoices import InvoiceStatus, final_notice_after_manual_change

S = BillingSettings()
NO_PAUSES = PauseCalendar()
DUE = date(2026, 4, 1)
INV = InvoiceFacts(
    id=1,
    status="unpaid",
    due_date=DUE,
    created_on=date(2026, 1, 1),
    total_cents=10_000,
    paid_cents=0,
    automation_enabled=True,
)


def on(
    day: date,
    inv: InvoiceFacts = INV,
    settings: BillingSettings = S,
    pauses: PauseCalendar = NO_PAUSES,
    since: date | None = None,
):  # type: ignore[no-untyped-def]
    return decide(inv, settings, day, since or day - timedelta(days=1), pauses)


def test_pre_due_reminders_fall_on_the_exact_days() -> None:
    sent = {}
    day = date(2026, 3, 1)
    while day < DUE:
        action = on(day)
        if action is not None:
            sent[day] = action.step_name
        day += timedelta(days=1)
    assert sent == {
        date(2026, 3, 18): "pre_due_14",
        date(2026, 3, 25): "pre_due_7",
        date(2026, 3, 31): "pre_due_1",
    }


def test_missed_pre_due_reminders_send_only_the_latest() -> None:
    # Down from Mar 17 to Mar 27: the 14- and 7-day reminders were missed; only the 7-day goes.
    action = on(date(2026, 3, 27), since=date(2026, 3, 16))
    assert action is not None and action.step_name == "pre_due_7"
    # On or after the due date no pre-due reminder goes out at all.
    assert on(DUE, since=date(2026, 3, 20)) is None


def test_no_reminder_for_a_day_before_the_invoice_existed() -> None:
    late = replace(INV, created_on=date(2026, 3, 20))
    assert on(date(2026, 3, 21), late, since=date(2026, 3, 10)) is None
    assert on(date(2026, 3, 25), late).step_name == "pre_due_7"  # type: ignore[union-attr]


def test_overdue_steps_are_thresholds_one_per_run() -> None:
    first = on(date(2026, 4, 8))
    assert first is not None and first.step is Step.FIRST
    assert first.new_status == InvoiceStatus.FIRST and first.template == "overdue_first"
    assert on(date(2026, 4, 7)) is None
    # Months late and still Unpaid: only the first notice this run.
    late = on(date(2026, 7, 1))
    assert late is not None and late.step is Step.FIRST
    second = on(date(2026, 7, 2), replace(INV, status="first"))
    assert second is not None and second.step is Step.SECOND
    final = on(date(2026, 5, 1), replace(INV, status="second"))
    assert final is not None and final.step is Step.FINAL and final.days_overdue == 30
    assert on(date(2026, 4, 30), replace(INV, status="second")) is None


def test_collections_on_a_later_run_without_email() -> None:
    final = replace(INV, status="final", final_notice_on=date(2026, 5, 1))
    assert on(date(2026, 5, 1), final) is None
    action = on(date(2026, 5, 2), final)
    assert action is not None and action.step is Step.COLLECTIONS and action.template is None


def test_auto_cancel_counts_from_the_final_notice() -> None:
    coll = replace(INV, status="collections", final_notice_on=date(2026, 5, 1))
    on_cancel = replace(S, auto_cancel_enabled=True)
    assert on(date(2026, 6, 29), coll, on_cancel) is None
    action = on(date(2026, 6, 30), coll, on_cancel)
    assert action is not None and action.step is Step.AUTO_CANCEL
    assert action.new_status == InvoiceStatus.CANCELLED and action.days_overdue == 90
    assert on(date(2026, 8, 30), coll) is None  # auto-cancel off by default


def test_what_automation_skips() -> None:
    day = date(2026, 4, 8)
    assert on(day, replace(INV, automation_enabled=False)) is None
    assert on(day, replace(INV, due_date=None)) is None
    assert on(day, replace(INV, status="paid")) is None
    assert on(day, replace(INV, status="cancelled")) is None
    partial = replace(INV, paid_cents=5_000)
    assert on(day, partial) is not None
    stop = replace(S, stop_reminders_on_partial_payment=True)
    assert on(day, partial, stop) is None
    assert skip_reason(partial, stop) == "partially paid, and reminders stop on a partial payment"
    assert on(day, INV, replace(S, overdue_enabled=False)) is None
    assert on(date(2026, 3, 18), INV, replace(S, pre_due_enabled=False)) is None


def test_pauses_hold_the_overdue_clock_and_drop_reminders() -> None:
    pauses = PauseCalendar([PauseWindow(date(2026, 4, 3), date(2026, 4, 12), "Spring break")])
    # Apr 8 would be 7 days overdue, but 5 of those days are paused.
    assert on(date(2026, 4, 13), pauses=pauses) is None
    assert pauses.active_days(DUE, date(2026, 4, 14)) == 3
    assert on(date(2026, 4, 18), pauses=pauses) is not None
    assert on(date(2026, 4, 17), pauses=pauses) is None
    # A reminder day inside a pause is dropped, even when a run covers it afterwards.
    winter = PauseCalendar([PauseWindow(date(2026, 3, 24), date(2026, 3, 26), "Break")])
    assert on(date(2026, 3, 27), since=date(2026, 3, 20), pauses=winter) is None


def test_keys_name_invoice_step_due_date_and_epoch() -> None:
    a = on(date(2026, 3, 18))
    assert a is not None and a.key == "billing:1:pre_due_14:2026-04-01:0"
    moved = on(date(2026, 3, 25), replace(INV, due_date=date(2026, 4, 8)))
    assert moved is not None and moved.key == "billing:1:pre_due_14:2026-04-08:0"
    reset = on(date(2026, 4, 20), replace(INV, epoch=2))
    assert reset is not None and reset.key == "billing:1:first:2026-04-01:2"


def test_manual_change_sets_where_auto_cancel_counts_from() -> None:
    today = date(2026, 6, 1)
    assert final_notice_after_manual_change("final", None, today) == today
    assert final_notice_after_manual_change("collections", date(2026, 5, 1), today) == date(
        2026, 5, 1
    )
    assert final_notice_after_manual_change("collections", None, today) == today
    assert final_notice_after_manual_change("unpaid", date(2026, 5, 1), today) is None


def test_run_window() -> None:
    day = date(2026, 3, 10)
    assert run_window(day, None).covered_since == date(2026, 3, 9)
    assert run_window(day, date(2026, 3, 3)).covered_since == date(2026, 3, 3)
    assert run_window(day, date(2026, 3, 3)).missed_days == 6
    assert run_window(day, day).covered_since == date(2026, 3, 9)


def test_pause_validation() -> None:
    assert validate_pause(date(2026, 12, 21), date(2027, 1, 1), "  Winter   break ").reason == (
        "Winter break"
    )
    with pytest.raises(ValidationError, match="end on or after"):
        validate_pause(date(2026, 12, 21), date(2026, 12, 20), "x")
    with pytest.raises(ValidationError, match="at most"):
        validate_pause(date(2026, 1, 1), date(2026, 12, 31), "Year")
    with pytest.raises(ValidationError, match="Say what"):
        validate_pause(date(2026, 1, 1), date(2026, 1, 2), "  ")


def test_labels_and_summary() -> None:
    assert step_label("pre_due_14") == "14-day pre-due reminder"
    assert step_label("final") == "Final overdue notice"
    reminders, advanced, cancelled = summarise_steps(
        [("first", 2), ("pre_due_1", 3), ("pre_due_14", 1), ("collections", 4), ("auto_cancel", 5)]
    )
    assert reminders == (("pre_due_14", 1), ("pre_due_1", 3), ("first", 2))
    assert advanced == (("first", 2), ("collections", 4))
    assert cancelled == 5
    assert cancel_comment(date(2026, 6, 30), 90) == (
        "Invoice automatically cancelled on 2026-06-30 after 90 days overdue."
    )


# --- the candidate filter never loses a step ---------------------------------------------------

statuses = st.sampled_from(["unpaid", "first", "second", "final", "collections"])


@given(
    status=statuses,
    due_offset=st.integers(-120, 40),
    since_gap=st.integers(1, 20),
    final_offset=st.one_of(st.none(), st.integers(-100, 0)),
    paid=st.sampled_from([0, 5_000]),
    stop_partial=st.booleans(),
    auto_cancel=st.booleans(),
    pause=st.one_of(st.none(), st.tuples(st.integers(-60, 10), st.integers(0, 20))),
)
def test_candidate_filter_is_a_superset_of_what_decide_acts_on(
    status: str,
    due_offset: int,
    since_gap: int,
    final_offset: int | None,
    paid: int,
    stop_partial: bool,
    auto_cancel: bool,
    pause: tuple[int, int] | None,
) -> None:
    day = date(2026, 6, 15)
    settings = replace(
        S, stop_reminders_on_partial_payment=stop_partial, auto_cancel_enabled=auto_cancel
    )
    window = run_window(day, day - timedelta(days=since_gap))
    pauses = PauseCalendar(
        []
        if pause is None
        else [
            PauseWindow(
                day + timedelta(days=pause[0]), day + timedelta(days=pause[0] + pause[1]), "p"
            )
        ]
    )
    if pauses.is_paused(day):
        return  # the run takes no step on a paused day
    inv = replace(
        INV,
        status=status,
        due_date=day + timedelta(days=due_offset),
        created_on=day - timedelta(days=200),
        paid_cents=paid,
        final_notice_on=None if final_offset is None else day + timedelta(days=final_offset),
    )
    action = decide(inv, settings, day, window.covered_since, pauses)
    if action is None:
        return
    flt = candidate_filter(settings, window)
    due = inv.due_date
    assert due is not None
    matches = (
        any(low < due <= high for low, high in flt.pre_due_ranges)
        or (status in flt.overdue_before and due <= flt.overdue_before[status])
        or (
            status == "final"
            and flt.final_before is not None
            and (inv.final_notice_on is None or inv.final_notice_on < flt.final_before)
        )
        or (
            status == "collections"
            and flt.cancel_final_on_or_before is not None
            and (
                inv.final_notice_on is None or inv.final_notice_on <= flt.cancel_final_on_or_before
            )
        )
    )
    assert matches
    assert not (flt.stop_on_partial and paid > 0)
