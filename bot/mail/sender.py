"""Delivering notices: the outbox handler for kind "email.notice".

For each notice the worker hands over, the sender loads it (the whole batch at once), renders
it, writes the message and sends it over the batch's one SMTP connection, then marks the notice
sent in the worker's transaction, the same commit that settles the outbox row (the notices'
changes are kept until the worker's `before_commit`, and written with one statement). A failure
raises, so the outbox retries it with backoff; the notice keeps the last error, and becomes
"failed" when the worker gives up. A guardian left without a usable address fails the notice at
once.

Speed (docs/performance.md, "Sending notices"): the batch is loaded in a fixed number of Core
queries; the next notice is rendered while the current one is on the wire; headers are encoded
here (the email package would parse each one and fold it again), and the email package's
generator writes the message's bytes.
"""

from __future__ import annotations

import asyncio
import binascii
import email.policy
import functools
import logging
import re
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any, TypedDict, TypeVar, Unpack

from bot.jobs.worker import GiveUp
from bot.mail.render import (
    WITHOUT_INVOICE,
    FamilyLinks,
    NoticeRenderer,
    RenderedNotice,
    build_context,
)
from bot.mail.smtp import RecipientRefused, SmtpConfig, SmtpTransport
from bot.mail.tokens import make_reply_token, reply_address
from bot.settings import Settings
from bot.signing import Keys, signing_keys
from storage.notice_queries import (
    CLOSED_INVOICE_STATUSES,
    DIGESTED,
    WITHDRAWN,
    NoticeData,
    is_digest,
    load_notice,
    load_notices,
    update_notices,
)
from storage.notices import HELD, NOTICE_KIND, thread_headers
from storage.uow import SqlUnitOfWork
from workflows.clock import Clock

log = logging.getLogger("devicecare.mail.sender")

# A "digested" notice goes out inside its billing digest, never on its own; a "held" one waits
# for a decision on its invoice and gets a fresh outbox row when released.
DONE_STATUSES = frozenset({"sent", "bounced", DIGESTED, WITHDRAWN, HELD})
POLICY = email.policy.default
T = TypeVar("T")


# An ASCII addr-spec we can write into a header as it is (no spaces, controls or brackets).
_PLAIN_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)


# Any other address: no spaces, controls, brackets or quotes, one @ (sent with SMTPUTF8).
_INTERNATIONAL_ADDRESS = re.compile(r'^[^\s<>()\[\],;:"@\\]+@[^\s<>()\[\],;:"@\\]+$')


class BadAddress(ValueError):
    """An address that can't be put in a header safely."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


@functools.lru_cache(maxsize=1024)
def encode_address(name: str, address: str, field: str = "To") -> str:
    """'Display Name <addr>' ready for the wire: quoted where it needs quoting, non-ASCII names
    as encoded words (split to fit), folded before the address when the line gets long.
    Cached: every notice has the same From (and a guardian often gets several notices)."""
    if not _PLAIN_ADDRESS.match(address):
        raise BadAddress(f"{address!r} is not an address we can send to")
    name = _one_line(name)
    if not name:
        return address
    if not name.isascii() or "=?" in name:
        return _encoded_address(field, name, address)
    phrase = formataddr((name, address))[: -len(address) - 3]
    last_line = phrase.rsplit("\n", 1)[-1]
    if len(last_line) + len(address) + len(field) + 5 > 78:
        return f"{phrase}\n <{address}>"
    return f"{phrase} <{address}>"


@functools.lru_cache(maxsize=1024)
def _encoded_address(field: str, name: str, address: str) -> str:
    """A non-ASCII display name, encoded and folded by the email package itself (it encodes
    only the words that need it, so every reader puts the name back together the same way)."""
    header = POLICY.header_factory(field, Address(name, addr_spec=address))
    folded: str = header.fold(policy=WIRE_POLICY)
    return folded[len(field) + 2 :].rstrip("\r\n").replace("\r\n", "\n")


def _fold_ascii(value: str, first_line_room: int, width: int = 78) -> str:
    """Fold plain ASCII words at spaces: "a b c" -> "a b\n c" (a continuation starts with a
    space, as RFC 5322 folding requires)."""
    lines: list[str] = []
    current = ""
    room = first_line_room
    for word in value.split(" "):
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current, room = word, width - 1
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\n ".join(lines)


def encode_subject(subject: str) -> str:
    """The Subject value: plain ASCII folded at spaces, anything else as encoded words."""
    subject = _one_line(subject)
    if subject.isascii() and "=?" not in subject:
        return _fold_ascii(subject, 78 - len("Subject: "))
    return Header(subject, "utf-8", header_name="Subject").encode()


@functools.lru_cache(maxsize=64)
def _header(name: str, value: str) -> Any:
    """A parsed header made once. Only for the MIME headers the generator reads back."""
    return POLICY.header_factory(name, value)


class _WirePolicy(EmailPolicy):
    """`email.policy.SMTP`, except that the constant MIME headers are folded once, not for
    every message (folding a parsed header is most of what flattening costs)."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        key = (name, str(value))
        folded = _FOLDED.get(key)
        if folded is None:
            folded = super().fold_binary(name, value)
            if name in _CONSTANT_HEADERS:
                _FOLDED[key] = folded
        return folded


