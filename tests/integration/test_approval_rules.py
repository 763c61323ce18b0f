"""The rules every approval kind shares (workflows.approvals.decide), shown with a kind that
exists only here: its rows live in memory, its audit entries and outbox rows in the real store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from workflows.approvals import (
    PENDING,
    ApprovalOutbox,
    ApprovalRules,
    Decision,
    announce_request,
    decide,
)
from workflows.clock import FixedClock
from workflows.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from workflows.permissions import Actor, Permission
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
LOAN_OUTBOX = ApprovalOutbox(
    name="loan",
    id_field="loan_id",
    requested="slack.loan_requested",
    decided={"lent": "slack.loan_decided", "refused": "slack.loan_decided"},
)


@dataclass
class Loan:
    """A spare-device loan someone asked for: the request row of the made-up kind."""

    id: int
    status: str = PENDING
    decided_by_id: int | None = None
    decided_at: datetime | None = None


@dataclass
class LoanBook:
    """The kind's rows, and what its own hooks were asked to do."""

    rows: dict[int, Loan] = field(default_factory=lambda: {1: Loan(1)})
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    refuse: str | None = None  # what the kind's check says, when it refuses

    def rules(self, *, audit_first: bool = True) -> ApprovalRules[Loan, str]:
        async def locked(ctx: Context, loan_id: int) -> Loan | None:
            self.calls.append(("locked", loan_id))
            return self.rows.get(loan_id)

        async def already_decided(ctx: Context, loan: Loan) -> ConflictError:
            return ConflictError(f"Loan {loan.id} was already {loan.status}.")

        async def check(ctx: Context, actor: Actor, loan: Loan, approve: bool) -> str:
            self.calls.append(("check", approve))
            if self.refuse:
                raise ConflictError(self.refuse)
            return "spare CB-7"

        async def apply(
            ctx: Context, actor: Actor, loan: Loan, approve: bool, checked: str, comment: str | None
        ) -> None:
            self.calls.append(("apply", approve, checked, comment))
            await ctx.store.activity.log(actor, "device", 7, "lent" if approve else "kept")

        return ApprovalRules(
            permission=Permission.APPROVE_WAIVERS,
            approved="lent",
            denied="refused",
            audit_entity="device_loan",
            outbox=LOAN_OUTBOX,
            missing="That loan request doesn't exist.",
            locked=locked,
            already_decided=already_decided,
            check=check,
            apply=apply,
            audit_first=audit_first,
            audit_facts=lambda loan: {"device": "CB-7"},
        )


async def _decide(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    rules: ApprovalRules[Loan, str],
    loan_id: int = 1,
    *,
    approve: bool = True,
    comment: str | None = None,
) -> Decision[Loan]:
    async with stores() as store:
        result = await decide(
            Context(store, clock, TZ), actor, rules, loan_id, approve=approve, comment=comment
        )
        await store.commit()
        return result


async def _written(
    stores: UnitOfWorkFactory,
) -> tuple[list[m.ActivityEntry], list[m.OutboxMessage]]:
    async with stores() as store:
        entries = await store.session.execute(
            select(m.ActivityEntry)
            .where(m.ActivityEntry.entity_type.in_(["device_loan", "device"]))
            .order_by(m.ActivityEntry.id)
        )
        rows = await store.session.execute(
            select(m.OutboxMessage)
            .where(m.OutboxMessage.kind.like("slack.loan_%"))
            .order_by(m.OutboxMessage.id)
        )
        await store.commit()
        return list(entries.scalars()), list(rows.scalars())


async def test_a_decision_is_recorded_audited_and_announced(stores, clock) -> None:
    book = LoanBook()
    director = await add_staff(stores, "Finance Director")

    decision = await _decide(stores, clock, director, book.rules(), comment="  fine   by me ")

    loan = book.rows[1]
    assert decision.changed and decision.request is loan
    assert (loan.status, loan.decided_by_id, loan.decided_at) == (
        "lent",
        director.staff_id,
        clock.now(),
    )
    # The kind's apply ran once, after its check, with what the check found.
    assert book.calls == [
        ("locked", 1),
        ("check", True),
        ("apply", True, "spare CB-7", "fine by me"),
    ]
    entries, outbox = await _written(stores)
    audit = entries[0]
    assert (audit.entity_type, audit.entity_id, audit.action) == ("device_loan", 1, "approved")
    assert (audit.before, audit.after) == (
        {"status": "pending"},
        {"status": "lent", "device": "CB-7"},
    )
    assert (audit.comment, audit.actor_staff_id) == ("fine by me", director.staff_id)
    assert [(r.kind, r.dedupe_key, r.payload) for r in outbox] == [
        ("slack.loan_decided", "loan-decided:1", {"loan_id": 1})
    ]


