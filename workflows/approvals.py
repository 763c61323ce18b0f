"""Approval requests, whatever they approve: a request waits as pending until someone with the
kind's permission decides it; the first decision wins, a later one changes nothing, every
decision is audited, and Slack hears of the request and of its decision through the outbox.

A kind (claim-cap overrides, waivers) describes itself with `ApprovalRules`: how to find and
lock its row, what must hold before a decision and what a decision does. `decide` holds the
rules every kind shares, so a new kind writes only its own part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.i18n import _
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord

PENDING = "pending"  # every kind's waiting status
MAX_COMMENT = 500


class ApprovalRow(Protocol):
    """The stored request: what `decide` reads and writes on every kind's row."""

    id: int
    status: str
    decided_by_id: int | None
    decided_at: datetime | None


R = TypeVar("R", bound=ApprovalRow)
S = TypeVar("S")  # what a kind's check found, handed to its apply


@dataclass(frozen=True)
class Decision(Generic[R]):
    request: R
    invoice: InvoiceRecord | None
    changed: bool  # False: a redelivered click of the decision already made


OutboxRow = tuple[str, str, dict[str, Any]]  # kind, dedupe key, payload


@dataclass(frozen=True)
class ApprovalOutbox:
    """The outbox rows that carry a request, and then its decision, to Slack."""

    name: str  # "override": deduplicated as "override-requested:<id>", "override-decided:<id>"
    id_field: str  # the payload's one field: {"request_id": 7}
    requested: str  # the kind of row a new request queues
    decided: Mapping[str, str]  # the kind of row a decision queues, by the status it sets

    def requested_row(self, request_id: int) -> OutboxRow:
        return self.requested, f"{self.name}-requested:{request_id}", {self.id_field: request_id}

    def decided_row(self, request_id: int, status: str) -> OutboxRow:
        payload = {self.id_field: request_id}
        return self.decided[status], f"{self.name}-decided:{request_id}", payload

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset({self.requested, *self.decided.values()})


@dataclass(frozen=True)
class ApprovalRules(Generic[R, S]):
    """One kind of approval, as `decide` needs it."""

    permission: Permission  # who may decide; checked on every decision
    approved: str  # the status an approval sets (a denial sets `denied`)
    denied: str
    audit_entity: str  # the activity log's entity for the request row
    outbox: ApprovalOutbox
    missing: str  # said when the request doesn't exist: an N_() msgid, read in staff language
    # The row, locked for this transaction (None when there is no such request of this kind).
    locked: Callable[[Context, int], Awaitable[R | None]]
    # What a later click is told: the request was already decided, by whom.
    already_decided: Callable[[Context, R], Awaitable[ConflictError]]
    # What must hold before this decision is recorded; raises when it doesn't, writing nothing.
    check: Callable[[Context, Actor, R, bool], Awaitable[S]]
    # What the decision does once allowed (re-pricing, applying money, notices, its comment).
    apply: Callable[[Context, Actor, R, bool, S, str | None], Awaitable[InvoiceRecord | None]]
    # The request's audit entry is written before what `apply` writes, or after it: each kind
    # keeps the order its activity log always had.
    audit_first: bool = True
    audit_facts: Callable[[R], dict[str, Any]] = lambda row: {}

    def status_for(self, approve: bool) -> str:
        return self.approved if approve else self.denied


def check_comment(comment: str | None) -> str | None:
    text = " ".join((comment or "").split())
    if len(text) > MAX_COMMENT:
        raise ValidationError(
            _("Keep the comment under {max} characters.", max=MAX_COMMENT), field="comment"
        )
    return text or None


async def announce_request(ctx: Context, outbox: ApprovalOutbox, request_id: int) -> None:
    """Queue the approvals-channel post of a new request."""
    await ctx.store.outbox.enqueue(*outbox.requested_row(request_id))


async def announce_decision(
    ctx: Context, outbox: ApprovalOutbox, request_id: int, status: str
) -> None:
    """Queue the in-place update of the request's post, and the requester's message."""
    await ctx.store.outbox.enqueue(*outbox.decided_row(request_id, status))


async def decide(
    ctx: Context,
    actor: Actor,
    rules: ApprovalRules[R, S],
    request_id: int,
    *,
    approve: bool,
    comment: str | None = None,
) -> Decision[R]:
    """Approve or deny a pending request.

    The row is locked first, so of two people deciding at once the second waits, then finds
    the first one's decision: the same person's same decision again (a redelivered click)
    changes nothing; anything else is refused as already decided.
    """
    require(actor, rules.permission)
    text = check_comment(comment)
    row = await rules.locked(ctx, request_id)
    if row is None:
        raise NotFound(_(rules.missing))
    wanted = rules.status_for(approve)
    if row.status != PENDING:
        if row.status == wanted and row.decided_by_id == actor.staff_id:
            return Decision(row, None, changed=False)
        raise await rules.already_decided(ctx, row)
    checked = await rules.check(ctx, actor, row, approve)
    if rules.audit_first:
        await _record(ctx, actor, rules, row, approve, text)
    invoice = await rules.apply(ctx, actor, row, approve, checked, text)
    if not rules.audit_first:
        await _record(ctx, actor, rules, row, approve, text)
    await announce_decision(ctx, rules.outbox, row.id, wanted)
    return Decision(row, invoice, changed=True)


async def _record(
    ctx: Context,
    actor: Actor,
    rules: ApprovalRules[R, S],
    row: R,
    approve: bool,
    comment: str | None,
) -> None:
    """The decision on the row (who, when) and its audit entry."""
    wanted = rules.status_for(approve)
    row.status = wanted
    row.decided_by_id = actor.staff_id
    row.decided_at = ctx.now()
    await ctx.store.activity.log(
        actor,
        rules.audit_entity,
        row.id,
        "approved" if approve else "denied",
        before={"status": PENDING},
        after={"status": wanted, **rules.audit_facts(row)},
        comment=comment,
    )
