"""An inbound email's unit of work: route → store → side effects, one transaction per batch of
messages (the reader's fetch batch; a single message is a batch of one).

The message comes read and its bytes kept (bot/mail/ingest.py: parsing, the blob store, photo
checks, reply tokens checked against our keys). In one transaction for the batch, Message-IDs
already stored (or met earlier in the batch) are set aside as duplicates, the rest are routed
from look-ups made once for the whole batch and recorded in order, their Message-IDs claimed by
the INSERT (unique, so nothing is processed twice), and everything they cause — a pending
payment, the family's acknowledgement, photos on the incident, the Slack post — is written with
them or not at all.

Routing, in order: a signed token in a recipient address (an altered or invented one is
"forged" and held); In-Reply-To/References matching a notice we sent; an invoice number in the
subject; an invoice number in the text, from a guardian of its student. A sender who isn't a
guardian of the invoice's student is "flagged": shown to staff as unverified, never trusted
with a pending payment or photos.

A guardian's reply that names invoices of their family (in its text, else its subject) is filed
under the first one named, whichever of the family's emails it answers; a number of another
family's invoice is ignored. A reported payment is split over the invoices the reply is about
(workflows.reply_split), and the acknowledgement answers the parent's email (In-Reply-To,
References).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from storage import models as m
from storage.images import CheckedImage
from storage.inbox import (
    BOUNCE_ALERT_KIND,
    REPLY_POST_KIND,
    Inbox,
    InvoiceRef,
    NewNotice,
    RouteFacts,
    redact_address,
)
from storage.notices import THREAD_KEY, queue_guardian_notice, reply_thread
from storage.uow import SqlUnitOfWork
from workflows.clock import Clock, local_date
from workflows.i18n import _
from workflows.incidents import StoredPhoto, attach_photo
from workflows.invoices import OPEN_STATUSES, NoticeTemplate
from workflows.pending_payments import payment_method
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.replies import Intent, ReadIntent, invoice_numbers_in, read_intent
from workflows.reply_split import OpenInvoice, Split, split_payment

MAX_MESSAGE_ID = 300  # the column's width
MAX_BODY = 20_000  # characters of the reply kept in the row (the whole email is in the blobs)
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
SYSTEM = Actor.system("DeviceCare mail agent")
PREFIX_TTL_SECONDS = 60.0


# --- the message as the use case reads it (bot/mail/parse.py makes it) -------------------------


class MailAttachment(Protocol):
    """An attachment of the email (bot.mail.parse.Attachment)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def content_type(self) -> str: ...


class InboundMail(Protocol):
    """The email as the parser read it (bot.mail.parse.ParsedMail)."""

    @property
    def in_reply_to(self) -> str | None: ...

    @property
    def references(self) -> tuple[str, ...]: ...

    @property
    def from_address(self) -> str: ...

    @property
    def from_name(self) -> str | None: ...

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def reply_text(self) -> str: ...

    @property
    def attachments(self) -> Sequence[MailAttachment]: ...

    @property
    def kind(self) -> Literal["reply", "auto_reply", "bounce"]: ...

    @property
    def bounced_recipients(self) -> tuple[str, ...]: ...


class TokenIds(Protocol):
    """What a verified reply token names (bot.mail.tokens.ReplyToken)."""

    @property
    def invoice_id(self) -> int: ...

    @property
    def notice_id(self) -> int: ...


# --- what becomes of a message ------------------------------------------------------------------


class Route(StrEnum):
    TOKEN = "token"
    THREAD = "thread"
    SUBJECT = "subject"
    BODY = "body"  # an invoice of the sender's family named in the text (never a stranger's)
    NONE = "none"
    FORGED = "forged"


class Status(StrEnum):
    ROUTED = "routed"  # about an invoice, from one of the student's guardians
    FLAGGED = "flagged"  # about an invoice, from someone who isn't a guardian of the student
    HELD = "held"  # routes nowhere (or a forged token): staff decide
    RECORDED = "recorded"  # auto-replies and bounces: kept, never answered


