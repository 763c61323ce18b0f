"""The rule that spreads a payment a family reports by email over the invoices it is about,
and the check on a split staff type in."""

from __future__ import annotations

from datetime import date

import pytest

from storage.notices import reply_thread, thread_headers
from workflows.errors import ValidationError
from workflows.reply_split import (
    OpenInvoice,
    Part,
    check_edited_split,
    full_balance_split,
    split_order,
    split_payment,
)

A = OpenInvoice(1, "INV-000001", 10_000, date(2026, 4, 1))
B = OpenInvoice(2, "INV-000002", 4_550, date(2026, 4, 1))
OLD = OpenInvoice(3, "INV-000003", 7_500, date(2026, 3, 11))
UNDATED = OpenInvoice(4, "INV-000004", 1_000, None)


def amounts(split_parts: tuple[Part, ...]) -> dict[int, int]:
    return {p.invoice_id: p.amount_cents for p in split_parts}


def test_the_invoice_named_comes_first_even_when_it_owes_less() -> None:
    split = split_payment(4_550, [A, B], ["INV-000002"])
    assert [p.invoice_id for p in split.parts] == [2, 1]
    assert amounts(split.parts) == {2: 4_550, 1: 0}
    assert split.over_cents == 0 and split.owed_cents == 14_550


def test_without_a_name_the_oldest_due_is_paid_first() -> None:
    split = split_payment(8_000, [A, OLD])
    assert [p.invoice_id for p in split.parts] == [3, 1]
    assert amounts(split.parts) == {3: 7_500, 1: 500}


def test_named_ones_in_the_order_named_then_the_rest_by_due_date() -> None:
    order = split_order([A, B, OLD, UNDATED], ["inv-000001", "INV-000002", "INV-999999"])
    assert [i.id for i in order] == [1, 2, 3, 4]  # unknown names are ignored; no due date last
    assert [i.id for i in split_order([UNDATED, A, OLD], [])] == [3, 1, 4]


def test_each_invoice_gets_at_most_its_balance_and_the_rest_is_an_overpayment() -> None:
    split = split_payment(20_000, [A, B], ["INV-000002"])
    assert amounts(split.parts) == {2: 4_550, 1: 10_000}
    assert split.allocated_cents == 14_550 and split.over_cents == 5_450


def test_no_amount_splits_nothing() -> None:
    split = split_payment(None, [A, B])
    assert split.allocated_cents == 0 and split.over_cents == 0 and split.owed_cents == 14_550


def test_the_full_balance() -> None:
    assert amounts(full_balance_split([A, B]).parts) == {1: 10_000, 2: 4_550}


def test_an_edited_split_must_add_up_and_stay_within_each_balance() -> None:
    total, parts = check_edited_split("$100", {1: "54.50", 2: "45.50"}, [A, B])
    assert total == 10_000 and amounts(parts) == {1: 5_450, 2: 4_550}
    total, parts = check_edited_split("45.50", {2: "45.50"}, [A, B])  # a blank is $0.00
    assert amounts(parts) == {1: 0, 2: 4_550}

    with pytest.raises(ValidationError) as caught:
        check_edited_split("100", {1: "50", 2: "45.50"}, [A, B])
    assert caught.value.field == "total"
    assert "add up to $95.50, not the $100.00 received" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        check_edited_split("100", {1: "50", 2: "50"}, [A, B])
    assert caught.value.field == "amount:2" and "more than the $45.50 still owed" in str(
        caught.value.message
    )
    with pytest.raises(ValidationError) as caught:
        check_edited_split("100", {1: "ten", 2: "0"}, [A, B])
    assert caught.value.field == "amount:1"
    with pytest.raises(ValidationError) as caught:
        check_edited_split("0", {1: "0"}, [A, B])
    assert caught.value.field == "total"
    with pytest.raises(ValidationError):
        check_edited_split("10", {1: "5", 99: "5"}, [A, B])  # an invoice it isn't about


def test_thread_headers_answer_the_family_and_refuse_what_isnt_a_message_id() -> None:
    thread = reply_thread("<r@mail.example>", ["<n@district.org>", "not an id"], "Your invoice")
    assert thread_headers({"reply_thread": thread}) == (
        "<r@mail.example>",
        "<n@district.org> <r@mail.example>",
        "Re: Your invoice",
    )
    again = reply_thread("<r@mail.example>", [], "RE: Su factura")
    assert thread_headers({"reply_thread": again}) == (
        "<r@mail.example>",
        "<r@mail.example>",
        "RE: Su factura",
    )
    forged = {"message_id": "<a@b>\r\nBcc: x@evil.example", "references": [], "subject": "x"}
    assert thread_headers({"reply_thread": forged}) is None
    assert thread_headers({}) is None
