"""Inbound mail in the store: replies kept once, routing look-ups, pending payments, bounces,
and how far the IMAP reader got in each mailbox.

`Inbox` works inside a `SqlUnitOfWork`'s transaction (its session), so a reply, the pending payment
it reports and the Slack post it causes commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload

from storage import models as m
from storage.notice_queries import member_ids
from storage.notices import NOTICE_KIND, THREAD_KEY, new_message_id
from storage.outbox import new_message
from storage.uow import SqlUnitOfWork
from workflows.reply_split import Part

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
    waived_cents: int
    due_date: date | None = None

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents - self.waived_cents


_INVOICE_REF = (
    m.Invoice.id,
    m.Invoice.number,
    m.Invoice.student_id,
    m.Invoice.incident_id,
    m.Invoice.status,
    m.Invoice.total_cents,
    m.Invoice.paid_cents,
    m.Invoice.waived_cents,
    m.Invoice.due_date,
)


_NOTICES_BY_MESSAGE_ID = select(m.Notice).where(
    m.Notice.message_id.in_(bindparam("ids", expanding=True))
)
_GUARDIANS_BY_ADDRESS = (
    select(m.Guardian)
    .where(func.lower(m.Guardian.email) == bindparam("address"))
    .order_by(m.Guardian.id)
)
# Built once, with expanding parameters: a batch runs each of these once.
_STORED_MESSAGE_IDS = select(m.InboundMessage.message_id).where(
    m.InboundMessage.message_id.in_(bindparam("ids", expanding=True))
)
# Every column given, None too (the default leaves Nones out and splits rows by the columns
# they have: several INSERTs instead of one).
_INSERT_MESSAGES = insert(m.InboundMessage).execution_options(render_nulls=True)
_INSERT_OUTBOX = insert(m.OutboxMessage).execution_options(render_nulls=True)
_INSERT_PENDING = insert(m.PendingPayment).execution_options(render_nulls=True)
_INSERT_NOTICES = insert(m.Notice).execution_options(render_nulls=True)
_PENDING_BY_MESSAGE = select(m.PendingPayment.inbound_message_id, m.PendingPayment.id).where(
    m.PendingPayment.inbound_message_id.in_(bindparam("ids", expanding=True))
)
_NOTICE_IDS_BY_MESSAGE_ID = select(m.Notice.message_id, m.Notice.id).where(
    m.Notice.message_id.in_(bindparam("ids", expanding=True))
)
_REACHABLE_GUARDIANS = (
    select(m.Guardianship.student_id, m.Guardian.id, m.Guardian.email)
    .join(m.Guardian, m.Guardianship.guardian_id == m.Guardian.id)
    .where(
        m.Guardianship.student_id.in_(bindparam("ids", expanding=True)),
        m.Guardian.email.is_not(None),
        m.Guardian.email != "",
        m.Guardian.email_bouncing_since.is_(None),
    )
    .order_by(m.Guardianship.student_id, m.Guardian.id)
)
_IDS_BY_MESSAGE_ID = select(m.InboundMessage.message_id, m.InboundMessage.id).where(
    m.InboundMessage.message_id.in_(bindparam("ids", expanding=True))
)
_ROUTE_NOTICES = select(m.Notice).where(
    or_(
        m.Notice.id.in_(bindparam("notice_ids", expanding=True)),
        m.Notice.message_id.in_(bindparam("message_ids", expanding=True)),
    )
)
_ROUTE_INVOICES = select(*_INVOICE_REF).where(
    or_(
        m.Invoice.id.in_(bindparam("invoice_ids", expanding=True)),
        func.upper(m.Invoice.number).in_(bindparam("numbers", expanding=True)),
    )
)
_ROUTE_GUARDIANS = (
    select(m.Guardian.id, func.lower(m.Guardian.email), m.Guardianship.student_id)
    .outerjoin(m.Guardianship, m.Guardianship.guardian_id == m.Guardian.id)
    .where(func.lower(m.Guardian.email).in_(bindparam("addresses", expanding=True)))
    .order_by(m.Guardian.id, m.Guardianship.student_id)
)


def _address(address: str) -> str:
    return address.strip().lower()


def _column_values(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows built in memory (not added to the session) as parameters for one INSERT: every
    column but the id the database generates."""
    keys = [a.key for a in sa_inspect(type(rows[0])).column_attrs if a.key != "id"]
    return [{key: getattr(row, key) for key in keys} for row in rows]