@dataclass(frozen=True)
class Ingested:
    """What became of one message."""

    message_id: str
    inbound_id: int | None
    duplicate: bool
    kind: str = ""
    route: str = Route.NONE
    status: str = Status.HELD
    invoice_id: int | None = None
    pending_payment_id: int | None = None
    photos: int = 0


@dataclass(frozen=True)
class Routing:
    route: Route
    invoice: InvoiceRef | None = None
    notice_id: int | None = None
    guardian_id: int | None = None  # the student's guardian who sent it (None: not trusted)


@dataclass(frozen=True)
class Candidates:
    """Where a message could belong, read from the message alone (no database)."""

    tokens: tuple[TokenIds, ...] = ()  # signed by us, in the order of the recipients
    forged: bool = False  # a recipient carries a token shaped like ours that we didn't sign
    thread: tuple[str, ...] = ()  # In-Reply-To, then References from the newest
    numbers: tuple[str, ...] = ()  # invoice numbers in the subject
    body_numbers: tuple[str, ...] = ()  # invoice numbers in the new text of a reply


@dataclass(frozen=True)
class Bounce:
    notices: list[m.Notice]
    addresses: set[str]
    marked: list[tuple[str, m.Guardian]]  # (address, guardian) now known to bounce


@dataclass
class Photos:
    checked: list[tuple[MailAttachment, CheckedImage, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """A message parsed and its bytes stored, ready for its transaction."""

    raw: bytes
    parsed: InboundMail
    message_id: str
    raw_key: str | None
    photos: Photos
    duplicate: bool = False
    # Reply tokens among its recipients, checked against our keys (bot.mail.tokens).
    tokens: tuple[TokenIds, ...] = ()
    forged: bool = False  # a recipient carries a token shaped like ours that we didn't sign


def angle(message_id: str | None) -> str | None:
    """A Message-ID in its stored form, `<local@domain>` (None when there is none)."""
    text = (message_id or "").strip()
    if not text:
        return None
    found = _MESSAGE_ID.search(text)
    if found:
        return found.group(0)
    return f"<{text.strip('<>')}>" if " " not in text else None


def inbound_message_id(message_id: str | None, raw: bytes) -> str:
    """The message's own Message-ID, or a stable one made from its bytes when it has none."""
    mid = angle(message_id)
    if mid is None:
        return f"<{hashlib.sha256(raw).hexdigest()}@no-message-id.devicecare.invalid>"
    if len(mid) > MAX_MESSAGE_ID:
        return f"<{hashlib.sha256(mid.encode()).hexdigest()}@long-message-id.devicecare.invalid>"
    return mid


def invoice_numbers(subject: str, prefix: str) -> list[str]:
    """Invoice numbers named in a subject, in the form the store keeps ("INV-000123")."""
    if not prefix:
        return []
    pattern = re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}[\s#-]{{0,2}}([0-9]{{1,12}})(?![0-9])",
        re.IGNORECASE,
    )
    found: list[str] = []
    for match in pattern.finditer(subject or ""):
        number = f"{prefix}-{int(match.group(1)):06d}"
        if number not in found:
            found.append(number)
    return found


def is_image(attachment: MailAttachment) -> bool:
    name = (attachment.filename or "").lower()
    return attachment.content_type.lower().startswith("image/") or name.endswith(
        (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif")
    )


class MailIngest:
    """Stores a batch of read messages and everything they cause, in the caller's transaction."""

    def __init__(self, *, clock: Clock, tz: ZoneInfo) -> None:
        self.clock = clock
        self.tz = tz
        self._prefix: tuple[str, float] | None = None

    async def store_batch(
        self,
        store: SqlUnitOfWork,
        items: Sequence[tuple[Prepared, int | None]],
        uidvalidity: int | None,
    ) -> list[Ingested]:
        """Messages, each with its UID, and everything they cause: all of them are stored or
        none. Rows are written in the order given (the reader's UID order), so replies keep
        their order. A Message-ID in the store already, or earlier in the batch, is a
        duplicate; DuplicateMessage means another reader stored one meanwhile."""
        inbox = Inbox(store)
        results, fresh = await self._claim(inbox, items)
        facts, drafts = await self._drafts(store, inbox, fresh, uidvalidity)
        # Every row in one INSERT: the Message-IDs are claimed here (unique), a message stored
        # by another reader meanwhile fails it and the whole batch rolls back.
        await inbox.insert_messages([d.row for d in drafts])
        outbox: list[m.OutboxMessage] = []
        for draft in drafts:
            await self._effects(store, inbox, draft, facts, outbox)
        await self._record_payments(inbox, drafts)
        await inbox.queue(outbox)
        for draft in drafts:
            results[draft.index] = draft.result()
        answered = [r for r in results if r is not None]
        assert len(answered) == len(items), "every message of the batch has its result"
        return answered

    @staticmethod
    async def _claim(
        inbox: Inbox, items: Sequence[tuple[Prepared, int | None]]
    ) -> tuple[list[Ingested | None], list[tuple[int, Prepared, int | None]]]:
        """The batch's duplicates answered (stored before, or earlier in the batch), and the
        messages left to store, each with its place in the batch."""
        taken = await inbox.stored_message_ids(p.message_id for p, _ in items)
        results: list[Ingested | None] = []
        fresh: list[tuple[int, Prepared, int | None]] = []
        for index, (prepared, uid) in enumerate(items):
            if prepared.duplicate or prepared.raw_key is None or prepared.message_id in taken:
                results.append(Ingested(prepared.message_id, None, duplicate=True))
                continue
            taken.add(prepared.message_id)
            results.append(None)
            fresh.append((index, prepared, uid))
        return results, fresh

    async def _drafts(
        self,
        store: SqlUnitOfWork,
        inbox: Inbox,
        fresh: list[tuple[int, Prepared, int | None]],
        uidvalidity: int | None,
    ) -> tuple[RouteFacts, list[_Draft]]:
        """Each message routed (from look-ups made once for the batch) into its row, in order."""
        prefix = await self._invoice_prefix(store)
        candidates = [self._candidates(p, prefix) for _, p, _ in fresh]
        facts = await inbox.route_facts(
            notice_ids=(t.notice_id for c in candidates for t in c.tokens),
            invoice_ids=(t.invoice_id for c in candidates for t in c.tokens),
            message_ids=(i for c in candidates for i in c.thread),
            numbers=(n for c in candidates for n in (*c.numbers, *c.body_numbers)),
            senders=(p.parsed.from_address for _, p, _ in fresh if p.parsed.kind != "bounce"),
        )
        drafts: list[_Draft] = []
        for (index, prepared, uid), candidate in zip(fresh, candidates, strict=True):
            draft = _Draft(index, prepared, self._new_row(inbox, prepared, uid, uidvalidity))
            if prepared.parsed.kind == "bounce":
                draft.bounce = await self._bounce(inbox, draft.row, prepared.parsed)
            else:
                routing = _route(candidate, prepared.parsed.from_address, facts)
                draft.read = self._file(draft.row, prepared.parsed, routing, facts, prefix)
                draft.named = _named_invoices(candidate, facts, prepared)
                draft.routing = _refile(draft.row, routing, draft.named)
            drafts.append(draft)
        return facts, drafts

    @staticmethod
    def _new_row(
        inbox: Inbox, prepared: Prepared, uid: int | None, uidvalidity: int | None
    ) -> m.InboundMessage:
        parsed = prepared.parsed
        assert prepared.raw_key is not None
        return inbox.new_message(
            message_id=prepared.message_id,
            raw_blob_key=prepared.raw_key,
            from_address=parsed.from_address,
            subject=parsed.subject,
            kind=parsed.kind,
            uidvalidity=uidvalidity,
            uid=uid,
            body_text=(parsed.reply_text or parsed.text or "")[:MAX_BODY],
        )

    @staticmethod
    def _candidates(prepared: Prepared, prefix: str) -> Candidates:
        """Where the message could belong, from the message alone: the reply tokens read from
        its recipients, the Message-IDs it answers, invoice numbers in its subject."""
        parsed = prepared.parsed
        thread = [angle(parsed.in_reply_to), *map(angle, reversed(parsed.references))]
        return Candidates(
            tokens=prepared.tokens,
            forged=prepared.forged,
            thread=tuple(i for i in thread if i),
            numbers=tuple(invoice_numbers(parsed.subject, prefix)),
            body_numbers=invoice_numbers_in(_reply_body(parsed), prefix),
        )

    def _file(
        self,
        row: m.InboundMessage,
        parsed: InboundMail,
        routing: Routing,
        facts: RouteFacts,
        prefix: str,
    ) -> ReadIntent | None:
        """The row's routing, sender and status; what the reply says (None for auto-replies)."""
        row.route = routing.route.value
        invoice = routing.invoice
        row.invoice_id = None if invoice is None else invoice.id
        row.notice_id = routing.notice_id
        row.sender_trusted = routing.guardian_id is not None
        row.guardian_id = routing.guardian_id
        if routing.guardian_id is None and parsed.from_address:
            others = facts.guardians_with_address(parsed.from_address)
            row.guardian_id = others[0] if others else None  # who it claims to be, for staff
        if parsed.kind == "auto_reply":
            row.status = Status.RECORDED.value
            return None
        if invoice is None:
            row.status = Status.HELD.value
        else:
            row.status = (Status.ROUTED if row.sender_trusted else Status.FLAGGED).value
        read = read_intent(
            row.body_text, today=local_date(self.clock.now(), self.tz), invoice_prefix=prefix
        )
        row.intent = read.intent.value
        return read

    async def _effects(
        self,
        store: SqlUnitOfWork,
        inbox: Inbox,
        draft: _Draft,
        facts: RouteFacts,
        outbox: list[m.OutboxMessage],
    ) -> None:
        """What the stored message causes (its row has its id now); Slack posts go to `outbox`,
        a reported payment to `draft.pending`."""
        if draft.bounce is not None:
            await self._bounce_effects(store, inbox, draft.row, draft.bounce, outbox)
        elif draft.read is not None:  # auto-replies are recorded, never answered
            await self._reply_effects(store, inbox, draft, draft.read, facts, outbox)

    async def _reply_effects(
        self,
        store: SqlUnitOfWork,
        inbox: Inbox,
        draft: _Draft,
        read: ReadIntent,
        facts: RouteFacts,
        outbox: list[m.OutboxMessage],
    ) -> None:
        """A pending payment, photos on the incident, and the Slack post with notes for staff."""
        row, routing, parsed = draft.row, draft.routing, draft.prepared.parsed
        photos = draft.prepared.photos
        invoice = routing.invoice
        notes = list(photos.notes)
        notice = None if routing.notice_id is None else facts.notices.get(routing.notice_id)
        members = [] if notice is None else await inbox.digest_invoices(notice)
        covered = [i.number for i in members]
        if len(covered) > 1 and invoice is not None:
            notes.append(
                _(
                    "A reply to one email about {count} invoices ({numbers}); "
                    "filed under {number}.",
                    count=len(covered),
                    numbers=", ".join(covered),
                    number=invoice.number,
                )
            )
        if read.intent == Intent.NEW_LINK:
            notes.append(await self._send_new_link(store, inbox, row, parsed))
        if row.status == Status.ROUTED and invoice is not None:
            scope = _reply_scope(invoice, draft, members, facts)
            draft.pending, draft.parts = self._pending_payment(
                inbox, row, scope, draft, read, notes
            )
            draft.photos = await self._attach_photos(store, inbox, invoice, row, photos)
            if photos.checked and invoice.incident_id is None:
                notes.append(_("The invoice has no incident, so the photos stay in the email."))
        elif photos.checked:
            notes.append(_("Photos weren't attached to any incident: the sender isn't verified."))
        files = [a for a in parsed.attachments if not is_image(a)]
        if files:
            names = ", ".join((a.filename or a.content_type) for a in files[:5])
            notes.append(_("Other attachments kept in the original email: {names}.", names=names))
        outbox.append(
            inbox.outbox_row(
                REPLY_POST_KIND,
                f"mail-reply:{row.id}",
                {
                    "inbound_id": row.id,
                    "from_name": parsed.from_name,
                    "photos": draft.photos,
                    "notes": notes,
                },
            )
        )

    async def _send_new_link(
        self, store: SqlUnitOfWork, inbox: Inbox, row: m.InboundMessage, parsed: InboundMail
    ) -> str:
        """A fresh family-page link for a guardian who asks for one; the note staff see.

        Only a verified sender (one of the invoice's student's guardians) gets one. The key
        names the inbound message, so the same email read again sends nothing more."""
        if row.status == Status.HELD:
            return _(
                "Asks for a new link to the family page; none was sent: the email names no "
                "invoice to check the sender by."
            )
        if row.status != Status.ROUTED or not row.sender_trusted or row.guardian_id is None:
            return _(
                "Asks for a new link to the family page; none was sent: the sender isn't verified."
            )
        guardian = await inbox.get_guardian(row.guardian_id)
        if guardian is None:
            return _(
                "Asks for a new link to the family page; none was sent: the guardian is no "
                "longer on file."
            )
        if not guardian.email or guardian.email_bouncing_since is not None:
            return _(
                "Asks for a new link to the family page; none was sent: {guardian} can't be "
                "emailed.",
                guardian=guardian.full_name,
            )
        digest = hashlib.sha256(row.message_id.encode()).hexdigest()[:40]
        notice = await queue_guardian_notice(
            store.session,
            self.clock.now(),
            guardian=guardian,
            template=NoticeTemplate.FAMILY_LINK,
            dedupe_key=f"family-link:mail:{digest}",
            context={"inbound_message_id": row.id, THREAD_KEY: _thread_of(row, parsed)},
            mail_domain=store.mail_domain,
        )
        if notice is None:
            return _("Asks for a new link to the family page; it was sent already.")
        return _(
            "A new link to the family page was emailed to {guardian}.",
            guardian=guardian.full_name,
        )

    async def _invoice_prefix(self, store: SqlUnitOfWork) -> str:
        """The district's invoice prefix, read at most once a minute."""
        now = time.monotonic()
        if self._prefix is None or now - self._prefix[1] > PREFIX_TTL_SECONDS:
            self._prefix = ((await store.settings.get()).invoice_prefix, now)
        return self._prefix[0]

    @staticmethod
    def _pending_payment(
        inbox: Inbox,
        row: m.InboundMessage,
        scope: Sequence[InvoiceRef],
        draft: _Draft,
        read: ReadIntent,
        notes: list[str],
    ) -> tuple[m.PendingPayment | None, Split | None]:
        """A payment the family reports, split over the invoices the reply is about
        (workflows.reply_split), to wait for staff (`_record_payments` writes it). A report
        without an amount ("I paid it online") waits too: staff enter the amount."""
        reported = read.payment
        if read.intent != Intent.PAYMENT or reported is None:
            return None, None
        if reported.amount_cents is not None and reported.amount_cents <= 0:
            return None, None
        open_ = [i for i in scope if i.status in OPEN_STATUSES and i.balance_cents > 0]
        if not open_:
            invoice = scope[0]
            notes.append(
                _(
                    "A payment was reported, but invoice {number} is {status}: "
                    "nothing is waiting for confirmation.",
                    number=invoice.number,
                    status=invoice.status,
                )
            )
            return None, None
        split = split_payment(
            reported.amount_cents,
            [OpenInvoice(i.id, i.number, i.balance_cents, i.due_date) for i in open_],
            draft.named_numbers,
        )
        given = [p for p in split.parts if p.amount_cents > 0]
        first = given[0] if given else split.parts[0]
        method = payment_method(reported.method)
        thread = _thread_of(row, draft.prepared.parsed)
        pending = inbox.new_pending_payment(
            invoice_id=first.invoice_id,
            inbound_message_id=row.id,
            amount_cents=split.owed_cents
            if reported.amount_cents is None
            else reported.amount_cents,
            method="" if method is None else method.value,
            reference=reported.check_number,
            paid_on=reported.paid_on,
            amount_given=reported.amount_cents is not None,
            reply_thread=thread,
        )
        return pending, split

    @staticmethod
    async def _record_payments(inbox: Inbox, drafts: Sequence[_Draft]) -> None:
        """The batch's reported payments, each waiting for staff with its split; the families
        hear we got their reports, in reply to their email."""
        reports = [d for d in drafts if d.pending is not None and d.parts is not None]
        await inbox.add_pending_payments([d.pending for d in reports if d.pending is not None])
        await inbox.add_pending_parts(
            [(d.pending.id, d.parts.parts) for d in reports if d.pending and d.parts]
        )
        notices: list[NewNotice] = []
        for draft in reports:
            pending, split, invoice = draft.pending, draft.parts, draft.routing.invoice
            if pending is None or split is None or invoice is None:
                continue
            numbers = {i.id: i for i in draft.scope}
            notices.append(
                NewNotice(
                    template=NoticeTemplate.PENDING_PAYMENT_ACK,
                    invoice_id=pending.invoice_id,
                    student_id=numbers[pending.invoice_id].student_id,
                    dedupe_key=f"pending-ack:{pending.id}",
                    context=ack_context(pending, split, numbers),
                )
            )
        await inbox.queue_new_notices(notices)

    async def _attach_photos(
        self,
        store: SqlUnitOfWork,
        inbox: Inbox,
        invoice: InvoiceRef,
        row: m.InboundMessage,
        photos: Photos,
    ) -> int:
        if invoice.incident_id is None or not photos.checked or row.guardian_id is None:
            return 0
        guardian = await inbox.get_guardian(row.guardian_id)
        if guardian is None:
            return 0
        ctx = Context(store, self.clock, self.tz)
        actor = _guardian_actor(guardian)
        digest = hashlib.sha256(row.message_id.encode()).hexdigest()[:40]
        for index, (attachment, checked, key) in enumerate(photos.checked, start=1):
            await attach_photo(
                ctx,
                actor,
                invoice.incident_id,
                StoredPhoto(
                    blob_key=key,
                    content_type=checked.content_type,
                    size_bytes=len(checked.data),
                    sha256=checked.sha256,
                    width=checked.width,
                    height=checked.height,
                    original_filename=(attachment.filename or None) and attachment.filename[:300],
                    source="email",
                    source_ref=f"email:{digest}:{index}",
                ),
            )
        return len(photos.checked)

    async def _bounce(self, inbox: Inbox, row: m.InboundMessage, parsed: InboundMail) -> Bounce:
        """Mark the address as bouncing and the notice as bounced; file the row under it."""
        row.status = Status.RECORDED.value
        # The parser puts the returned message's Message-ID among a bounce's references.
        ids = [i for i in (angle(parsed.in_reply_to), *map(angle, parsed.references)) if i]
        by_id = await inbox.notices_by_message_ids(ids)
        notices: list[m.Notice] = [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
        addresses = {a.strip().lower() for a in parsed.bounced_recipients if a.strip()}
        named = {n.to_address.lower() for n in notices}
        for address in sorted(addresses - named):
            latest = await inbox.latest_sent_notice_to(address)
            if latest is not None and latest not in notices:
                notices.append(latest)
        addresses |= {n.to_address.lower() for n in notices}
        for notice in notices:
            inbox.mark_notice_bounced(notice, f"bounced: {parsed.subject}"[:300])
        marked: list[tuple[str, m.Guardian]] = []
        for address in sorted(addresses):
            marked.extend((address, g) for g in await inbox.mark_bouncing(address))
        guardians = [g for _address, g in marked]
        row.route = (Route.THREAD if by_id else Route.NONE).value
        first = notices[0] if notices else None
        row.notice_id = None if first is None else first.id
        row.invoice_id = None if first is None else first.invoice_id
        row.guardian_id = guardians[0].id if guardians else (first.guardian_id if first else None)
        return Bounce(notices, addresses, marked)

    async def _bounce_effects(
        self,
        store: SqlUnitOfWork,
        inbox: Inbox,
        row: m.InboundMessage,
        bounce: Bounce,
        outbox: list[m.OutboxMessage],
    ) -> None:
        """The audit log for each guardian marked, and the alert to billing staff."""
        for address, guardian in bounce.marked:
            await store.activity.log(
                SYSTEM,
                "guardian",
                guardian.id,
                "email_bouncing",
                after={"address": redact_address(address), "inbound_message_id": row.id},
            )
        if bounce.notices or bounce.marked:
            outbox.append(
                inbox.outbox_row(
                    BOUNCE_ALERT_KIND,
                    f"mail-bounce:{row.id}",
                    {
                        "inbound_id": row.id,
                        "addresses": sorted(bounce.addresses),
                        "notice_ids": [n.id for n in bounce.notices],
                        "guardian_ids": [g.id for _, g in bounce.marked],
                    },
                )
            )


@dataclass
class _Draft:
    """A message of the batch, routed, its row not written yet."""

    index: int  # its place in the batch
    prepared: Prepared
    row: m.InboundMessage
    routing: Routing = field(default_factory=lambda: Routing(Route.NONE))
    read: ReadIntent | None = None  # what a reply says (None for auto-replies and bounces)
    bounce: Bounce | None = None
    pending: m.PendingPayment | None = None  # a payment it reports, waiting for staff
    parts: Split | None = None  # how that payment is split over its invoices
    named: tuple[InvoiceRef, ...] = ()  # the family's invoices the message names, in order
    scope: tuple[InvoiceRef, ...] = ()  # the invoices the reply is about (a reported payment's)
    photos: int = 0  # attached to the incident

    @property
    def named_numbers(self) -> tuple[str, ...]:
        return tuple(i.number for i in self.named)

    def result(self) -> Ingested:
        row = self.row
        return Ingested(
            message_id=row.message_id,
            inbound_id=row.id,
            duplicate=False,
            kind=row.kind,
            route=row.route,
            status=row.status,
            invoice_id=row.invoice_id,
            pending_payment_id=None if self.pending is None else self.pending.id,
            photos=self.photos,
        )


def _route(candidates: Candidates, sender: str, facts: RouteFacts) -> Routing:
    """Which invoice the message is about, and whether its sender is one of the student's
    guardians: a signed token first, then the thread, then an invoice number in the subject."""
    for ids in candidates.tokens:
        found = facts.invoice_for_reply(ids.invoice_id, sender, notice_id=ids.notice_id)
        if found is not None:
            return Routing(Route.TOKEN, *found)
        # signed by us, but the invoice is gone: try the other ways
    if candidates.forged:
        return Routing(Route.FORGED)
    for mid in candidates.thread:
        notice = facts.notices_by_message_id.get(mid)
        if notice is not None and notice.invoice_id is not None:
            found = facts.invoice_for_reply(notice.invoice_id, sender)
            if found is not None:
                return Routing(Route.THREAD, found[0], notice.id, found[2])
    named = facts.invoice_numbered(candidates.numbers)
    if named is not None:
        found = facts.invoice_for_reply(named.id, sender)
        if found is not None:
            return Routing(Route.SUBJECT, found[0], None, found[2])
    # A number in the text routes only an email from a guardian of that invoice's student:
    # anyone can type a number, and a stranger's email is held rather than filed under it.
    for number in candidates.body_numbers:
        in_text = facts.invoices_by_number.get(number.strip().upper())
        if in_text is None:
            continue
        found = facts.invoice_for_reply(in_text.id, sender)
        if found is not None and found[2] is not None:
            return Routing(Route.BODY, found[0], None, found[2])
    return Routing(Route.NONE)


def _thread_of(row: m.InboundMessage, parsed: InboundMail) -> dict[str, Any]:
    """What a notice answering this email needs to thread with it (In-Reply-To, References)."""
    return reply_thread(
        row.message_id, [i for i in map(angle, parsed.references) if i], parsed.subject
    )


def _reply_body(parsed: InboundMail) -> str:
    return (parsed.reply_text or parsed.text or "")[:MAX_BODY]


def _named_invoices(
    candidates: Candidates, facts: RouteFacts, prepared: Prepared
) -> tuple[InvoiceRef, ...]:
    """The sender's family's invoices the message names: in its new text (in order), then in
    its subject. A number that isn't one of the family's invoices (another family's, or no
    invoice at all) is left out: it is never trusted."""
    sender = prepared.parsed.from_address
    found: list[InvoiceRef] = []
    # The body's numbers come from the reading rules' own reader (workflows.replies).
    for number in (*candidates.body_numbers, *candidates.numbers):
        invoice = facts.invoices_by_number.get(number.strip().upper())
        if invoice is None or invoice in found:
            continue
        if facts.guardian_of(invoice.student_id, sender) is None:
            continue
        found.append(invoice)
    return tuple(found)


def _refile(row: m.InboundMessage, routing: Routing, named: Sequence[InvoiceRef]) -> Routing:
    """A reply from a guardian that names one of their family's invoices is filed under it
    (the first named), whichever of the family's emails it answers."""
    if routing.invoice is None or routing.guardian_id is None or not named:
        return routing
    chosen = named[0]
    if chosen.id == routing.invoice.id:
        return routing
    row.invoice_id = chosen.id
    return Routing(routing.route, chosen, routing.notice_id, routing.guardian_id)


def _reply_scope(
    invoice: InvoiceRef, draft: _Draft, members: Sequence[InvoiceRef], facts: RouteFacts
) -> tuple[InvoiceRef, ...]:
    """The invoices a reply is about: the one it is filed under, those it names, and those of
    the digest it answers, only the sender's family's."""
    sender = draft.prepared.parsed.from_address
    scope: list[InvoiceRef] = []
    for candidate in (invoice, *draft.named, *members):
        if any(c.id == candidate.id for c in scope):
            continue
        if candidate.id != invoice.id and facts.guardian_of(candidate.student_id, sender) is None:
            continue
        scope.append(candidate)
    draft.scope = tuple(scope)
    return draft.scope


def ack_context(
    pending: m.PendingPayment, split: Split, invoices: dict[int, InvoiceRef]
) -> dict[str, Any]:
    """What the acknowledgement says: each invoice's share, what was reported and owed, and
    the family's email it answers."""
    return {
        "pending_payment_id": pending.id,
        "amount_given": bool(pending.amount_given),
        "reported_cents": split.reported_cents,
        "owed_cents": split.owed_cents,
        "over_cents": split.over_cents,
        "parts": [
            {
                "number": invoices[p.invoice_id].number,
                "amount_cents": p.amount_cents,
                "balance_cents": invoices[p.invoice_id].balance_cents,
            }
            for p in split.parts
            if p.invoice_id in invoices
        ],
        THREAD_KEY: pending.reply_thread,
    }


def _guardian_actor(guardian: m.Guardian) -> Actor:
    """The family acting by email: the system's rights, the guardian's name in the log."""
    return Actor.system(f"{guardian.full_name} (by email)"[:200])