async def test_first_decision_wins_and_a_later_one_changes_nothing(stores, clock) -> None:
    book = LoanBook()
    first = await add_staff(stores, "Finance Director", "first@district.org")
    second = await add_staff(stores, "Finance Director", "second@district.org")
    await _decide(stores, clock, first, book.rules(), approve=False)
    before = await _written(stores)

    # Another approver, either way, and the first approver changing their mind: all refused.
    for actor, approve in ((second, True), (second, False), (first, True)):
        with pytest.raises(ConflictError, match="Loan 1 was already refused"):
            await _decide(stores, clock, actor, book.rules(), approve=approve)

    loan = book.rows[1]
    assert (loan.status, loan.decided_by_id) == ("refused", first.staff_id)
    assert [c for c in book.calls if c[0] == "apply"] == [("apply", False, "spare CB-7", None)]
    entries, outbox = await _written(stores)
    assert [(e.id, e.action) for e in entries] == [(e.id, e.action) for e in before[0]]
    assert len(outbox) == len(before[1]) == 1


async def test_a_redelivered_click_is_answered_without_deciding_again(stores, clock) -> None:
    book = LoanBook()
    director = await add_staff(stores, "Finance Director")
    await _decide(stores, clock, director, book.rules())

    again = await _decide(stores, clock, director, book.rules())

    assert not again.changed and again.request is book.rows[1]
    assert [c[0] for c in book.calls].count("apply") == 1
    entries, outbox = await _written(stores)
    assert [e.action for e in entries if e.entity_type == "device_loan"] == ["approved"]
    assert len(outbox) == 1


async def test_a_refused_permission_changes_nothing(stores, clock) -> None:
    book = LoanBook()
    clerk = await add_staff(stores, "Billing Clerk")  # may ask for waivers, not approve them

    with pytest.raises(PermissionDenied):
        await _decide(stores, clock, clerk, book.rules())

    assert book.rows[1] == Loan(1)
    assert book.calls == []  # refused before the row was even read
    assert await _written(stores) == ([], [])


async def test_a_refused_check_changes_nothing(stores, clock) -> None:
    book = LoanBook(refuse="No spare device is left.")
    director = await add_staff(stores, "Finance Director")

    with pytest.raises(ConflictError, match="No spare device"):
        await _decide(stores, clock, director, book.rules())

    assert book.rows[1] == Loan(1)
    assert [c[0] for c in book.calls] == ["locked", "check"]
    assert await _written(stores) == ([], [])


async def test_unknown_requests_and_long_comments_are_refused(stores, clock) -> None:
    book = LoanBook()
    director = await add_staff(stores, "Finance Director")

    with pytest.raises(NotFound, match="That loan request doesn't exist."):
        await _decide(stores, clock, director, book.rules(), loan_id=99)
    with pytest.raises(ValidationError, match="under 500 characters"):
        await _decide(stores, clock, director, book.rules(), comment="x" * 501)

    assert book.rows[1] == Loan(1)
    assert await _written(stores) == ([], [])


@pytest.mark.parametrize("audit_first", [True, False])
async def test_the_kind_keeps_its_audit_order(stores, clock, audit_first: bool) -> None:
    book = LoanBook()
    director = await add_staff(stores, "Finance Director")

    await _decide(stores, clock, director, book.rules(audit_first=audit_first))

    entries, _ = await _written(stores)
    order = [e.entity_type for e in entries]
    assert order == (["device_loan", "device"] if audit_first else ["device", "device_loan"])


async def test_a_request_is_announced_once(stores, clock) -> None:
    async with stores() as store:
        await announce_request(Context(store, clock, TZ), LOAN_OUTBOX, 1)
        await store.commit()
    async with stores() as store:
        await announce_request(Context(store, clock, TZ), LOAN_OUTBOX, 1)  # a replay
        await store.commit()

    _, outbox = await _written(stores)
    assert [(r.kind, r.dedupe_key, r.payload) for r in outbox] == [
        ("slack.loan_requested", "loan-requested:1", {"loan_id": 1})
    ]
    assert LOAN_OUTBOX.kinds == {"slack.loan_requested", "slack.loan_decided"}