class DuplicateMessage(Exception):
    """A Message-ID being inserted is already in the store (another reader got it first), or
    the INSERT broke another constraint: the database's error is the `__cause__`."""


@dataclass(frozen=True)
class RouteFacts:
    """What routing a batch of messages needs from the store, read in three queries for the
    whole batch: the notices named by reply tokens or by Message-ID, the invoices named by id
    or number, and the guardians whose address sent a message."""

    notices: dict[int, m.Notice]
    notices_by_message_id: dict[str, m.Notice]
    invoices: dict[int, InvoiceRef]
    invoices_by_number: dict[str, InvoiceRef]  # upper-cased numbers
    # a sender's address -> (guardian id, id of a student of theirs or None), by guardian id
    guardians: dict[str, list[tuple[int, int | None]]]

    def invoice_for_reply(
        self, invoice_id: int, sender: str, *, notice_id: int | None = None
    ) -> tuple[InvoiceRef, int | None, int | None] | None:
        """(the invoice, `notice_id` if that notice is the invoice's, the id of the student's
        guardian whose address is `sender`); None when there is no such invoice."""
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            return None
        notice = None if notice_id is None else self.notices.get(notice_id)
        notice_found = notice.id if notice is not None and notice.invoice_id == invoice.id else None
        return invoice, notice_found, self.guardian_of(invoice.student_id, sender)

    def guardian_of(self, student_id: int, sender: str) -> int | None:
        """The student's guardian (the lowest id) whose address is `sender`."""
        for guardian_id, of_student in self.guardians.get(_address(sender), ()):
            if of_student == student_id:
                return guardian_id
        return None

    def guardians_with_address(self, address: str) -> list[int]:
        return list(dict.fromkeys(g for g, _ in self.guardians.get(_address(address), ())))

    def invoice_numbered(self, numbers: Sequence[str]) -> InvoiceRef | None:
        """The first of `numbers` (case-insensitive) that is an invoice."""
        for number in numbers:
            found = self.invoices_by_number.get(number.strip().upper())
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class NewNotice:
    """An email about an invoice for each reachable guardian of its student."""

    template: str
    invoice_id: int
    student_id: int
    dedupe_key: str
    context: dict[str, Any]


@dataclass(frozen=True)
class ReplyFacts:
    """What Slack shows about one inbound message."""

    message: m.InboundMessage
    invoice: m.Invoice | None
    student: m.Student | None
    guardian: m.Guardian | None
    pending: m.PendingPayment | None
    decided_by: str | None  # the pending payment's decider
    # the pending payment's split, in split order, each with its invoice as it is now
    parts: tuple[tuple[m.PendingPaymentPart, InvoiceRef], ...] = ()


async def outbox_payload(store: SqlUnitOfWork, dedupe_key: str) -> dict[str, Any]:
    """The payload a side effect was queued with ({} when there is none)."""
    stmt = select(m.OutboxMessage.payload).where(m.OutboxMessage.dedupe_key == dedupe_key)
    payload = (await store.session.execute(stmt)).scalar_one_or_none()
    return dict(payload) if payload else {}