_CONSTANT_HEADERS = frozenset({"Content-Type", "Content-Transfer-Encoding"})
_FOLDED: dict[tuple[str, str], bytes] = {}
WIRE_POLICY = _WirePolicy(linesep="\r\n")
# One boundary for every message: "=_" can't occur in quoted-printable or base64 bodies, so it
# can never clash with a line of ours; being constant, its header is parsed and folded once.
BOUNDARY = f"=_{uuid.uuid4().hex}"


def _encode_body(body: str, transfer_encoding: str) -> str:
    """The body as 7-bit text, "\n" line ends: base64 in lines of 76 (as `base64.encodebytes`
    writes it, but encoded in one call) or quoted-printable."""
    data = body.encode("utf-8")
    if transfer_encoding == "base64":
        if not data:
            return ""
        flat = binascii.b2a_base64(data, newline=False).decode("ascii")
        return "\n".join([flat[i : i + 76] for i in range(0, len(flat), 76)]) + "\n"
    return binascii.b2a_qp(data, istext=True).decode("ascii")


def _text_part(content_type: str, body: str, transfer_encoding: str) -> MIMEPart:
    """A 7-bit clean text part (quoted-printable or base64), encoded with the C codecs."""
    payload = _encode_body(body, transfer_encoding)
    part = MIMEPart(policy=POLICY)
    part.set_raw("Content-Type", _header("Content-Type", f'{content_type}; charset="utf-8"'))
    part.set_raw(
        "Content-Transfer-Encoding", _header("Content-Transfer-Encoding", transfer_encoding)
    )
    part.set_payload(payload)
    return part


class Envelope(TypedDict):
    """What a notice's email needs besides the notice: addresses, the signed Reply-To, time."""

    from_address: str
    from_name: str | None
    reply_to: str
    to_address: str
    now: datetime
    tz: tzinfo


