"""The inbound pipeline: parse → classify → route → store → side effects, one transaction per
message.

The raw message goes to the blob store first (content addressed, so a retry writes nothing new);
then, in one transaction, the Message-ID is claimed (unique, so nothing is processed twice),
the message is routed and recorded, and everything it causes — a pending payment, the family's
acknowledgement, photos on the incident, the Slack post — is written with it or not at all.

Routing, in order: a signed token in a recipient address (an altered or invented one is
"forged" and held); In-Reply-To/References matching a notice we sent; an invoice number in the
subject. A sender who isn't a guardian of the invoice's student is "flagged": shown to staff as
unverified, never trusted with a pending payment or photos.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.mail.parse import Attachment, ParsedMail, parse_message
from bot.mail.tokens import token_from_address, verify_reply_token
from storage import models as m
from storage.blobs import BlobStore
from storage.images import CheckedImage, check_photo_async
from storage.inbox import (
    BOUNCE_ALERT_KIND,
    REPLY_POST_KIND,
    DuplicateMessage,
    Inbox,
    InvoiceRef,
    redact_address,
)
from storage.store import SqlStore, StoreFactory
from workflows.clock import Clock, local_date
from workflows.errors import ValidationError
from workflows.incidents import StoredPhoto, attach_photo
from workflows.invoices import OPEN_STATUSES, NoticeTemplate
from workflows.pending_payments import payment_method
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.replies import Intent, read_intent

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("devicecare.mail")

MAX_MESSAGE_ID = 300  # the column's width
MAX_PHOTOS = 10  # per message; more are left in the original email
MIN_PHOTO_SIDE = 200  # smaller images are logos and signature art, not photos of damage
MAX_BODY = 20_000  # characters of the reply kept in the row (the whole email is in the blobs)
# The shape of our reply tokens (bot.mail.tokens): a sub-address that isn't shaped like one is
# someone else's plus-address, not a forgery.
_TOKEN_SHAPE = re.compile(r"^i[0-9]{1,12}n[0-9]{1,12}\.")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
SYSTEM = Actor.system("DeviceCare mail agent")
PREFIX_TTL_SECONDS = 60.0


class Route(StrEnum):
    TOKEN = "token"
    THREAD = "thread"
    SUBJECT = "subject"
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


@dataclass
class _Photos:
    checked: list[tuple[Attachment, CheckedImage, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """A message parsed and its bytes stored, ready for its transaction."""

    raw: bytes
    parsed: ParsedMail
    message_id: str
    raw_key: str | None
    photos: _Photos
    duplicate: bool = False


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


def token_addresses(raw: bytes) -> tuple[str, ...]:
    """Recipient addresses exactly as written: a reply token's signature is case-sensitive, so
    these are read here rather than from the parser's (lower-cased) recipients."""
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        values = [str(v) for name in _RECIPIENT_HEADERS for v in headers.get_all(name) or ()]
        return tuple(dict.fromkeys(a.strip() for _, a in getaddresses(values) if "+" in a))
    except Exception:  # noqa: BLE001 - then the parser's recipients are used
        return ()


def _is_image(attachment: Attachment) -> bool:
    name = (attachment.filename or "").lower()
    return attachment.content_type.lower().startswith("image/") or name.endswith(
        (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif")
    )


def _fallback_parse(raw: bytes) -> ParsedMail:
    """What we can still say about a message the parser couldn't read: it is held for staff."""
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)

    def header(name: str) -> str:
        try:
            return str(headers.get(name, "") or "")
        except Exception:  # noqa: BLE001 - a broken header is just missing
            return ""

    name, address = next(iter(getaddresses([header("From")])), ("", ""))
    return ParsedMail(
        message_id=angle(header("Message-ID")),
        in_reply_to=None,
        references=(),
        from_address=address.lower(),
        from_name=name or None,
        recipients=(),
        subject=header("Subject")[:500],
        date=None,
        text="",
        reply_text="(DeviceCare couldn't read this email; the original is kept.)",
        attachments=(),
        kind="reply",
        bounced_recipients=(),
    )