class Inbox:
    """Inbound-mail queries and changes, in the transaction of the `SqlUnitOfWork` it wraps."""

    def __init__(self, store: SqlUnitOfWork) -> None:
        self.store = store
        self.session = store.session

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

    async def stored_message_ids(self, message_ids: Iterable[str]) -> set[str]:
        """Which of these Message-IDs are in the store already."""
        wanted = sorted(set(message_ids))
        if not wanted:
            return set()
        return set((await self.session.scalars(_STORED_MESSAGE_IDS, {"ids": wanted})).all())

    async def insert_messages(self, rows: Sequence[m.InboundMessage]) -> None:
        """Write rows built by `new_message` in one INSERT, executed row by row in their order
        (so their ids follow it), and give each row its id. A Message-ID taken already raises
        DuplicateMessage (a second reader got there first: on PostgreSQL this waits for its
        commit, then fails)."""
        if not rows:
            return
        try:
            await self.session.execute(_INSERT_MESSAGES, _column_values(rows))
        except IntegrityError as exc:  # the caller's transaction rolls back
            raise DuplicateMessage(", ".join(r.message_id for r in rows)[:300]) from exc
        # Read back by Message-ID: SQLite can't pair RETURNING rows with a multi-row INSERT's.
        found = await self.session.execute(
            _IDS_BY_MESSAGE_ID, {"ids": [r.message_id for r in rows]}
        )
        ids = {message_id: id_ for message_id, id_ in found}
        for row in rows:
            row.id = ids[row.message_id]

    def outbox_row(self, kind: str, dedupe_key: str, payload: dict[str, Any]) -> m.OutboxMessage:
        """An outbox row for a side effect of a message just stored (its key names the new
        row, so it can't have been queued before: no look-up needed); `queue` writes it."""
        return new_message(kind, dedupe_key, payload, self._now())

    async def queue(self, rows: Sequence[m.OutboxMessage]) -> None:
        """Write outbox rows in one INSERT, in their order."""
        if rows:
            await self.session.execute(_INSERT_OUTBOX, _column_values(rows))

    # --- routing ----------------------------------------------------------------------

    async def notices_by_message_ids(self, message_ids: Iterable[str]) -> dict[str, m.Notice]:
        wanted = sorted({i for i in message_ids if i})
        if not wanted:
            return {}
        rows = await self.session.execute(_NOTICES_BY_MESSAGE_ID, {"ids": wanted})
        return {n.message_id: n for n in rows.scalars()}

    async def get_notice(self, notice_id: int) -> m.Notice | None:
        return await self.session.get(m.Notice, notice_id)

    async def digest_invoices(self, notice: m.Notice) -> list[InvoiceRef]:
        """The invoices a billing digest covered, oldest notice first, as routing reads them
        ([] for any other notice). A reply to a digest is about all of them."""
        wanted = member_ids(notice)
        if not wanted:
            return []
        rows = await self.session.execute(
            select(*_INVOICE_REF)
            .join(m.Notice, m.Notice.invoice_id == m.Invoice.id)
            .where(m.Notice.id.in_(wanted), m.Notice.digest_id == notice.id)
            .order_by(m.Notice.id)
        )
        return list(dict.fromkeys(InvoiceRef(*row) for row in rows))

    async def get_invoice(self, invoice_id: int) -> m.Invoice | None:
        # Routing needs the invoice's own columns, not its lines.
        return await self.session.get(m.Invoice, invoice_id, options=[lazyload(m.Invoice.lines)])

    async def route_facts(
        self,
        *,
        notice_ids: Iterable[int],
        message_ids: Iterable[str],
        invoice_ids: Iterable[int],
        numbers: Iterable[str],
        senders: Iterable[str],
    ) -> RouteFacts:
        """Everything routing needs for a batch: notices by id and by Message-ID, then the
        invoices they and the tokens name (plus those numbered in subjects), then the
        guardians with the senders' addresses and their students."""
        notices: list[m.Notice] = []
        notice_params = {
            "notice_ids": sorted(set(notice_ids)),
            "message_ids": sorted(set(message_ids)),
        }
        if any(notice_params.values()):
            notices = list(await self.session.scalars(_ROUTE_NOTICES, notice_params))
        invoice_params = {
            "invoice_ids": sorted(
                {*invoice_ids, *(n.invoice_id for n in notices if n.invoice_id is not None)}
            ),
            "numbers": sorted({n.strip().upper() for n in numbers}),
        }
        invoices: list[InvoiceRef] = []
        if any(invoice_params.values()):
            found = await self.session.execute(_ROUTE_INVOICES, invoice_params)
            invoices = [InvoiceRef(*row) for row in found]
        addresses = sorted({_address(a) for a in senders} - {""})
        guardians: dict[str, list[tuple[int, int | None]]] = {}
        if addresses:
            matches = await self.session.execute(_ROUTE_GUARDIANS, {"addresses": addresses})
            for guardian_id, address, student_id in matches:
                guardians.setdefault(address, []).append((guardian_id, student_id))
        by_number: dict[str, InvoiceRef] = {}
        for invoice in sorted(invoices, key=lambda i: i.id):
            by_number.setdefault(invoice.number.upper(), invoice)
        return RouteFacts(
            notices={n.id: n for n in notices},
            notices_by_message_id={n.message_id: n for n in notices},
            invoices={i.id: i for i in invoices},
            invoices_by_number=by_number,
            guardians=guardians,
        )

    async def get_guardian(self, guardian_id: int) -> m.Guardian | None:
        return await self.session.get(m.Guardian, guardian_id)

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

    def new_pending_payment(
        self,
        *,
        invoice_id: int,
        inbound_message_id: int,
        amount_cents: int,
        method: str,
        reference: str | None,
        paid_on: date | None,
        amount_given: bool = True,
        reply_thread: dict[str, Any] | None = None,
    ) -> m.PendingPayment:
        """A row for `add_pending_payments` to write."""
        return m.PendingPayment(
            amount_given=amount_given,
            reply_thread=reply_thread,
            invoice_id=invoice_id,
            inbound_message_id=inbound_message_id,
            amount_cents=amount_cents,
            method=method[:20],
            reference=(reference or None) and reference[:200],
            paid_on=paid_on,
            status="pending",
            created_at=self._now(),
        )

    async def add_pending_payments(self, rows: Sequence[m.PendingPayment]) -> None:
        """Write the rows in one INSERT and give each its id (one pending payment per inbound
        message, so they are read back by that)."""
        if not rows:
            return
        await self.session.execute(_INSERT_PENDING, _column_values(rows))
        found = await self.session.execute(
            _PENDING_BY_MESSAGE, {"ids": [r.inbound_message_id for r in rows]}
        )
        ids = {inbound_id: id_ for inbound_id, id_ in found}
        for row in rows:
            row.id = ids[row.inbound_message_id]

    async def add_pending_parts(self, parts: Sequence[tuple[int, Sequence[Part]]]) -> None:
        """Each reported payment's split (pending payment id, its parts in split order), in
        one INSERT."""
        values = [
            {
                "pending_payment_id": pending_id,
                "invoice_id": part.invoice_id,
                "position": position,
                "amount_cents": part.amount_cents,
                "payment_id": None,
            }
            for pending_id, split in parts
            for position, part in enumerate(split)
        ]
        if values:
            await self.session.execute(insert(m.PendingPaymentPart), values)

    async def pending_parts(self, pending_id: int) -> list[m.PendingPaymentPart]:
        """A reported payment's split, in split order ([] for one reported before splits)."""
        stmt = (
            select(m.PendingPaymentPart)
            .where(m.PendingPaymentPart.pending_payment_id == pending_id)
            .order_by(m.PendingPaymentPart.position, m.PendingPaymentPart.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def invoice_refs(self, invoice_ids: Sequence[int]) -> dict[int, InvoiceRef]:
        """Invoices as routing reads them, by id (their balances now)."""
        if not invoice_ids:
            return {}
        rows = await self.session.execute(
            select(*_INVOICE_REF).where(m.Invoice.id.in_(sorted(set(invoice_ids))))
        )
        return {ref.id: ref for ref in (InvoiceRef(*row) for row in rows)}

    async def thread_notices(self, dedupe_key: str, thread: dict[str, Any] | None) -> None:
        """Make the notices queued under `dedupe_key` reply in the family's email thread
        (storage.notices.THREAD_KEY; the sender writes In-Reply-To and References)."""
        if not thread:
            return
        rows = await self.session.execute(select(m.Notice).where(m.Notice.dedupe_key == dedupe_key))
        for notice in rows.scalars():
            notice.context = {**(notice.context or {}), THREAD_KEY: dict(thread)}

    async def queue_new_notices(self, wanted: Sequence[NewNotice]) -> int:
        """Each notice for every reachable guardian of its student, with its outbox row: the
        rows storage.notices.queue_notice makes, written in a few statements for the lot. Each
        key names a row made in this transaction, so no notice can have it yet (no look-up).
        Returns how many were queued."""
        if not wanted:
            return 0
        now = self._now()
        guardians = await self._reachable_guardians({w.student_id for w in wanted})
        notices = [
            m.Notice(
                invoice_id=w.invoice_id,
                guardian_id=guardian_id,
                template=w.template,
                dedupe_key=w.dedupe_key,
                to_address=address,
                message_id=new_message_id(self.store.mail_domain),
                context=w.context,
                status="queued",
                created_at=now,
            )
            for w in wanted
            for guardian_id, address in guardians.get(w.student_id, ())
        ]
        if not notices:
            return 0
        await self.session.execute(_INSERT_NOTICES, _column_values(notices))
        found = await self.session.execute(
            _NOTICE_IDS_BY_MESSAGE_ID, {"ids": [n.message_id for n in notices]}
        )
        ids = {message_id: id_ for message_id, id_ in found}
        await self.queue(
            [
                new_message(NOTICE_KIND, f"notice:{i}", {"notice_id": i}, now)
                for i in (ids[n.message_id] for n in notices)
            ]
        )
        return len(notices)

    async def _reachable_guardians(self, student_ids: set[int]) -> dict[int, list[tuple[int, str]]]:
        """Each student's guardians who can be emailed, as storage.notices.recipients picks
        them (an address, not known to bounce; by guardian id): (guardian id, address)."""
        rows = await self.session.execute(_REACHABLE_GUARDIANS, {"ids": sorted(student_ids)})
        found: dict[int, list[tuple[int, str]]] = {}
        for student_id, guardian_id, address in rows:
            if address:  # the query leaves out guardians without one
                found.setdefault(student_id, []).append((guardian_id, address))
        return found

    async def get_pending_payment(
        self, pending_id: int, *, lock: bool = False
    ) -> m.PendingPayment | None:
        stmt = select(m.PendingPayment).where(m.PendingPayment.id == pending_id)
        if lock:
            # Read again under the lock: two staff confirming at once must see each other.
            stmt = self.store.locking(stmt)
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
        student = None if invoice is None else await self.store.people.student(invoice.student_id)
        guardian = (
            None
            if message.guardian_id is None
            else await self.session.get(m.Guardian, message.guardian_id)
        )
        pending = await self.pending_for_message(inbound_id)
        decided_by = None
        if pending is not None and pending.decided_by_id is not None:
            decided_by = await self.store.people.staff_name(pending.decided_by_id)
        parts = await self.pending_parts_now(pending)
        return ReplyFacts(message, invoice, student, guardian, pending, decided_by, parts)

    async def pending_parts_now(
        self, pending: m.PendingPayment | None
    ) -> tuple[tuple[m.PendingPaymentPart, InvoiceRef], ...]:
        """A pending payment's parts, each with its invoice as it is now."""
        if pending is None:
            return ()
        parts = await self.pending_parts(pending.id)
        refs = await self.invoice_refs([p.invoice_id for p in parts])
        return tuple((p, refs[p.invoice_id]) for p in parts if p.invoice_id in refs)

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

    async def _insert_state_once(
        self, mailbox: str, *, uidvalidity: int, last_uid: int, now: datetime
    ) -> bool:
        """Insert the folder's first position; False when another reader got there first
        (two readers starting at once must not fail on the primary key)."""
        bind = self.session.bind
        insert_for = (
            pg_insert if bind is not None and bind.dialect.name == "postgresql" else (sqlite_insert)
        )
        stmt = (
            insert_for(m.MailboxState)
            .values(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
            .on_conflict_do_nothing(index_elements=["mailbox"])
        )
        result = await self.session.execute(stmt)
        return bool(getattr(result, "rowcount", 0) == 1)

    async def _current_state(self, mailbox: str) -> m.MailboxState | None:
        return await self.session.get(m.MailboxState, mailbox, populate_existing=True)

    async def save_mailbox_state(self, mailbox: str, *, uidvalidity: int, last_uid: int) -> None:
        """Set the position; last_uid only moves forward unless UIDVALIDITY changed."""
        now = self._now()
        state = await self.session.get(m.MailboxState, mailbox)
        if state is None:
            if await self._insert_state_once(
                mailbox, uidvalidity=uidvalidity, last_uid=last_uid, now=now
            ):
                return
            state = await self._current_state(mailbox)
            assert state is not None
        if state.uidvalidity != uidvalidity:
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
        now = self._now()
        if await self._insert_state_once(mailbox, uidvalidity=uidvalidity, last_uid=0, now=now):
            return
        state = await self._current_state(mailbox)
        assert state is not None
        state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, 0, now
        await self.session.flush()