def _headers(
    data: NoticeData, rendered: RenderedNotice, envelope: Envelope
) -> list[tuple[str, str]]:
    """The notice's own headers, encoded and folded for the wire (see `build_message`)."""
    notice = data.notice
    from_name, from_address = envelope["from_name"], envelope["from_address"]
    guardian_name = data.guardian.full_name if data.guardian is not None else ""
    thread = thread_headers(notice.context)
    subject = thread[2] if thread is not None and thread[2] else rendered.subject
    headers = [
        ("From", encode_address(from_name or data.district_name, from_address, "From")),
        ("To", encode_address(guardian_name, envelope["to_address"], "To")),
        ("Subject", encode_subject(subject)),
        ("Date", format_datetime(envelope["now"].astimezone(envelope["tz"]))),
        ("Message-ID", notice.message_id),
        # A notice answering a family's email threads with it (storage.notices.THREAD_KEY).
        *(
            []
            if thread is None
            else [("In-Reply-To", thread[0]), ("References", _fold_ids(thread[1]))]
        ),
        (
            "Reply-To",
            encode_address(
                f"{data.district_name} Billing Office", envelope["reply_to"], "Reply-To"
            ),
        ),
        # RFC 3834: auto-responders (out-of-office) must not answer; the next says it to Exchange.
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Language", rendered.language),
        ("MIME-Version", "1.0"),
    ]
    for name, value in headers:
        if "\n" in value.replace("\n ", "") or "\r" in value:
            raise BadAddress(f"{name} header would span lines: {value!r}")
    return headers


def _fold_ids(ids: str) -> str:
    """Message-IDs, one per line after the first when they don't fit on one."""
    if len(ids) <= 78 - len("References: "):
        return ids
    return "\n ".join(ids.split())


def build_message(
    data: NoticeData, rendered: RenderedNotice, **envelope: Unpack[Envelope]
) -> EmailMessage:
    """The notice as an email: text and HTML alternatives, stored Message-ID, signed Reply-To.

    Header values are encoded here (encoded words for non-ASCII names and subjects, folded to
    78 columns) and stored with `set_raw`, so the email package neither parses nor refolds
    them; reading a header back still gives the usual parsed header object. Every part is 7-bit
    clean (text quoted-printable, HTML base64), so the whole message is ASCII. An address that
    isn't plain ASCII raises `BadAddress`; `build_message_utf8` handles that case.
    """
    headers = _headers(data, rendered, envelope)
    msg = EmailMessage(policy=POLICY)
    for name, value in headers:
        msg.set_raw(name, value)
    msg.set_raw("Content-Type", _multipart_header())
    msg.set_payload(
        [
            _text_part("text/plain", rendered.text, "quoted-printable"),
            _text_part("text/html", rendered.html, "base64"),
        ]
    )
    return msg


