"""Reading notices: what rendering one needs, and their delivery state on an invoice.

Everything here only reads. `load_notices` fetches a whole batch in a fixed number of queries
(one per table), so the outbox worker's cost per notice doesn't grow with the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m

DEFAULT_DISTRICT_NAME = "Our District"


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
    """The notices (by id) with their guardian, invoice and lines, student, device, payment."""
    notices: dict[int, m.Notice] = await _by_id(session, m.Notice, notice_ids)
    if not notices:
        return {}
    values = list(notices.values())
    guardians = await _by_id(session, m.Guardian, (n.guardian_id for n in values))
    invoices = await _by_id(session, m.Invoice, (n.invoice_id for n in values))
    students = await _by_id(session, m.Student, (i.student_id for i in invoices.values()))
    devices = await _by_id(session, m.Device, (i.device_id for i in invoices.values()))
    payments = await _by_id(session, m.Payment, (_context_id(n, "payment_id") for n in values))
    pendings = await _by_id(
        session, m.PendingPayment, (_context_id(n, "pending_payment_id") for n in values)
    )
    name = await district_name(session)
    loaded: dict[int, NoticeData] = {}
    for notice in values:
        invoice = None if notice.invoice_id is None else invoices.get(notice.invoice_id)
        payment = payments.get(_context_id(notice, "payment_id") or 0)
        pending = pendings.get(_context_id(notice, "pending_payment_id") or 0)
        loaded[notice.id] = NoticeData(
            notice=notice,
            district_name=name,
            guardian=None if notice.guardian_id is None else guardians.get(notice.guardian_id),
            invoice=invoice,
            student=None if invoice is None else students.get(invoice.student_id),
            device=(
                None if invoice is None or invoice.device_id is None
                else devices.get(invoice.device_id)
            ),
            # A payment or pending payment belongs to this notice only if it is the invoice's.
            payment=payment if payment is not None and payment.invoice_id == notice.invoice_id
            else None,
            pending=pending if pending is not None and pending.invoice_id == notice.invoice_id
            else None,
        )
    return loaded


async def load_notice(session: AsyncSession, notice_id: int) -> NoticeData | None:
    return (await load_notices(session, [notice_id])).get(notice_id)


# --- delivery state -------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeDelivery:
    """Where one notice stands: queued, sent, failed or bounced."""

    id: int
    template: str
    to_address: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    bounced_at: datetime | None
    last_error: str | None
    attempts: int


async def notices_for_invoice(session: AsyncSession, invoice_id: int) -> list[NoticeDelivery]:
    """Every notice about the invoice, oldest first, with its outbox attempts."""
    stmt = (
        select(m.Notice)
        .where(m.Notice.invoice_id == invoice_id)
        .order_by(m.Notice.created_at, m.Notice.id)
    )
    notices = list((await session.execute(stmt)).scalars())
    keys = [f"notice:{n.id}" for n in notices]
    attempts: dict[str, int] = {}
    if keys:
        rows = await session.execute(
            select(m.OutboxMessage.dedupe_key, m.OutboxMessage.attempts).where(
                m.OutboxMessage.dedupe_key.in_(keys)
            )
        )
        attempts = {key: count for key, count in rows.all()}
    return [
        NoticeDelivery(
            id=n.id,
            template=n.template,
            to_address=n.to_address,
            status=n.status,
            created_at=n.created_at,
            sent_at=n.sent_at,
            bounced_at=n.bounced_at,
            last_error=n.last_error,
            attempts=attempts.get(f"notice:{n.id}", 0),
        )
        for n in notices
    ]


TEMPLATE_LABELS = {
    "invoice_issued": "Invoice",
    "due_reminder": "Reminder",
    "overdue_first": "1st overdue",
    "overdue_second": "2nd overdue",
    "overdue_final": "Final notice",
    "payment_receipt": "Receipt",
    "pending_payment_ack": "Payment ack",
    "payment_plan_confirmation": "Plan",
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
    "Invoice emailed to maria@… Mar 3 · Invoice to sam@… failed (mailbox unavailable)".

    Plain text: escape it for Slack mrkdwn (&, <, >) where it is shown.
    """
    if not notices:
        return "No email notices yet."
    parts: list[str] = []
    for n in notices:
        label = TEMPLATE_LABELS.get(n.template, n.template.replace("_", " ").capitalize())
        who = redact_address(n.to_address)
        if n.status == "sent" and n.sent_at is not None:
            parts.append(f"{label} emailed to {who} {_day(n.sent_at, tz)}")
        elif n.status == "bounced":
            when = f" {_day(n.bounced_at, tz)}" if n.bounced_at is not None else ""
            parts.append(f"{label} to {who} bounced{when}")
        elif n.status == "failed":
            parts.append(f"{label} to {who} failed ({_short_error(n.last_error)})")
        elif n.last_error:
            parts.append(f"{label} to {who} retrying ({_short_error(n.last_error)})")
        else:
            parts.append(f"{label} to {who} queued")
    return " · ".join(parts)