class Ingestor:
    """Turns raw messages into stored, routed replies. Safe to call again with the same bytes."""

    def __init__(
        self,
        stores: StoreFactory,
        blobs: BlobStore,
        *,
        clock: Clock,
        tz: ZoneInfo,
        secret_key: str,
    ) -> None:
        self.stores = stores
        self.blobs = blobs
        self.clock = clock
        self.tz = tz
        self.secret_key = secret_key
        self._prefix: tuple[str, float] | None = None

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Ingestor:
        return cls(
            runtime.stores,
            runtime.blobs,
            clock=runtime.clock,
            tz=runtime.settings.tz,
            secret_key=runtime.settings.secret_key.get_secret_value(),
        )

    async def ingest(
        self, raw: bytes, *, uidvalidity: int | None = None, uid: int | None = None
    ) -> Ingested:
        """Everything for one message: `prepare` then `store`."""
        return await self.store(await self.prepare(raw), uidvalidity=uidvalidity, uid=uid)

    async def prepare(self, raw: bytes) -> Prepared:
        """The work outside the transaction: parse, raw bytes to the blob store, photo checks.

        Safe to run ahead for several messages at once (the reader does, so disk and photo
        work overlap with the previous message's transaction)."""
        parsed = self._parse(raw)
        message_id = inbound_message_id(parsed.message_id, raw)
        images = [a for a in parsed.attachments if _is_image(a)] if parsed.kind == "reply" else []
        if images and await self._seen(message_id):
            return Prepared(raw, parsed, message_id, None, _Photos(), duplicate=True)
        raw_key = await self.blobs.put(raw, "message/rfc822")
        photos = await self._check_photos(images)
        return Prepared(raw, parsed, message_id, raw_key, photos)

    async def store(
        self, prepared: Prepared, *, uidvalidity: int | None = None, uid: int | None = None
    ) -> Ingested:
        """The message and everything it causes, in one transaction; once per Message-ID."""
        if prepared.duplicate or prepared.raw_key is None:
            return Ingested(prepared.message_id, None, duplicate=True)
        try:
            async with self.stores() as store:
                return await self._store(store, prepared, uid, uidvalidity)
        except DuplicateMessage:
            return Ingested(prepared.message_id, None, duplicate=True)

    # --- before the transaction -----------------------------------------------------------

    @staticmethod
    def _parse(raw: bytes) -> ParsedMail:
        try:
            return parse_message(raw)
        except Exception:  # noqa: BLE001 - an unreadable message is held, never lost or retried
            log.exception("couldn't parse an inbound message; holding it for staff")
            return _fallback_parse(raw)

    async def _seen(self, message_id: str) -> bool:
        async with self.stores() as store:
            return await Inbox(store).find_message(message_id) is not None

    async def _check_photos(self, images: list[Attachment]) -> _Photos:
        """Photos go through the same checks as Slack uploads; what fails is noted for staff."""
        photos = _Photos()
        for attachment in images:
            if len(photos.checked) >= MAX_PHOTOS:
                photos.notes.append(
                    f"More than {MAX_PHOTOS} photos: the rest stay in the original email."
                )
                break
            try:
                checked = await check_photo_async(attachment.data, filename=attachment.filename)
            except ValidationError as exc:
                photos.notes.append(exc.message)
                continue
            if min(checked.width, checked.height) < MIN_PHOTO_SIDE:
                continue  # a logo or signature image
            key = await self.blobs.put(checked.data, checked.content_type)
            photos.checked.append((attachment, checked, key))
        return photos

    # --- the transaction ------------------------------------------------------------------

    async def _store(
        self, store: SqlStore, prepared: Prepared, uid: int | None, uidvalidity: int | None
    ) -> Ingested:
        parsed, raw, photos = prepared.parsed, prepared.raw, prepared.photos
        message_id, raw_key = prepared.message_id, prepared.raw_key
        assert raw_key is not None
        # The Message-ID is claimed by the INSERT below (unique): a message stored before, or
        # by another reader at the same moment, fails there and everything here rolls back.
        inbox = Inbox(store)
        row = inbox.new_message(
            message_id=message_id,
            raw_blob_key=raw_key,
            from_address=parsed.from_address,
            subject=parsed.subject,
            kind=parsed.kind,
            uidvalidity=uidvalidity,
            uid=uid,
            body_text=(parsed.reply_text or parsed.text or "")[:MAX_BODY],
        )
        if parsed.kind == "bounce":
            return await self._bounce(store, inbox, row, parsed)
        routing = await self._route(store, inbox, parsed, raw)
        row.route = routing.route.value
        invoice = routing.invoice
        row.invoice_id = None if invoice is None else invoice.id
        row.notice_id = routing.notice_id
        row.sender_trusted = routing.guardian_id is not None
        row.guardian_id = routing.guardian_id
        if routing.guardian_id is None and parsed.from_address:
            others = await inbox.guardians_with_address(parsed.from_address)
            row.guardian_id = others[0].id if others else None  # who it claims to be, for staff
        if parsed.kind == "auto_reply":
            row.status = Status.RECORDED.value
            await inbox.insert_message(row)
            return self._result(row)
        if invoice is None:
            row.status = Status.HELD.value
        else:
            row.status = (Status.ROUTED if row.sender_trusted else Status.FLAGGED).value
        read = read_intent(row.body_text, today=local_date(self.clock.now(), self.tz))
        row.intent = read.intent.value
        await inbox.insert_message(row)
        notes = list(photos.notes)
        covered = (
            []
            if routing.notice_id is None
            else await inbox.digest_invoice_numbers(routing.notice_id)
        )
        if len(covered) > 1 and invoice is not None:
            notes.append(
                f"A reply to one email about {len(covered)} invoices ({', '.join(covered)}); "
                f"filed under {invoice.number}."
            )
        pending_id = None
        attached = 0
        if row.status == Status.ROUTED and invoice is not None:
            pending_id = await self._pending_payment(store, inbox, row, invoice, read, notes)
            attached = await self._attach_photos(store, inbox, invoice, row, photos)
            if photos.checked and invoice.incident_id is None:
                notes.append("The invoice has no incident, so the photos stay in the email.")
        elif photos.checked:
            notes.append("Photos weren't attached to any incident: the sender isn't verified.")
        files = [a for a in parsed.attachments if not _is_image(a)]
        if files:
            names = ", ".join((a.filename or a.content_type) for a in files[:5])
            notes.append(f"Other attachments kept in the original email: {names}.")
        inbox.queue(  # written by the commit
            REPLY_POST_KIND,
            f"mail-reply:{row.id}",
            {
                "inbound_id": row.id,
                "from_name": parsed.from_name,
                "photos": attached,
                "notes": notes,
            },
        )
        return self._result(row, pending_id=pending_id, photos=attached)

    async def _route(
        self, store: SqlStore, inbox: Inbox, parsed: ParsedMail, raw: bytes
    ) -> Routing:
        """Which invoice the message is about, and whether its sender is one of the student's
        guardians (each candidate is one query: the invoice, its notice, the guardian)."""
        sender = parsed.from_address
        forged = False
        for address in token_addresses(raw) or parsed.recipients:
            token = token_from_address(address)
            if token is None or not _TOKEN_SHAPE.match(token):
                continue
            ids = verify_reply_token(token, self.secret_key)
            if ids is None:
                forged = True
                continue
            found = await inbox.invoice_for_reply(ids.invoice_id, sender, notice_id=ids.notice_id)
            if found is not None:
                return Routing(Route.TOKEN, *found)
            # signed by us, but the invoice is gone: try the other ways
        if forged:
            return Routing(Route.FORGED)
        thread = [angle(parsed.in_reply_to), *map(angle, reversed(parsed.references))]
        mids = [i for i in thread if i]
        if mids:
            notices = await inbox.notices_by_message_ids(mids)
            for mid in mids:
                notice = notices.get(mid)
                if notice is not None and notice.invoice_id is not None:
                    found = await inbox.invoice_for_reply(notice.invoice_id, sender)
                    if found is not None:
                        return Routing(Route.THREAD, found[0], notice.id, found[2])
        numbers = invoice_numbers(parsed.subject, await self._invoice_prefix(store))
        named = await inbox.invoice_by_number(numbers) if numbers else None
        if named is not None:
            found = await inbox.invoice_for_reply(named.id, sender)
            if found is not None:
                return Routing(Route.SUBJECT, found[0], None, found[2])
        return Routing(Route.NONE)

    async def _invoice_prefix(self, store: SqlStore) -> str:
        """The district's invoice prefix, read at most once a minute."""
        now = time.monotonic()
        if self._prefix is None or now - self._prefix[1] > PREFIX_TTL_SECONDS:
            self._prefix = ((await store.settings()).invoice_prefix, now)
        return self._prefix[0]

    async def _pending_payment(
        self,
        store: SqlStore,
        inbox: Inbox,
        row: m.InboundMessage,
        invoice: InvoiceRef,
        read: Any,
        notes: list[str],
    ) -> int | None:
        """A payment the family reports waits for staff; the family hears we got the report."""
        reported = read.payment
        if read.intent != Intent.PAYMENT or reported is None or not reported.amount_cents:
            return None
        if reported.amount_cents <= 0:
            return None
        if invoice.status not in OPEN_STATUSES or invoice.balance_cents <= 0:
            notes.append(
                f"A payment was reported, but invoice {invoice.number} is {invoice.status}: "
                "nothing is waiting for confirmation."
            )
            return None
        method = payment_method(reported.method)
        pending = await inbox.add_pending_payment(
            invoice_id=invoice.id,
            inbound_message_id=row.id,
            amount_cents=reported.amount_cents,
            method="" if method is None else method.value,
            reference=reported.check_number,
            paid_on=reported.paid_on,
        )
        await inbox.get_invoice(invoice.id)  # without its lines, for queue_notice to find
        await store.queue_notice(
            NoticeTemplate.PENDING_PAYMENT_ACK,
            invoice.id,
            f"pending-ack:{pending.id}",
            {"pending_payment_id": pending.id},
        )
        return pending.id

    async def _attach_photos(
        self,
        store: SqlStore,
        inbox: Inbox,
        invoice: InvoiceRef,
        row: m.InboundMessage,
        photos: _Photos,
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

    async def _bounce(
        self,
        store: SqlStore,
        inbox: Inbox,
        row: m.InboundMessage,
        parsed: ParsedMail,
    ) -> Ingested:
        """Mark the address as bouncing, the notice as bounced, and tell billing staff."""
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
        guardians = [g for _, g in marked]
        row.route = (Route.THREAD if by_id else Route.NONE).value
        first = notices[0] if notices else None
        row.notice_id = None if first is None else first.id
        row.invoice_id = None if first is None else first.invoice_id
        row.guardian_id = guardians[0].id if guardians else (first.guardian_id if first else None)
        await inbox.insert_message(row)
        for address, guardian in marked:
            await store.log(
                SYSTEM,
                "guardian",
                guardian.id,
                "email_bouncing",
                after={"address": redact_address(address), "inbound_message_id": row.id},
            )
        if notices or guardians:
            inbox.queue(
                BOUNCE_ALERT_KIND,
                f"mail-bounce:{row.id}",
                {
                    "inbound_id": row.id,
                    "addresses": sorted(addresses),
                    "notice_ids": [n.id for n in notices],
                    "guardian_ids": [g.id for g in guardians],
                },
            )
        return self._result(row)

    @staticmethod
    def _result(
        row: m.InboundMessage, *, pending_id: int | None = None, photos: int = 0
    ) -> Ingested:
        return Ingested(
            message_id=row.message_id,
            inbound_id=row.id,
            duplicate=False,
            kind=row.kind,
            route=row.route,
            status=row.status,
            invoice_id=row.invoice_id,
            pending_payment_id=pending_id,
            photos=photos,
        )


def _guardian_actor(guardian: m.Guardian) -> Actor:
    """The family acting by email: the system's rights, the guardian's name in the log."""
    return Actor.system(f"{guardian.full_name} (by email)"[:200])
