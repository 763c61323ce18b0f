"""Payment plan rules: splitting, dates, validation, where a plan stands, missed installments."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.billing import InvoiceFacts, PauseCalendar, PauseWindow, Step, decide
from workflows.billing_settings import BillingSettings
from workflows.errors import ValidationError
from workflows.payment_plans import (
    Frequency,
    PlannedInstallment,
    add_months,
    behind_cents,
    build_schedule,
    current_installment,
    describe_schedule,
    installment_dates,
    missed_installments,
    plan_billing_settings,
    plan_facts,
    plan_paid_cents,
    plan_progress,
    split_amount,
    validate_schedule,
)

TODAY = date(2026, 3, 2)


def plan(*amounts: int, first: date = date(2026, 4, 1)) -> tuple[PlannedInstallment, ...]:
    dates = installment_dates(first, len(amounts), Frequency.MONTHLY)
    return tuple(PlannedInstallment(d, a) for d, a in zip(dates, amounts, strict=True))


# --- splitting ----------------------------------------------------------------------------------


def test_the_odd_cents_go_on_the_first_installment() -> None:
    assert split_amount(10_000, 3) == [3_334, 3_333, 3_333]
    assert split_amount(10_002, 4) == [2_502, 2_500, 2_500, 2_500]
    assert split_amount(900, 3) == [300, 300, 300]


@given(
    total=st.integers(min_value=0, max_value=10**9), count=st.integers(min_value=1, max_value=24)
)
def test_a_split_always_adds_up_to_the_balance(total: int, count: int) -> None:
    parts = split_amount(total, count)
    assert sum(parts) == total
    assert len(parts) == count
    assert max(parts) - min(parts) < count  # even, but for the odd cents up front
    assert parts[1:] == [parts[-1]] * (count - 1)


@given(
    balance=st.integers(min_value=2, max_value=10**8),
    count=st.integers(min_value=2, max_value=24),
    frequency=st.sampled_from(list(Frequency)),
    offset=st.integers(min_value=0, max_value=60),
)
def test_a_built_schedule_is_valid_whenever_each_part_is_a_cent_or_more(
    balance: int, count: int, frequency: Frequency, offset: int
) -> None:
    first = date.fromordinal(TODAY.toordinal() + offset)
    schedule = build_schedule(balance, first, frequency, count)
    assert sum(i.amount_cents for i in schedule) == balance
    if balance >= count:
        validate_schedule(schedule, balance_cents=balance, today=TODAY)
    else:
        with pytest.raises(ValidationError, match="too little to split"):
            validate_schedule(schedule, balance_cents=balance, today=TODAY)


# --- dates --------------------------------------------------------------------------------------


def test_monthly_dates_keep_the_day_or_take_the_last_of_a_short_month() -> None:
    assert installment_dates(date(2026, 1, 31), 4, Frequency.MONTHLY) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)


def test_weekly_and_every_two_weeks() -> None:
    assert installment_dates(date(2026, 3, 2), 3, Frequency.WEEKLY) == [
        date(2026, 3, 2),
        date(2026, 3, 9),
        date(2026, 3, 16),
    ]
    assert installment_dates(date(2026, 3, 2), 2, Frequency.BIWEEKLY)[1] == date(2026, 3, 16)


# --- validation ---------------------------------------------------------------------------------


def test_two_to_twenty_four_installments() -> None:
    for count in (1, 25):
        with pytest.raises(ValidationError) as err:
            build_schedule(10_000, date(2026, 4, 1), Frequency.MONTHLY, count)
        assert err.value.field == "count"
    assert len(build_schedule(10_000, date(2026, 4, 1), Frequency.WEEKLY, 24)) == 24


def test_the_first_installment_is_not_in_the_past() -> None:
    yesterday = build_schedule(10_000, date(2026, 3, 1), Frequency.MONTHLY, 2)
    with pytest.raises(ValidationError) as err:
        validate_schedule(yesterday, balance_cents=10_000, today=TODAY)
    assert err.value.field == "first_due"
    validate_schedule(
        build_schedule(10_000, TODAY, Frequency.MONTHLY, 2), balance_cents=10_000, today=TODAY
    )


def test_dates_strictly_increase_amounts_are_positive_and_add_up() -> None:
    same_day = (
        PlannedInstallment(date(2026, 4, 1), 500),
        PlannedInstallment(date(2026, 4, 1), 500),
    )
    with pytest.raises(ValidationError, match="after the one before"):
        validate_schedule(same_day, balance_cents=1_000, today=TODAY)
    zero = (PlannedInstallment(date(2026, 4, 1), 1_000), PlannedInstallment(date(2026, 5, 1), 0))
    with pytest.raises(ValidationError, match="too little"):
        validate_schedule(zero, balance_cents=1_000, today=TODAY)
    with pytest.raises(ValidationError, match=r"add up to \$10\.00, but \$12\.00 is left"):
        validate_schedule(plan(500, 500), balance_cents=1_200, today=TODAY)


def test_a_plan_ends_within_three_years() -> None:
    far = build_schedule(10_000, date(2028, 12, 1), Frequency.MONTHLY, 24)
    with pytest.raises(ValidationError, match="three years"):
        validate_schedule(far, balance_cents=10_000, today=TODAY)


# --- where a plan stands ------------------------------------------------------------------------


def test_money_paid_before_the_plan_does_not_count_towards_it() -> None:
    # $300 invoice, $100 paid, then a plan for the $200 left.
    assert plan_paid_cents(20_000, 30_000, 10_000) == 0
    assert plan_paid_cents(20_000, 30_000, 15_000) == 5_000
    assert plan_paid_cents(20_000, 30_000, 30_000) == 20_000
    # A lower total (an override approved later) counts as paid towards the plan.
    assert plan_paid_cents(20_000, 25_000, 10_000) == 5_000


def test_payments_cover_installments_in_order() -> None:
    schedule = plan(5_000, 5_000, 5_000)
    states = plan_progress(schedule, 7_500)
    assert [(s.paid_cents, s.settled) for s in states] == [
        (5_000, True),
        (2_500, False),
        (0, False),
    ]
    current = current_installment(schedule, 7_500)
    assert current is not None and current.position == 2 and current.open_cents == 2_500
    assert current_installment(schedule, 15_000) is None
    assert behind_cents(states[2], 7_500) == 7_500


@given(
    amounts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=2, max_size=24),
    paid_share=st.floats(min_value=0, max_value=1),
)
def test_covered_parts_never_exceed_what_was_paid(amounts: list[int], paid_share: float) -> None:
    schedule = plan(*amounts, first=date(2026, 1, 1))
    paid = int(sum(amounts) * paid_share)
    states = plan_progress(schedule, paid)
    assert sum(s.paid_cents for s in states) == paid
    assert states[-1].running_cents == sum(amounts)


def test_an_installment_is_missed_the_day_after_it_falls_due_unless_paid() -> None:
    schedule = plan(5_000, 5_000, 5_000)  # April 1, May 1, June 1
    assert missed_installments(schedule, 0, date(2026, 4, 1)) == []
    [missed] = missed_installments(schedule, 0, date(2026, 4, 2))
    assert missed.position == 1
    assert missed_installments(schedule, 5_000, date(2026, 4, 2)) == []
    # Half of the second one paid: still missed after May 1, and the first stays settled.
    assert [s.position for s in missed_installments(schedule, 7_500, date(2026, 5, 2))] == [2]
    assert [s.position for s in missed_installments(schedule, 0, date(2026, 6, 2))] == [1, 2, 3]


def test_paused_days_and_grace_days_hold_the_missed_clock() -> None:
    schedule = plan(5_000, 5_000)
    pauses = PauseCalendar([PauseWindow(date(2026, 4, 1), date(2026, 4, 10), "Spring break")])
    assert missed_installments(schedule, 0, date(2026, 4, 10), pauses=pauses) == []
    assert len(missed_installments(schedule, 0, date(2026, 4, 11), pauses=pauses)) == 1
    assert missed_installments(schedule, 0, date(2026, 4, 4), grace_days=3) == []
    assert len(missed_installments(schedule, 0, date(2026, 4, 5), grace_days=3)) == 1


# --- the billing rules on a plan ----------------------------------------------------------------


def facts(paid: int = 0, status: str = "unpaid") -> InvoiceFacts:
    return InvoiceFacts(
        id=1,
        status=status,
        due_date=date(2026, 9, 1),
        created_on=date(2026, 2, 1),
        total_cents=15_000,
        paid_cents=paid,
        automation_enabled=True,
    )


def test_reminders_count_down_to_the_current_installment() -> None:
    schedule = plan(5_000, 5_000, 5_000)
    settings = plan_billing_settings(BillingSettings(stop_reminders_on_partial_payment=True))
    on_plan = plan_facts(facts(paid=5_000), schedule, 5_000)
    assert on_plan.due_date == date(2026, 5, 1)
    action = decide(on_plan, settings, date(2026, 4, 17), date(2026, 4, 16), PauseCalendar())
    assert action is not None and action.step is Step.PRE_DUE and action.days_before_due == 14
    assert action.due_date == date(2026, 5, 1)  # the once-only key is per installment


def test_overdue_notices_count_from_the_missed_installment() -> None:
    schedule = plan(5_000, 5_000, 5_000)
    behind = plan_facts(facts(), schedule, 0)
    settings = BillingSettings()
    assert decide(behind, settings, date(2026, 4, 7), date(2026, 4, 6), PauseCalendar()) is None
    action = decide(behind, settings, date(2026, 4, 8), date(2026, 4, 7), PauseCalendar())
    assert action is not None and action.step is Step.FIRST and action.days_overdue == 7


def test_a_paid_off_plan_leaves_the_invoice_due_date_in_charge() -> None:
    assert plan_facts(facts(), plan(5_000, 5_000), 10_000).due_date == date(2026, 9, 1)


def test_describe_schedule() -> None:
    assert describe_schedule(plan(3_334, 3_333, 3_333)) == (
        "3 payments from April 1, 2026 to June 1, 2026: $33.34, then $33.33 each"
    )
    assert describe_schedule(plan(500, 500)) == (
        "2 payments from April 1, 2026 to May 1, 2026: $5.00 each"
    )
