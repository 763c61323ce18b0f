"""Inbound mail read and kept: parse, raw bytes to the blob store, photo checks, reply tokens
checked against our keys; then the message's unit of work (`services.mail_ingest`) routes and
stores it with everything it causes, once per Message-ID.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Sequence
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.mail.parse import Attachment, ParsedMail, parse_message
from bot.mail.tokens import ReplyToken, token_from_address, verify_reply_token
from bot.signing import Keys, signing_keys
from services.mail_ingest import (
    Ingested,
    MailIngest,
    Photos,
    Prepared,
    angle,
    inbound_message_id,
    invoice_numbers,
    is_image,
)
from storage.blobs import BlobStore
from storage.images import check_photo_async
from storage.inbox import DuplicateMessage, Inbox
from storage.uow import UnitOfWorkFactory
from workflows.clock import Clock
from workflows.errors import ValidationError

if TYPE_CHECKING:
    from bot.runtime import Runtime

__all__ = ["Ingested", "Ingestor", "Prepared", "inbound_message_id", "invoice_numbers"]

log = logging.getLogger("devicecare.mail")

MAX_PHOTOS = 10  # per message; more are left in the original email
MIN_PHOTO_SIDE = 200  # smaller images are logos and signature art, not photos of damage
# The shape of our reply tokens (bot.mail.tokens): a sub-address that isn't shaped like one is
# someone else's plus-address, not a forgery.
_TOKEN_SHAPE = re.compile(r"^i[0-9]{1,12}n[0-9]{1,12}\.")
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


def token_addresses(raw: bytes) -> tuple[str, ...]:
    """Recipient addresses exactly as written: a reply token's signature is case-sensitive, so
    these are read here rather than from the parser's (lower-cased) recipients."""
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        values = [str(v) for name in _RECIPIENT_HEADERS for v in headers.get_all(name) or ()]
        return tuple(dict.fromkeys(a.strip() for _, a in getaddresses(values) if "+" in a))
    except Exception:  # noqa: BLE001 - then the parser's recipients are used
        return ()


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
        stores: UnitOfWorkFactory,
        blobs: BlobStore,
        *,
        clock: Clock,
        tz: ZoneInfo,
        secret_key: Keys,
    ) -> None:
        self.stores = stores
        self.blobs = blobs
        self.clock = clock
        self.tz = tz
        self.secret_key = secret_key
        self._ingest = MailIngest(clock=clock, tz=tz)

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Ingestor:
        return cls(
            runtime.stores,
            runtime.blobs,
            clock=runtime.clock,
            tz=runtime.settings.tz,
            secret_key=signing_keys(runtime.settings),
        )

    async def ingest(
        self, raw: bytes, *, uidvalidity: int | None = None, uid: int | None = None
    ) -> Ingested:
        """Everything for one message: `prepare` then `store`."""
        return await self.store(await self.prepare(raw), uidvalidity=uidvalidity, uid=uid)

    async def prepare(self, raw: bytes) -> Prepared:
        """The work outside the transaction: parse, raw bytes to the blob store, photo checks,
        the reply tokens among the recipients checked against our keys.

        Safe to run ahead for several messages at once (the reader does, so disk and photo
        work overlap with the previous message's transaction)."""
        parsed = self._parse(raw)
        message_id = inbound_message_id(parsed.message_id, raw)
        images = [a for a in parsed.attachments if is_image(a)] if parsed.kind == "reply" else []
        if images and await self._seen(message_id):
            return Prepared(raw, parsed, message_id, None, Photos(), duplicate=True)
        raw_key = await self.blobs.put(raw, "message/rfc822")
        photos = await self._check_photos(images)
        tokens, forged = self._reply_tokens(raw, parsed)
        return Prepared(raw, parsed, message_id, raw_key, photos, tokens=tokens, forged=forged)

    async def store(
        self, prepared: Prepared, *, uidvalidity: int | None = None, uid: int | None = None
    ) -> Ingested:
        """The message and everything it causes, in its own transaction; once per Message-ID."""
        try:
            [result] = await self.store_batch([(prepared, uid)], uidvalidity=uidvalidity)
        except DuplicateMessage as exc:
            # Another reader stored it first (on PostgreSQL the INSERT waited for its commit)...
            if await self._seen(prepared.message_id):
                return Ingested(prepared.message_id, None, duplicate=True)
            # ...or the INSERT broke another constraint: not a duplicate, never to be skipped.
            if exc.__cause__ is not None:
                raise exc.__cause__ from None
            raise
        return result

    async def store_batch(
        self, items: Sequence[tuple[Prepared, int | None]], *, uidvalidity: int | None = None
    ) -> list[Ingested]:
        """Messages, each with its UID, and everything they cause, in one transaction: all of
        them are stored or none. Rows are written in the order given (the reader's UID order),
        so replies keep their order. A Message-ID in the store already, or earlier in the
        batch, is a duplicate; DuplicateMessage means another reader stored one meanwhile."""
        async with self.stores() as store:
            result = await self._ingest.store_batch(store, items, uidvalidity)
            await store.commit()
            return result

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
            result = await Inbox(store).find_message(message_id) is not None
            await store.commit()
            return result

    async def _check_photos(self, images: list[Attachment]) -> Photos:
        """Photos go through the same checks as Slack uploads; what fails is noted for staff."""
        photos = Photos()
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

    def _reply_tokens(self, raw: bytes, parsed: ParsedMail) -> tuple[tuple[ReplyToken, ...], bool]:
        """The reply tokens among the recipients that we signed, in their order, and whether
        one shaped like ours wasn't signed by us (forged)."""
        tokens: list[ReplyToken] = []
        forged = False
        for address in token_addresses(raw) or parsed.recipients:
            token = token_from_address(address)
            if token is None or not _TOKEN_SHAPE.match(token):
                continue
            ids = verify_reply_token(token, self.secret_key)
            if ids is None:
                forged = True
            else:
                tokens.append(ids)
        return tuple(tokens), forged