def _multipart_header() -> Any:
    return _header("Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"')


def build_message_utf8(
    data: NoticeData, rendered: RenderedNotice, **envelope: Unpack[Envelope]
) -> EmailMessage:
    """The same message for a recipient whose address isn't ASCII (sent with SMTPUTF8): the
    email package parses and checks every header."""
    from_address, from_name = envelope["from_address"], envelope["from_name"]
    to_address, now, tz = envelope["to_address"], envelope["now"], envelope["tz"]
    if not _INTERNATIONAL_ADDRESS.match(to_address):
        raise BadAddress(f"{to_address!r} is not an address we can send to")
    guardian_name = data.guardian.full_name if data.guardian is not None else ""
    # formataddr quotes or encodes the name (it only accepts ASCII addresses, hence the swap).
    phrase = formataddr((_one_line(guardian_name), "x@x"))[: -len(" <x@x>")]
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(_one_line(from_name or data.district_name), addr_spec=from_address)
    msg["To"] = f"{phrase} <{to_address}>" if phrase else to_address
    thread = thread_headers(data.notice.context)
    msg["Subject"] = thread[2] if thread is not None and thread[2] else rendered.subject
    msg["Date"] = format_datetime(now.astimezone(tz))
    msg["Message-ID"] = data.notice.message_id
    if thread is not None:
        msg["In-Reply-To"] = thread[0]
        msg["References"] = thread[1]
    msg["Reply-To"] = Address(
        f"{data.district_name} Billing Office", addr_spec=envelope["reply_to"]
    )
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    msg["Content-Language"] = rendered.language  # after set_content, which drops Content-*
    return msg


def flatten(msg: EmailMessage) -> bytes:
    """The bytes to send, CRLF line ends, written by the email package's generator."""
    return msg.as_bytes(policy=WIRE_POLICY)


@dataclass
class Prepared:
    """A notice rendered and built, ready for the wire."""

    address: str
    # The bytes to send; an EmailMessage when it needs SMTPUTF8 (aiosmtplib then flattens it).
    payload: bytes | EmailMessage


class NoticeSender:
    """The "email.notice" outbox handler (see bot/jobs/worker.py for the hooks it implements)."""

    def __init__(
        self,
        *,
        transport: SmtpTransport,
        renderer: NoticeRenderer,
        clock: Clock,
        tz: tzinfo,
        from_address: str,
        reply_base: str,
        secret_key: Keys,
        from_name: str | None = None,
        links: FamilyLinks | None = None,
    ) -> None:
        self.transport = transport
        self.renderer = renderer
        self.clock = clock
        self.tz = tz
        self.from_address = from_address
        self.from_name = from_name
        self.reply_base = reply_base
        self.secret_key = secret_key
        # Every email to a guardian links to their family page (and a portal, when set up).
        self.links = links
        self._batch: dict[int, NoticeData] = {}
        self._order: list[int] = []
        self._ready: dict[int, Prepared | Exception] = {}
        # Columns to set on each notice (by id), written by `before_commit`.
        self._changes: dict[int, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> NoticeSender:
        if not settings.smtp_enabled or settings.smtp_host is None:
            raise ValueError("SMTP_HOST and SMTP_FROM must be set to send notices")
        from_name, from_address = parseaddr(settings.smtp_from or "")
        reply_base = settings.reply_base_address
        if not from_address or "@" not in from_address or not reply_base:
            raise ValueError(f"SMTP_FROM {settings.smtp_from!r} is not an email address")
        return cls(
            transport=SmtpTransport(smtp_config(settings)),
            renderer=NoticeRenderer(settings.templates_dir),
            clock=clock,
            tz=settings.tz,
            from_address=from_address,
            from_name=from_name or None,
            reply_base=reply_base,
            secret_key=signing_keys(settings),
            links=FamilyLinks.from_settings(settings),
        )

    # --- worker hooks -----------------------------------------------------------------------

    async def start_batch(self, uow: SqlUnitOfWork, payloads: Sequence[dict[str, Any]]) -> None:
        """Load the batch's notices at once."""
        ids = [p["notice_id"] for p in payloads if isinstance(p.get("notice_id"), int)]
        self._batch = await load_notices(uow, ids)
        self._order = [i for i in ids if i in self._batch]
        self._ready = {}
        self._changes = {}
        await self.transport.begin_batch()

    async def before_commit(self, uow: SqlUnitOfWork) -> None:
        """Write the notices' new states in the worker's transaction, in one statement for
        the usual case (every notice sent)."""
        changes, self._changes = self._changes, {}
        await update_notices(uow, changes)

    async def end_batch(self) -> None:
        self._batch, self._order, self._ready, self._changes = {}, [], {}, {}
        await self.transport.end_batch()

    async def close(self) -> None:
        await self.transport.close()

    async def deliver(self, uow: SqlUnitOfWork, payload: dict[str, Any]) -> None:
        data = await self._data(uow, payload)
        notice = data.notice
        status = self._status(data)
        if status in DONE_STATUSES:
            log.info("notice #%s is already %s; not sending it again", notice.id, status)
            return
        ready = self._ready.pop(notice.id, None)
        reason = stale_reason(data)
        if reason is not None:
            log.info("notice #%s withdrawn: %s", notice.id, reason)
            self._change(notice.id, status=WITHDRAWN, last_error=reason)
            return
        if isinstance(ready, Exception):
            raise ready
        prepared = ready or _finish(self.prepare_steps(data))
        self._change(notice.id, to_address=prepared.address)
        sending = asyncio.ensure_future(
            self.transport.send(
                prepared.payload,
                sender=self.from_address,
                recipient=prepared.address,
            )
        )
        await self._prepare_next_while(sending, notice.id)
        try:
            await sending
        except RecipientRefused as exc:
            raise GiveUp(str(exc)) from exc
        self._change(notice.id, status="sent", sent_at=self.clock.now(), last_error=None)

    async def on_failure(
        self, uow: SqlUnitOfWork, payload: dict[str, Any], error: str, gave_up: bool
    ) -> None:
        notice_id = payload.get("notice_id")
        if not isinstance(notice_id, int):
            return
        data = self._batch.get(notice_id) or await load_notice(uow, notice_id)
        if data is None or self._status(data) in DONE_STATUSES:
            return
        self._change(notice_id, last_error=error)
        if gave_up:
            self._change(notice_id, status="failed")

    # --- notice states, written before the worker commits ----------------------------------

    def _change(self, notice_id: int, **columns: Any) -> None:
        self._changes.setdefault(notice_id, {}).update(columns)

    def _status(self, data: NoticeData) -> str:
        """The notice's status, with this batch's changes not yet written."""
        status: str = self._changes.get(data.notice.id, {}).get("status", data.notice.status)
        return status

    # --- preparing the next notice while one is on the wire --------------------------------
    # Rendering and building a message is CPU work; an SMTP exchange is mostly waiting for the
    # server. While a message is being sent, the batch's next notice is prepared one step per
    # turn of the event loop, so each step runs while the server works on a command. The steps
    # only read the loaded rows; everything that writes stays in `deliver`.

    async def _prepare_next_while(self, sending: asyncio.Future[None], current: int) -> None:
        upcoming = self._upcoming(current)
        if upcoming is None:
            return
        steps = self.prepare_steps(upcoming)
        try:
            while True:
                if not sending.done():
                    await asyncio.sleep(0)  # let the send move on to its next command
                next(steps)
        except StopIteration as done:
            self._ready[upcoming.notice.id] = done.value
        except Exception as exc:  # noqa: BLE001 - raised when that notice is delivered
            self._ready[upcoming.notice.id] = exc

    def _upcoming(self, current: int) -> NoticeData | None:
        try:
            position = self._order.index(current)
        except ValueError:
            return None
        for notice_id in self._order[position + 1 :]:
            data = self._batch[notice_id]
            if self._status(data) not in DONE_STATUSES and notice_id not in self._ready:
                return data
        return None

    async def _data(self, uow: SqlUnitOfWork, payload: dict[str, Any]) -> NoticeData:
        notice_id = payload.get("notice_id")
        if not isinstance(notice_id, int):
            raise GiveUp(f"outbox payload {payload!r} names no notice")
        data = self._batch.get(notice_id) or await load_notice(uow, notice_id)
        if data is None:
            raise GiveUp(f"notice #{notice_id} no longer exists")
        return data

    def prepare_steps(self, data: NoticeData) -> Generator[None, None, Prepared]:
        """Address, render and write one notice, as a generator of small steps."""
        if data.invoice is None and data.notice.template not in WITHOUT_INVOICE:
            raise GiveUp(f"notice #{data.notice.id} has no invoice to show")
        if is_digest(data.notice) and not data.digest_items:
            raise GiveUp(f"digest #{data.notice.id} has no invoices left to show")
        address = self._address(data)
        now = self.clock.now()
        context = self._context(data, now)
        language = data.guardian.preferred_language if data.guardian is not None else None
        rendered = yield from self.renderer.render_steps(data.notice.template, context, language)
        yield
        if not address.isascii():
            # An internationalised address: aiosmtplib flattens it and sends it with SMTPUTF8.
            message = self.message(data, rendered, now, to_address=address, utf8=True)
            return Prepared(address=address, payload=message)
        return Prepared(address=address, payload=self.wire(data, rendered, now, address))

    # --- the pieces -------------------------------------------------------------------------

    @staticmethod
    def _address(data: NoticeData) -> str:
        """Where the notice goes now: the guardian's current address, if they still have one."""
        guardian = data.guardian
        if guardian is None:
            raise GiveUp("the guardian was removed; nobody to send this notice to")
        address = (guardian.email or "").strip()
        if not address or "@" not in address:
            raise GiveUp(f"{guardian.full_name} has no email address on file any more")
        if guardian.email_bouncing_since is not None:
            raise GiveUp(f"mail to {address} has been bouncing; fix the address and resend")
        return address

    def _context(self, data: NoticeData, now: datetime) -> dict[str, Any]:
        today = now.astimezone(self.tz).date()
        return build_context(data, today=today, tz=self.tz, links=self.links)

    def render(self, data: NoticeData, now: datetime) -> RenderedNotice:
        context = self._context(data, now)
        language = data.guardian.preferred_language if data.guardian is not None else None
        return self.renderer.render(data.notice.template, context, language)

    def message(
        self,
        data: NoticeData,
        rendered: RenderedNotice,
        now: datetime,
        *,
        to_address: str | None = None,
        utf8: bool = False,
    ) -> EmailMessage:
        """The notice as an EmailMessage (`build_message`, or `build_message_utf8`)."""
        build = build_message_utf8 if utf8 else build_message
        envelope = self._envelope(data, now, to_address)
        try:
            return build(data, rendered, **envelope)
        except ValueError as exc:  # BadAddress, or a header the email package refuses
            raise GiveUp(str(exc)) from exc

    def wire(
        self, data: NoticeData, rendered: RenderedNotice, now: datetime, to_address: str
    ) -> bytes:
        """The notice's bytes for the wire (`flatten(self.message(...))`)."""
        return flatten(self.message(data, rendered, now, to_address=to_address))

    def _envelope(self, data: NoticeData, now: datetime, to_address: str | None) -> Envelope:
        """What `build_message` needs besides the notice: addresses, the signed Reply-To, time."""
        notice = data.notice
        if notice.invoice_id is None:
            # Nothing for a token to name: a reply reaches the billing office unrouted.
            reply_to = self.reply_base
        else:
            token = make_reply_token(notice.invoice_id, notice.id, self.secret_key)
            reply_to = reply_address(self.reply_base, token)
        return Envelope(
            from_address=self.from_address,
            from_name=self.from_name,
            reply_to=reply_to,
            to_address=to_address or notice.to_address,
            now=now,
            tz=self.tz,
        )


def stale_reason(data: NoticeData) -> str | None:
    """Why a billing-run reminder should no longer go out, or None.

    The run queues reminders in the morning; a family that pays (or an invoice cancelled)
    before the worker reaches its email must not be told it owes money.
    """
    if data.notice.run_day is None:
        return None
    if is_digest(data.notice):
        if not data.digest_items:
            return "every invoice in the digest was paid or cancelled before it went out"
        return None
    invoice = data.invoice
    if invoice is not None and invoice.status in CLOSED_INVOICE_STATUSES:
        return f"invoice {invoice.number} was {invoice.status} before the reminder went out"
    return None


def _finish(steps: Generator[None, None, T]) -> T:
    """Run a generator of steps to its end and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def smtp_config(settings: Settings) -> SmtpConfig:
    """The SMTP connection the settings describe (SMTP_HOST must be set)."""
    if settings.smtp_host is None:
        raise ValueError("SMTP_HOST must be set to send notices")
    password = settings.smtp_password
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=None if password is None else password.get_secret_value(),
        timeout=settings.smtp_timeout,
        ca_file=settings.smtp_ca_file,
        local_hostname=settings.mail_domain,
    )


def notice_handlers(settings: Settings, clock: Clock) -> dict[str, NoticeSender]:
    """The outbox handlers email delivery adds to the worker (when SMTP is configured)."""
    return {NOTICE_KIND: NoticeSender.from_settings(settings, clock)}
