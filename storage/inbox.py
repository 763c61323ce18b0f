"""Inbound mail in the store: replies kept once, routing look-ups, pending payments, bounces,
and how far the IMAP reader got in each mailbox.

`Inbox` works inside a `SqlStore`'s transaction (its session), so a reply, the pending payment
it reports and the Slack post it causes commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload

from storage import models as m
from storage.notice_queries import member_ids
from storage.outbox import new_message
from storage.store import SqlStore

NOTICE_SENT = "sent"
NOTICE_BOUNCED = "bounced"

# Outbox kinds for what inbound mail makes Slack say (delivered by bot/slack/replies.py).
REPLY_POST_KIND = "slack.mail_reply"
BOUNCE_ALERT_KIND = "slack.mail_bounce"
PENDING_DECIDED_KIND = "slack.pending_payment_decided"


def redact_address(address: str) -> str:
    """maria@example.org -> m…@example.org: enough for logs, not a harvestable address."""
    local, at, domain = address.strip().partition("@")
    return f"{local[:1]}…@{domain}" if at else "…"


@dataclass(frozen=True)
class InvoiceRef:
    """What routing a reply needs of its invoice (read as columns: no ORM object to build)."""

    id: int
    number: str
    student_id: int
    incident_id: int | None
    status: str
    total_cents: int
    paid_cents: int

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents


_INVOICE_REF = (
    m.Invoice.id,
    m.Invoice.number,
    m.Invoice.student_id,
    m.Invoice.incident_id,
    m.Invoice.status,
    m.Invoice.total_cents,
    m.Invoice.paid_cents,
)


def _route_statement(with_notice: bool) -> Any:
    """Built once, with bound parameters: every reply runs it, so its cache key is computed
    once instead of per message."""
    notice: Any = literal(None, Integer)
    if with_notice:
        notice = (
            select(m.Notice.id)
            .where(m.Notice.id == bindparam("notice_id"), m.Notice.invoice_id == m.Invoice.id)
            .scalar_subquery()
        )
    guardian = (
        select(m.Guardian.id)
        .join(m.Guardianship, m.Guardianship.guardian_id == m.Guardian.id)
        .where(
            m.Guardianship.student_id == m.Invoice.student_id,
            func.lower(m.Guardian.email) == bindparam("sender"),
        )
        .order_by(m.Guardian.id)
        .limit(1)
        .scalar_subquery()
    )
    return select(*_INVOICE_REF, notice, guardian).where(m.Invoice.id == bindparam("invoice_id"))


_ROUTE_BY_NOTICE = _route_statement(True)
_ROUTE_BY_INVOICE = _route_statement(False)
_NOTICES_BY_MESSAGE_ID = select(m.Notice).where(
    m.Notice.message_id.in_(bindparam("ids", expanding=True))
)
_GUARDIANS_BY_ADDRESS = (
    select(m.Guardian)
    .where(func.lower(m.Guardian.email) == bindparam("address"))
    .order_by(m.Guardian.id)
)


class DuplicateMessage(Exception):
    """A message with this Message-ID is already in the store (another reader got it first)."""


@dataclass(frozen=True)
class ReplyFacts:
    """What Slack shows about one inbound message."""

    message: m.InboundMessage
    invoice: m.Invoice | None
    student: m.Student | None
    guardian: m.Guardian | None
    pending: m.PendingPayment | None
    decided_by: str | None  # the pending payment's decider


async def outbox_payload(store: SqlStore, dedupe_key: str) -> dict[str, Any]:
    """The payload a side effect was queued with ({} when there is none)."""
    stmt = select(m.OutboxMessage.payload).where(m.OutboxMessage.dedupe_key == dedupe_key)
    payload = (await store.session.execute(stmt)).scalar_one_or_none()
    return dict(payload) if payload else {}


class Inbox:
    """Inbound-mail queries and changes, in the transaction of the `SqlStore` it wraps."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.session = store.session
        self._for_update = store.session.bind is not None and (
            store.session.bind.dialect.name != "sqlite"
        )

    def _now(self) -> datetime:
        return self.store.clock.now()

    # --- inbound messages -------------------------------------------------------------

    async def find_message(self, message_id: str) -> m.InboundMessage | None:
        stmt = select(m.InboundMessage).where(m.InboundMessage.message_id == message_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_message(self, inbound_id: int) -> m.InboundMessage | None:
        return await self.session.get(m.InboundMessage, inbound_id)

    def new_message(
        self,
        *,
        message_id: str,
        raw_blob_key: str,
        from_address: str,
        subject: str,
        kind: str,
        uidvalidity: int | None,
        uid: int | None,
        body_text: str,
    ) -> m.InboundMessage:
        """A row to fill in while routing; `insert_message` stores it."""
        return m.InboundMessage(
            message_id=message_id,
            uidvalidity=uidvalidity,
            uid=uid,
            raw_blob_key=raw_blob_key,
            from_address=from_address[:320],
            subject=subject[:500],
            kind=kind,
            route="none",
            sender_trusted=False,
            body_text=body_text,
            status="held",
            received_at=self._now(),
        )

    async def insert_message(self, row: m.InboundMessage) -> None:
        """Store the row; its Message-ID being taken already raises DuplicateMessage (a second
        reader got there first: on PostgreSQL this waits for its commit, then fails)."""
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # the caller's transaction rolls back
            raise DuplicateMessage(row.message_id) from exc

    def queue(self, kind: str, dedupe_key: str, payload: dict[str, Any]) -> None:
        """An outbox row for a side effect of a message just stored (its key names the new
        row, so it can't have been queued before: no look-up needed). The commit writes it."""
        self.session.add(new_message(kind, dedupe_key, payload, self._now()))

    # --- routing ----------------------------------------------------------------------

    async def notices_by_message_ids(self, message_ids: Iterable[str]) -> dict[str, m.Notice]:
        wanted = sorted({i for i in message_ids if i})
        if not wanted:
            return {}
        rows = await self.session.execute(_NOTICES_BY_MESSAGE_ID, {"ids": wanted})
        return {n.message_id: n for n in rows.scalars()}

    async def get_notice(self, notice_id: int) -> m.Notice | None:
        return await self.session.get(m.Notice, notice_id)

    async def digest_invoice_numbers(self, notice_id: int) -> list[str]:
        """The invoices a billing digest covered, oldest first ([] for any other notice).

        A reply to a digest routes to the digest's own invoice (its first); staff see these."""
        notice = await self.session.get(m.Notice, notice_id)
        wanted = [] if notice is None else member_ids(notice)
        if not wanted:
            return []
        rows = await self.session.execute(
            select(m.Invoice.number)
            .join(m.Notice, m.Notice.invoice_id == m.Invoice.id)
            .where(m.Notice.id.in_(wanted), m.Notice.digest_id == notice_id)
            .order_by(m.Notice.id)
        )
        return list(dict.fromkeys(rows.scalars()))

    async def get_invoice(self, invoice_id: int) -> m.Invoice | None:
        # Routing needs the invoice's own columns, not its lines.
        return await self.session.get(m.Invoice, invoice_id, options=[lazyload(m.Invoice.lines)])

    async def invoice_for_reply(
        self, invoice_id: int, sender: str, *, notice_id: int | None = None
    ) -> tuple[InvoiceRef, int | None, int | None] | None:
        """(the invoice, `notice_id` if that notice is the invoice's, the id of the student's
        guardian whose address is `sender`), in one query; None when there is no such invoice."""
        params = {"invoice_id": invoice_id, "sender": sender.strip().lower()}
        if notice_id is None:
            stmt = _ROUTE_BY_INVOICE
        else:
            stmt, params["notice_id"] = _ROUTE_BY_NOTICE, notice_id
        found = (await self.session.execute(stmt, params)).first()
        if found is None:
            return None
        invoice = InvoiceRef(*found[: len(_INVOICE_REF)])
        notice_found, guardian_id = found[len(_INVOICE_REF) :]
        return invoice, notice_found, guardian_id if sender.strip() else None

    async def get_guardian(self, guardian_id: int) -> m.Guardian | None:
        return await self.session.get(m.Guardian, guardian_id)

    async def invoice_by_number(self, numbers: Sequence[str]) -> m.Invoice | None:
        """The first of `numbers` (case-insensitive) that is an invoice."""
        for number in numbers:
            found = await self.store.get_invoice_by_number(number)
            if found is not None:
                return found
        return None

    async def guardian_of_student(self, student_id: int, address: str) -> m.Guardian | None:
        """The student's guardian who has this email address, if any."""
        stmt = (
            select(m.Guardian)
            .join(m.Guardianship, m.Guardianship.guardian_id == m.Guardian.id)
            .where(
                m.Guardianship.student_id == student_id,
                func.lower(m.Guardian.email) == address.strip().lower(),
            )
            .order_by(m.Guardian.id)
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def guardians_with_address(self, address: str) -> list[m.Guardian]:
        rows = await self.session.execute(
            _GUARDIANS_BY_ADDRESS, {"address": address.strip().lower()}
        )
        return list(rows.scalars())

    # --- bounces ----------------------------------------------------------------------

    async def latest_sent_notice_to(self, address: str) -> m.Notice | None:
        stmt = (
            select(m.Notice)
            .where(
                func.lower(m.Notice.to_address) == address.strip().lower(),
                m.Notice.status.in_((NOTICE_SENT, NOTICE_BOUNCED)),
            )
            .order_by(m.Notice.sent_at.desc().nulls_last(), m.Notice.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def mark_bouncing(self, address: str) -> list[m.Guardian]:
        """Every guardian with this address stops getting notices until someone fixes it."""
        guardians = await self.guardians_with_address(address)
        now = self._now()
        for guardian in guardians:
            if guardian.email_bouncing_since is None:
                guardian.email_bouncing_since = now
        return guardians

    def mark_notice_bounced(self, notice: m.Notice, error: str | None = None) -> bool:
        if notice.status == NOTICE_BOUNCED:
            return False
        notice.status = NOTICE_BOUNCED
        notice.bounced_at = self._now()
        if error:
            notice.last_error = error[:2000]
        return True

    # --- pending payments -------------------------------------------------------------

    async def add_pending_payment(
        self,
        *,
        invoice_id: int,
        inbound_message_id: int,
        amount_cents: int,
        method: str,
        reference: str | None,
        paid_on: date | None,
    ) -> m.PendingPayment:
        pending = m.PendingPayment(
            invoice_id=invoice_id,
            inbound_message_id=inbound_message_id,
            amount_cents=amount_cents,
            method=method[:20],
            reference=(reference or None) and reference[:200],
            paid_on=paid_on,
            status="pending",
            created_at=self._now(),
        )
        self.session.add(pending)
        await self.session.flush()
        return pending

    async def get_pending_payment(
        self, pending_id: int, *, lock: bool = False
    ) -> m.PendingPayment | None:
        stmt = select(m.PendingPayment).where(m.PendingPayment.id == pending_id)
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def pending_for_message(self, inbound_id: int) -> m.PendingPayment | None:
        stmt = select(m.PendingPayment).where(m.PendingPayment.inbound_message_id == inbound_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # --- what Slack shows -------------------------------------------------------------

    async def reply_facts(self, inbound_id: int) -> ReplyFacts | None:
        message = await self.get_message(inbound_id)
        if message is None:
            return None
        invoice = None if message.invoice_id is None else await self.get_invoice(message.invoice_id)
        student = None if invoice is None else await self.store.get_student(invoice.student_id)
        guardian = (
            None
            if message.guardian_id is None
            else await self.session.get(m.Guardian, message.guardian_id)
        )
        pending = await self.pending_for_message(inbound_id)
        decided_by = None
        if pending is not None and pending.decided_by_id is not None:
            decided_by = await self.store.staff_name(pending.decided_by_id)
        return ReplyFacts(message, invoice, student, guardian, pending, decided_by)

    async def students_of_guardian(self, guardian_id: int, *, limit: int = 5) -> list[str]:
        stmt = (
            select(m.Student)
            .join(m.Guardianship, m.Guardianship.student_id == m.Student.id)
            .where(m.Guardianship.guardian_id == guardian_id)
            .order_by(m.Student.last_name, m.Student.first_name)
            .limit(limit)
        )
        return [s.full_name for s in (await self.session.execute(stmt)).scalars()]

    # --- the reader's position --------------------------------------------------------

    async def mailbox_state(self, mailbox: str) -> m.MailboxState | None:
        return await self.session.get(m.MailboxState, mailbox)

    async def save_mailbox_state(self, mailbox: str, *, uidvalidity: int, last_uid: int) -> None:
        """Set the position; last_uid only moves forward unless UIDVALIDITY changed."""
        now = self._now()
        state = await self.session.get(m.MailboxState, mailbox)
        if state is None:
            self.session.add(
                m.MailboxState(
                    mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now
                )
            )
        elif state.uidvalidity != uidvalidity:
            state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, last_uid, now
        elif last_uid > state.last_uid:
            await self.session.execute(
                update(m.MailboxState)
                .where(m.MailboxState.mailbox == mailbox, m.MailboxState.last_uid < last_uid)
                .values(last_uid=last_uid, updated_at=now)
            )
        await self.session.flush()

    async def reset_mailbox_state(self, mailbox: str, *, uidvalidity: int) -> None:
        """A new UIDVALIDITY: start the folder over (Message-IDs stop any repeats)."""
        state = await self.session.get(m.MailboxState, mailbox)
        now = self._now()
        if state is None:
            self.session.add(
                m.MailboxState(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=0, updated_at=now)
            )
        else:
            state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, 0, now
        await self.session.flush()
