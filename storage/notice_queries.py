"""Reading notices: what rendering one needs, and their delivery state on an invoice.

Everything here only reads. `load_notices` fetches a whole batch in a fixed number of queries
(one per table), so the outbox worker's cost per notice doesn't grow with the batch.

A billing digest (template "billing_digest") is one email standing for several of a guardian's
billing-run notices, its "members": each member has status "digested" and `digest_id` set, and
the digest's context lists them as `notice_ids`. Members are looked up by those ids (primary
keys), never by `digest_id`, which has no index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.billing_run import DIGEST_TEMPLATE, DIGESTED

DEFAULT_DISTRICT_NAME = "Our District"
# A billing reminder whose invoice was paid or cancelled before it went out is not sent.
WITHDRAWN = "withdrawn"
CLOSED_INVOICE_STATUSES = frozenset({"paid", "cancelled"})


@dataclass(frozen=True)
class DigestItem:
    """One member notice of a digest, with the rows its part of the email is built from."""

    notice: m.Notice
    invoice: m.Invoice
    student: m.Student | None
    device: m.Device | None


@dataclass
class NoticeData:
    """A notice with the rows its template is built from (None where the row is gone)."""

    notice: m.Notice
    district_name: str
    guardian: m.Guardian | None
    invoice: m.Invoice | None
    student: m.Student | None
    device: m.Device | None
    payment: m.Payment | None
    pending: m.PendingPayment | None
    # A digest's members whose invoice is still open, oldest first (empty for other notices).
    digest_items: tuple[DigestItem, ...] = ()


def is_digest(notice: m.Notice) -> bool:
    return notice.template == DIGEST_TEMPLATE


def member_ids(notice: m.Notice) -> list[int]:
    """The member notice ids a digest's context names (none for any other notice)."""
    if not is_digest(notice):
        return []
    raw = (notice.context or {}).get("notice_ids")
    if not isinstance(raw, list):
        return []
    return sorted(i for i in raw if isinstance(i, int) and not isinstance(i, bool))


