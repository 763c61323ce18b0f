"""The cleanup suggestions' order and the recovery rate."""

from __future__ import annotations

from workflows.reports_money import (
    CARRY_OVER,
    CLEANUP_ORDER,
    SMALL_BALANCE_CENTS,
    CleanupReason,
    describe_reasons,
    is_small_balance,
    recovery_rate,
    suggestion_for,
)


def test_the_first_reason_in_order_gives_the_suggestion() -> None:
    assert CLEANUP_ORDER[0] is CleanupReason.PENDING_PAYMENT
    assert suggestion_for([]) == CARRY_OVER
    assert (
        suggestion_for([CleanupReason.AUTOMATION_OFF, CleanupReason.SMALL_BALANCE])
        == "consider a waiver"
    )
    assert (
        suggestion_for([CleanupReason.IN_COLLECTIONS, CleanupReason.STUDENT_INACTIVE])
        == "student left: collect or cancel"
    )
    every = list(CleanupReason)
    assert suggestion_for(reversed(every)) == "confirm the pending payment"
    for i, reason in enumerate(CLEANUP_ORDER):
        assert suggestion_for(CLEANUP_ORDER[i:]) == reason.suggestion


def test_reasons_are_listed_in_order() -> None:
    assert (
        describe_reasons([CleanupReason.AUTOMATION_OFF, CleanupReason.SMALL_BALANCE])
        == "balance under $5.00; automation off"
    )
    assert describe_reasons([]) == ""


def test_small_balance() -> None:
    assert SMALL_BALANCE_CENTS == 500
    assert is_small_balance(499) and is_small_balance(1)
    assert not is_small_balance(500) and not is_small_balance(0)


def test_recovery_rate() -> None:
    # Collected of what families were asked to pay, less what was cancelled.
    assert recovery_rate(3500, 21500, 12000, 0) == 36.8
    assert recovery_rate(7000, 28000, 0, 12500) == 45.2
    assert recovery_rate(0, 4500, 0, 0) == 0.0
    assert recovery_rate(0, 12500, 0, 12500) is None
    assert recovery_rate(0, 0, 0, 0) is None
    assert recovery_rate(2000, 2000, 0, 0) == 100.0
