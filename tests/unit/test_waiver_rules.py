"""Waiver and refund rules as plain functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bot.slack.waiver_blocks import (
    AdjustmentLine,
    WaiverBlock,
    adjustment_text,
    read_refund_form,
    read_waive_form,
)
from workflows.billing_settings import DEFAULTS, validate_billing_settings
from workflows.errors import ValidationError
from workflows.ledger import split_money
from workflows.permissions import DEFAULT_ROLES
from workflows.refunds import check_refund, payment_label, refundable
from workflows.waivers import check_comment, decision_word, local_when, needs_approval

CLERK = DEFAULT_ROLES["Billing Clerk"].actor(1, "Clerk")
DIRECTOR = DEFAULT_ROLES["Finance Director"].actor(2, "Director")


def payment(amount: int = 5_000, method: str = "check", reference: str | None = "1043"):  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        id=7, amount_cents=amount, method=method, reference=reference, received_on=date(2026, 3, 1)
    )


def test_up_to_the_approval_amount_applies_at_once() -> None:
    assert not needs_approval(10_000, 10_000, CLERK)
    assert needs_approval(10_001, 10_000, CLERK)
    assert needs_approval(1, 0, CLERK)  # 0: every waiver goes for approval
    # Someone who approves waivers needn't wait for themselves.
    assert not needs_approval(50_000, 10_000, DIRECTOR)


def test_refund_limits() -> None:
    p = payment()
    assert refundable(p, 0) == 5_000 and refundable(p, 1_500) == 3_500
    check_refund(p, 1_500, 3_500)
    with pytest.raises(
        ValidationError, match="more than the \\$35.00 left to refund on the check #1043"
    ):
        check_refund(p, 1_500, 3_501)
    with pytest.raises(ValidationError, match="more than \\$0.00"):
        check_refund(p, 0, 0)
    with pytest.raises(ValidationError, match="already been refunded in full"):
        check_refund(p, 5_000, 1)


def test_payment_labels() -> None:
    assert payment_label(payment()) == "check #1043 of $50.00"
    assert payment_label(payment(method="cash", reference=None)) == "cash of $50.00"
    assert payment_label(payment(method="card", reference="x9")) == "card (x9) of $50.00"


def test_decisions_in_words() -> None:
    adj = SimpleNamespace(status="applied", decision_comment=None)
    assert decision_word(adj) == "approved"
    assert decision_word(replace_ns(adj, status="denied")) == "denied"
    assert (
        decision_word(
            replace_ns(adj, status="denied", decision_comment="Withdrawn by the requester.")
        )
        == "withdrawn"
    )
    assert check_comment("  fine   by me ") == "fine by me" and check_comment("") is None
    with pytest.raises(ValidationError):
        check_comment("x" * 501)
    when = local_when(datetime(2026, 3, 2, 15, 0, tzinfo=UTC), ZoneInfo("America/Chicago"))
    assert when == "Mar 2, 2026 9:00 AM CST"


def replace_ns(ns: SimpleNamespace, **changes: object) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(ns), **changes})


def test_the_approval_amount_is_validated() -> None:
    validate_billing_settings(replace(DEFAULTS, waiver_approval_cents=0))
    for bad in (-1, 1_000_000_01):
        with pytest.raises(ValidationError) as caught:
            validate_billing_settings(replace(DEFAULTS, waiver_approval_cents=bad))
        assert caught.value.field == "waiver_approval_cents"


def test_money_split_with_waivers_and_refunds_adds_up() -> None:
    invoice = SimpleNamespace(
        subtotal_cents=30_000, insurance_cents=5_000, total_cents=25_000, paid_cents=10_000,
        waived_cents=6_000, refunded_cents=4_000, status="unpaid",
    )  # fmt: skip
    split = split_money(invoice)
    assert split.adds_up()
    assert (split.collected, split.waived, split.refunded, split.outstanding) == (
        6_000, 6_000, 4_000, 9_000,
    )  # fmt: skip


def form(amount: str | None, reason: str | None = "Hardship") -> dict:
    return {
        WaiverBlock.AMOUNT: {WaiverBlock.AMOUNT: {"value": amount}},
        WaiverBlock.REASON: {WaiverBlock.REASON: {"value": reason}},
    }


def test_the_waive_form_reads_dollars_and_says_what_is_wrong() -> None:
    assert read_waive_form(form("$1,250.50")).amount_cents == 125_050
    assert "isn't a valid amount" in read_waive_form(form("abc")).errors[WaiverBlock.AMOUNT]
    assert "negative" in read_waive_form(form("-5")).errors[WaiverBlock.AMOUNT]
    assert read_waive_form(form("5", " ")).errors == {WaiverBlock.REASON: "Say why."}
    refund = read_refund_form(form("5"))
    assert refund.errors == {WaiverBlock.PAYMENT: "Choose the payment to refund."}


def test_adjustment_lines_on_the_invoice() -> None:
    waived = AdjustmentLine("waiver", "applied", 2_000, "Hardship", "Clerk", None)
    assert adjustment_text(waived).endswith("Waived \u2212$20.00 \u2014 _Hardship_ \u2014 by Clerk")
    approved = replace(waived, amount_cents=15_000, decided_by="Director")
    assert "by Clerk, approved by Director" in adjustment_text(approved)
    pending = replace(waived, status="pending", amount_cents=15_000)
    assert "Waiver of $150.00 awaiting approval (asked by Clerk)" in adjustment_text(pending)
    refund = AdjustmentLine("refund", "applied", 5_000, "Found", "Director", None, "check #1043")
    assert "Refunded $50.00 of check #1043 \u2014 _Found_" in adjustment_text(refund)
    sneaky = replace(waived, reason="<!channel> pay up")
    assert "&lt;!channel&gt;" in adjustment_text(sneaky)
