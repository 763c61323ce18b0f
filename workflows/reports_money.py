"""Rules behind the money reports: the end-of-year cleanup suggestions and the recovery rate.

Plain functions, no I/O. The SQL in storage/reports_money.py follows the order and thresholds
defined here, so the suggestion a report shows and the one these rules give always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from workflows.money import format_cents

# A balance below this is usually cheaper to waive than to chase.
SMALL_BALANCE_CENTS = 500

# Labels for rows that group invoices whose student or device lacks the grouping value.
NO_BUILDING = "(no building)"
NO_GRADE = "(no grade)"
NO_DEVICE = "(no device)"
NO_FAMILY = "(no family)"


class CleanupReason(StrEnum):
    """Why an open invoice needs attention at the end of the year, most urgent first.

    The declaration order is the order suggestions are tried in: money a parent says they
    sent is confirmed before anything else is decided about the invoice.
    """

    PENDING_PAYMENT = "pending_payment"
    STUDENT_INACTIVE = "student_inactive"
    NO_GUARDIAN = "no_guardian"
    IN_COLLECTIONS = "in_collections"
    SMALL_BALANCE = "small_balance"
    AUTOMATION_OFF = "automation_off"

    @property
    def label(self) -> str:
        """What is wrong, for the `reasons` column."""
        return {
            "pending_payment": "payment awaiting confirmation",
            "student_inactive": "student no longer active",
            "no_guardian": "no reachable guardian",
            "in_collections": "in collections",
            "small_balance": f"balance under {format_cents(SMALL_BALANCE_CENTS)}",
            "automation_off": "automation off",
        }[self.value]

    @property
    def suggestion(self) -> str:
        """What to do about it, for the `suggestion` column."""
        return {
            "pending_payment": "confirm the pending payment",
            "student_inactive": "student left: collect or cancel",
            "no_guardian": "find a guardian's contact",
            "in_collections": "check with collections",
            "small_balance": "consider a waiver",
            "automation_off": "turn automation on or follow up by hand",
        }[self.value]


CLEANUP_ORDER: tuple[CleanupReason, ...] = tuple(CleanupReason)
# An open invoice with none of the reasons simply carries over into the next year.
CARRY_OVER = "carry over"


def suggestion_for(reasons: Iterable[CleanupReason]) -> str:
    """The first reason's suggestion in CLEANUP_ORDER, or CARRY_OVER when none applies."""
    found = set(reasons)
    for reason in CLEANUP_ORDER:
        if reason in found:
            return reason.suggestion
    return CARRY_OVER


def describe_reasons(reasons: Iterable[CleanupReason]) -> str:
    """Every reason that applies, in CLEANUP_ORDER, separated by "; "."""
    found = set(reasons)
    return "; ".join(r.label for r in CLEANUP_ORDER if r in found)


def is_small_balance(balance_cents: int) -> bool:
    return 0 < balance_cents < SMALL_BALANCE_CENTS


def recoverable(billed: int, covered: int, cancelled: int) -> int:
    """What the family was asked to pay and not let off by cancellation: the rate's base."""
    return billed - covered - cancelled


def recovery_rate(collected: int, billed: int, covered: int, cancelled: int) -> float | None:
    """Money kept (payments less refunds) as a percent of what families were asked to pay
    and still could be, to one decimal place; None when nothing was theirs to pay."""
    base = recoverable(billed, covered, cancelled)
    if base <= 0:
        return None
    return round(100 * collected / base, 1)