def _context_id(notice: m.Notice, key: str) -> int | None:
    value = (notice.context or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


async def _by_id(session: AsyncSession, model: Any, ids: Iterable[int | None]) -> dict[int, Any]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = (await session.execute(select(model).where(model.id.in_(wanted)))).scalars()
    return {row.id: row for row in rows}


async def district_name(session: AsyncSession) -> str:
    settings = await session.get(m.DistrictSettings, 1)
    return settings.district_name if settings is not None else DEFAULT_DISTRICT_NAME


async def load_notices(session: AsyncSession, notice_ids: Sequence[int]) -> dict[int, NoticeData]:
    """The notices (by id) with their guardian, invoice and lines, student, device, payment,
    and for a digest its members with theirs."""
    notices: dict[int, m.Notice] = await _by_id(session, m.Notice, notice_ids)
    if not notices:
        return {}
    values = list(notices.values())
    wanted_members = {i for n in values for i in member_ids(n)}
    members: dict[int, m.Notice] = await _by_id(session, m.Notice, wanted_members)
    guardians = await _by_id(session, m.Guardian, (n.guardian_id for n in values))
    invoices = await _by_id(
        session, m.Invoice, (n.invoice_id for n in [*values, *members.values()])
    )
    students = await _by_id(session, m.Student, (i.student_id for i in invoices.values()))
    devices = await _by_id(session, m.Device, (i.device_id for i in invoices.values()))
    payments = await _by_id(session, m.Payment, (_context_id(n, "payment_id") for n in values))
    pendings = await _by_id(
        session, m.PendingPayment, (_context_id(n, "pending_payment_id") for n in values)
    )
    name = await district_name(session)

    def device_of(invoice: m.Invoice | None) -> m.Device | None:
        if invoice is None or invoice.device_id is None:
            return None
        found: m.Device | None = devices.get(invoice.device_id)
        return found

    loaded: dict[int, NoticeData] = {}
    for notice in values:
        invoice = None if notice.invoice_id is None else invoices.get(notice.invoice_id)
        payment = payments.get(_context_id(notice, "payment_id") or 0)
        pending = pendings.get(_context_id(notice, "pending_payment_id") or 0)
        # A payment or pending payment belongs to this notice only if it is the invoice's.
        if payment is not None and payment.invoice_id != notice.invoice_id:
            payment = None
        if pending is not None and pending.invoice_id != notice.invoice_id:
            pending = None
        items: list[DigestItem] = []
        for member_id in member_ids(notice):
            member = members.get(member_id)
            # Only a member that still points here is the digest's (a later change may have
            # taken it back out); one whose invoice is gone has nothing left to say.
            if member is None or member.digest_id != notice.id or member.invoice_id is None:
                continue
            member_invoice = invoices.get(member.invoice_id)
            if member_invoice is None or member_invoice.status in CLOSED_INVOICE_STATUSES:
                continue
            items.append(
                DigestItem(
                    notice=member,
                    invoice=member_invoice,
                    student=students.get(member_invoice.student_id),
                    device=device_of(member_invoice),
                )
            )
        loaded[notice.id] = NoticeData(
            notice=notice,
            district_name=name,
            guardian=None if notice.guardian_id is None else guardians.get(notice.guardian_id),
            invoice=invoice,
            student=None if invoice is None else students.get(invoice.student_id),
            device=device_of(invoice),
            payment=payment,
            pending=pending,
            digest_items=tuple(items),
        )
    return loaded


async def load_notice(session: AsyncSession, notice_id: int) -> NoticeData | None:
    return (await load_notices(session, [notice_id])).get(notice_id)


# --- delivery state -------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeDelivery:
    """Where one notice stands: queued, sent, failed or bounced.

    For a member of a billing digest, the delivery fields are the digest's, `digest_id` names
    it, and `digest_with` lists the other invoices the same email covered.
    """

    id: int
    template: str
    to_address: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    bounced_at: datetime | None
    last_error: str | None
    attempts: int
    digest_id: int | None = None
    digest_with: tuple[str, ...] = ()


async def _digest_invoices(
    session: AsyncSession, digests: Iterable[m.Notice]
) -> dict[int, list[tuple[int, str]]]:
    """digest id -> [(invoice id, number)] of the members still in it, oldest member first."""
    wanted = sorted({i for d in digests for i in member_ids(d)})
    if not wanted:
        return {}
    rows = await session.execute(
        select(m.Notice.digest_id, m.Invoice.id, m.Invoice.number)
        .join(m.Invoice, m.Invoice.id == m.Notice.invoice_id)
        .where(m.Notice.id.in_(wanted))
        .order_by(m.Notice.id)
    )
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for digest_id, invoice_id, number in rows.all():
        if digest_id is not None and (invoice_id, number) not in found[digest_id]:
            found[digest_id].append((invoice_id, number))
    return found


async def notices_for_invoice(session: AsyncSession, invoice_id: int) -> list[NoticeDelivery]:
    """Every notice about the invoice, oldest first, with its outbox attempts.

    A "digested" member shows its digest's state, resolved here when read: the sender, the
    worker and bounce handling change only the digest's row, and members keep "digested" so
    that the billing run's counts (`storage.billing_run.run_totals`) stay right. The digest
    itself is not listed again beside a member of this invoice.
    """
    stmt = (
        select(m.Notice)
        .where(m.Notice.invoice_id == invoice_id)
        .order_by(m.Notice.created_at, m.Notice.id)
    )
    notices = list((await session.execute(stmt)).scalars())
    own = {n.id: n for n in notices}
    wanted = {n.digest_id for n in notices if n.status == DIGESTED and n.digest_id is not None}
    wanted |= {n.id for n in notices if is_digest(n)}
    digests: dict[int, m.Notice] = {i: own[i] for i in wanted if i in own}
    digests.update(await _by_id(session, m.Notice, wanted - own.keys()))
    covered = await _digest_invoices(session, digests.values())
    keys = sorted({f"notice:{n.id}" for n in [*notices, *digests.values()]})
    attempts: dict[str, int] = {}
    if keys:
        rows = await session.execute(
            select(m.OutboxMessage.dedupe_key, m.OutboxMessage.attempts).where(
                m.OutboxMessage.dedupe_key.in_(keys)
            )
        )
        attempts = {key: count for key, count in rows.all()}

    shown_through_members = {
        n.digest_id for n in notices if n.status == DIGESTED and n.digest_id in digests
    }
    found: list[NoticeDelivery] = []
    for n in notices:
        if n.id in shown_through_members:
            continue
        state, digest_id = n, None
        if n.status == DIGESTED and n.digest_id is not None and n.digest_id in digests:
            state = digests[n.digest_id]
            digest_id = state.id
        elif is_digest(n):
            digest_id = n.id
        others = () if digest_id is None else covered.get(digest_id, ())
        found.append(
            NoticeDelivery(
                id=n.id,
                template=n.template,
                to_address=state.to_address,
                status=state.status,
                created_at=n.created_at,
                sent_at=state.sent_at,
                bounced_at=state.bounced_at,
                last_error=state.last_error,
                attempts=attempts.get(f"notice:{state.id}", 0),
                digest_id=digest_id,
                digest_with=tuple(number for inv, number in others if inv != invoice_id),
            )
        )
    return found


TEMPLATE_LABELS = {
    "invoice_issued": "Invoice",
    "due_reminder": "Reminder",
    "overdue_first": "1st overdue",
    "overdue_second": "2nd overdue",
    "overdue_final": "Final notice",
    "payment_receipt": "Receipt",
    "pending_payment_ack": "Payment ack",
    "payment_plan_confirmation": "Plan",
    DIGEST_TEMPLATE: "Digest",
}
_ERROR_SHOWN = 60


def redact_address(address: str) -> str:
    """maria.rivera@example.org -> maria.rivera@… (enough for staff to tell guardians apart)."""
    local, at, _domain = address.partition("@")
    return f"{local}@…" if at else address


def _short_error(error: str | None) -> str:
    text = " ".join((error or "unknown error").split())
    return text if len(text) <= _ERROR_SHOWN else text[: _ERROR_SHOWN - 1] + "…"


def _day(at: datetime, tz: tzinfo | None) -> str:
    local = at.astimezone(tz) if tz is not None else at
    return f"{local:%b} {local.day}"


def delivery_summary(notices: Sequence[NoticeDelivery], tz: tzinfo | None = None) -> str:
    """One line for the invoice card, e.g.
    "Invoice emailed to maria@… Mar 3 · Invoice to sam@… failed (mailbox unavailable) ·
    Reminder emailed to maria@… Mar 18 (in a digest with INV-000002)".

    Plain text: escape it for Slack mrkdwn (&, <, >) where it is shown.
    """
    if not notices:
        return "No email notices yet."
    parts: list[str] = []
    for n in notices:
        label = TEMPLATE_LABELS.get(n.template, n.template.replace("_", " ").capitalize())
        who = redact_address(n.to_address)
        if n.status == DIGESTED:
            # Still "digested" after resolving: the digest it went into was deleted.
            parts.append(f"{label} to {who} not sent (its digest was removed)")
            continue
        if n.digest_id is None:
            note = ""
        elif n.digest_with:
            note = f" (in a digest with {', '.join(n.digest_with)})"
        else:
            note = " (in a digest)"
        if n.status == "sent" and n.sent_at is not None:
            parts.append(f"{label} emailed to {who} {_day(n.sent_at, tz)}{note}")
        elif n.status == "bounced":
            when = f" {_day(n.bounced_at, tz)}" if n.bounced_at is not None else ""
            parts.append(f"{label} to {who} bounced{when}{note}")
        elif n.status == "failed":
            parts.append(f"{label} to {who} failed ({_short_error(n.last_error)}){note}")
        elif n.status == WITHDRAWN:
            parts.append(f"{label} to {who} not sent: the invoice was settled first{note}")
        elif n.last_error:
            parts.append(f"{label} to {who} retrying ({_short_error(n.last_error)}){note}")
        else:
            parts.append(f"{label} to {who} queued{note}")
    return " · ".join(parts)
