"""Incoming mail as plain data: headers for routing, the body as text, the new part of a reply.

`parse_message` reads raw RFC 5322 bytes with `email.policy.default` and never raises: a
malformed message comes back with whatever could be read (worst case, empty text). Any charset
Python knows is decoded (labels that lie fall back to UTF-8, then Windows-1252); quoted-printable
and base64 are undone; `format=flowed` is unwrapped; `multipart/alternative` prefers the plain
part and converts HTML otherwise (scripts and styles dropped). Files a parent attaches — photos of
the damage — are kept, including images that only hang off the HTML alternative.

`extract_reply` keeps only what the sender wrote this time: quoted history ("On … wrote:",
"El … escribió:", Outlook's "From:/Sent:" block and "-----Original Message-----", "> " quoting)
and signatures ("-- ", "Sent from my iPhone", "Enviado desde mi iPhone", sign-offs) are removed.
One set of rules does it (scored against quotequail and mail-parser-reply on the labelled
reply corpus and on real mail: docs/performance.md, "Reading replies"); none of them can remove
a line a parent wrote above the quoted history.
"""

from __future__ import annotations

import codecs
import email.message
import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, Literal

from bot.mail.classify import (
    bounce_recipients,
    content_type,
    decode_words,
    header_text,
    is_auto_reply,
    raw_headers,
    returned_message_id,
)
from bot.mail.html_text import html_to_text

log = logging.getLogger(__name__)

MailKind = Literal["reply", "auto_reply", "bounce"]

_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
_ADDR_SPEC = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_MAX_PARTS = 200
_MAX_CACHED_HEADER = 2_000
_MAX_REPLY_INPUT = 200_000  # characters of body examined for the new part of a reply


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_address: str
    from_name: str | None
    recipients: tuple[str, ...]
    subject: str
    date: datetime | None
    text: str
    reply_text: str
    attachments: tuple[Attachment, ...]
    kind: MailKind
    bounced_recipients: tuple[str, ...]


class _ParsePolicy(EmailPolicy):
    """`email.policy.default`, with parsed headers memoised. The parser and every MIME walk ask
    for the same Content-Type again and again, and re-parsing it each time was most of the cost
    of reading a message. Header objects are immutable, so sharing them is safe."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return value
        if len(value) > _MAX_CACHED_HEADER:
            return policy.default.header_fetch_parse(name, value)
        return _fetch_header(name, value)


@functools.lru_cache(maxsize=4096)
def _fetch_header(name: str, value: str) -> Any:
    return policy.default.header_fetch_parse(name, value)


PARSE_POLICY = _ParsePolicy()


def parse_message(raw: bytes) -> ParsedMail:
    """Read one message; never raises (a hopeless message gives empty fields)."""
    try:
        return _parse(raw)
    except Exception:  # each step guards itself; this is the last line of defence
        log.warning("could not read an inbound message; returning it empty", exc_info=True)
        return _empty()


def _parse(raw: bytes) -> ParsedMail:
    msg = BytesParser(policy=PARSE_POLICY).parsebytes(bytes(raw))
    if not isinstance(msg, email.message.EmailMessage):
        return _empty()

    text_parts: list[str] = []
    attachments: list[Attachment] = []
    try:
        _collect(msg, text_parts, attachments, depth=0)
    except Exception:
        pass  # keep what was collected before the structure broke
    text = _tidy("\n\n".join(part for part in text_parts if part.strip()))

    bounced = bounce_recipients(msg)
    if bounced is not None:
        kind: MailKind = "bounce"
    elif is_auto_reply(msg):
        kind = "auto_reply"
    else:
        kind = "reply"

    references = list(_message_ids(header_text(msg, "References")))
    if kind == "bounce":
        original = returned_message_id(msg)
        if original and original not in references:
            references.append(original)  # lets the router find the notice that bounced

    from_name, from_address = _sender(msg)
    return ParsedMail(
        message_id=_one_message_id(header_text(msg, "Message-ID")),
        in_reply_to=_one_message_id(header_text(msg, "In-Reply-To")),
        references=tuple(references),
        from_address=from_address,
        from_name=from_name,
        recipients=_recipients(msg),
        subject=" ".join(header_text(msg, "Subject").split()),
        date=_date(msg),
        text=text,
        reply_text=extract_reply(text),
        attachments=tuple(attachments),
        kind=kind,
        bounced_recipients=bounced or (),
    )


def _empty() -> ParsedMail:
    return ParsedMail(None, None, (), "", None, (), "", None, "", "", (), "reply", ())


# -- headers --------------------------------------------------------------------------------


def _message_ids(value: str) -> Iterable[str]:
    seen: set[str] = set()
    for match in _MSG_ID.finditer(value):
        found = f"<{match.group(1)}>"
        if found not in seen:
            seen.add(found)
            yield found


def _one_message_id(value: str) -> str | None:
    for found in _message_ids(value):
        return found
    bare = "".join(value.split()).strip("<>")
    if bare and "@" in bare and len(bare) < 500:
        return f"<{bare}>"  # a Message-ID written without its angle brackets
    return None


def _sender(msg: Message) -> tuple[str | None, str]:
    # Read from the raw value (encoded words hold no commas or brackets), then decode the name:
    # cheaper than the policy's full parse, and raw 8-bit names come out readable.
    for name, addr in _address_pairs(raw_headers(msg, "From")):
        name = " ".join(decode_words(name).split())
        return name or None, addr
    return None, ""


def _address_pairs(values: Iterable[str]) -> list[tuple[str, str]]:
    try:
        pairs = getaddresses(list(values))
    except Exception:
        return []
    return [(name.strip(), addr.strip().lower()) for name, addr in pairs if _ADDR_SPEC.match(addr)]


def _recipients(msg: Message) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for name in _RECIPIENT_HEADERS:
        for _, addr in _address_pairs(raw_headers(msg, name)):
            found.setdefault(addr, None)
    return tuple(found)


def _date(msg: Message) -> datetime | None:
    value = header_text(msg, "Date").strip()
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except Exception:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000": the zone is unknown, the time is UTC
    return parsed


# -- body -----------------------------------------------------------------------------------


def _collect(part: Message, texts: list[str], attachments: list[Attachment], *, depth: int) -> None:
    if depth > 20 or len(attachments) > _MAX_PARTS:
        return
    ctype = content_type(part)
    if part.is_multipart() and not ctype.startswith("message/"):
        subparts = _subparts(part)
        if ctype == "multipart/alternative":
            chosen = _choose_alternative(subparts)
            for sub in subparts:
                if sub is chosen:
                    _collect(sub, texts, attachments, depth=depth + 1)
                else:
                    _collect_files(sub, attachments, depth=depth + 1)
        elif ctype == "multipart/report":
            # The human-readable explanation only; the status and returned message are data.
            if subparts:
                _collect(subparts[0], texts, attachments, depth=depth + 1)
        else:
            for sub in subparts:
                _collect(sub, texts, attachments, depth=depth + 1)
        return
    if _is_attachment(part):
        _keep_file(part, attachments)
    elif ctype == "text/plain":
        texts.append(_plain_text(part))
    elif ctype == "text/html":
        texts.append(html_to_text(_decode_text(part)))
    else:
        _keep_file(part, attachments)


def _collect_files(part: Message, attachments: list[Attachment], *, depth: int) -> None:
    """Keep the files of an alternative we did not read (e.g. photos inside the HTML branch)."""
    if depth > 20:
        return
    if part.is_multipart() and not content_type(part).startswith("message/"):
        for sub in _subparts(part):
            _collect_files(sub, attachments, depth=depth + 1)
        return
    if not content_type(part).startswith("text/") or _is_attachment(part):
        _keep_file(part, attachments)


def _subparts(part: Message) -> list[Message]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [sub for sub in payload[:_MAX_PARTS] if isinstance(sub, Message)]


def _choose_alternative(parts: list[Message]) -> Message | None:
    plain = [p for p in parts if _has_text(p, "text/plain")]
    if plain:
        return plain[0]
    html = [p for p in parts if _has_text(p, "text/html")]
    if html:
        return html[-1]
    return parts[-1] if parts else None


def _has_text(part: Message, wanted: str, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if part.is_multipart():
        return any(_has_text(sub, wanted, depth + 1) for sub in _subparts(part))
    if content_type(part) != wanted or _is_attachment(part):
        return False
    return bool(_decode_text(part).strip())


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:
        disposition = ""
    if disposition == "attachment":
        return True
    ctype = content_type(part)
    if ctype in ("text/plain", "text/html"):
        return False
    return disposition == "inline" or _filename(part) is not None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        return None
    name = " ".join(str(name).split())
    return name or None


def _keep_file(part: Message, attachments: list[Attachment]) -> None:
    ctype = content_type(part)
    data: bytes
    try:
        if ctype.startswith("message/"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                data = inner[0].as_bytes(policy=policy.default.clone(linesep="\r\n"))
            else:
                raw = part.get_payload(decode=True)
                data = raw if isinstance(raw, bytes) else b""
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
    except Exception:
        data = b""
    if not data and _filename(part) is None:
        return
    attachments.append(Attachment(filename=_filename(part), content_type=ctype, data=data))


# Charset labels that mail clients use loosely, read as the superset they usually mean.
_CHARSET_ALIASES = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "iso-2022-jp": "iso2022_jp_ext",
    "windows-874": "cp874",
}


def _decode_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    try:
        label = (part.get_content_charset() or "utf-8").strip().strip("\"'").lower()
    except Exception:
        label = "utf-8"
    return decode_bytes(data, label)


def decode_bytes(data: bytes, charset: str) -> str:
    """Bytes in a declared charset as text; wrong or unknown labels fall back sensibly."""
    candidates = [_CHARSET_ALIASES.get(charset, charset), "utf-8", "cp1252"]
    for name in candidates:
        try:
            codecs.lookup(name)
            return data.decode(name)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


def _plain_text(part: Message) -> str:
    text = _decode_text(part)
    try:
        flowed = str(part.get_param("format") or "").lower() == "flowed"
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
    except Exception:
        flowed = delsp = False
    return unflow(text, delsp=delsp) if flowed else text


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join the soft line breaks of a format=flowed body (RFC 3676)."""
    out: list[str] = []
    buffer: str | None = None
    buffer_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if buffer is not None and depth != buffer_depth:
            out.append(_quoted(buffer, buffer_depth))
            buffer = None
        buffer = content if buffer is None else buffer + content
        buffer_depth = depth
        if not flowed:
            out.append(_quoted(buffer, buffer_depth))
            buffer = None
    if buffer is not None:
        out.append(_quoted(buffer, buffer_depth))
    return "\n".join(out)


def _quoted(content: str, depth: int) -> str:
    if content == "-- ":
        return "> " * depth + content  # the signature separator keeps its space
    return ("> " * depth + content).rstrip()


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# -- the new part of a reply -------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_WROTE_VERB = (
    r"(?:wrote|escribi[oó]|a\s+[ée]crit|schrieb|escreveu|schreef|skrev|kirjoitti|"
    r"ha\s+scritto|napisa[lł]\w*|написал\w*(?:\s*\(а\))?)"
)
_WROTE = re.compile(
    r"^\s*(?:-+\s*)?(?:on|el|le|am|em|op|den|il)\s.{3,300}?\b" + _WROTE_VERB + r".{0,80}:\s*$",
    re.IGNORECASE,
)
_ADDRESS_WROTE = re.compile(
    r"^.{0,300}<?[^\s<>@]+@[^\s<>@]+>?[^@]{0,60}?\s" + _WROTE_VERB + r"\s*:\s*$",
    re.IGNORECASE,
)
_DATED_SENDER = re.compile(
    r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b.{0,160}<[^<>\s]+@[^<>\s]+>\s*:?\s*$"
)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:original\s+message|mensaje\s+original|forwarded\s+message|"
    r"mensaje\s+reenviado|message\s+d'origine|reply\s+message|respuesta)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD_INTRO = re.compile(
    r"^\s*(?:begin\s+forwarded\s+message|inicio\s+del\s+mensaje\s+reenviado)\s*:?\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|de|от)\s*\*?\s*:\s*\*?\s*\S", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|cc|enviado(?:\s+el)?|fecha|para|asunto|"
    r"отправлено|дата|кому|тема)\s*\*?\s*:",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*(?:_{10,}|-{10,}|={10,})\s*$")
# A separator line (Outlook's, a mailing list's footer): dropped from the new text.
_LONG_RULE = re.compile(r"^[_-]{32,}$")
_SIG_SEPARATOR = re.compile(r"^(?:--|__)\s*$")
_SENT_FROM = re.compile(
    r"^(?:sent\s+(?:from|via|with|using)\b|get\s+outlook\s+for\b|enviado\s+(?:desde|con)\b|"
    r"obt[ée]n(?:er)?\s+outlook\s+para\b|descarga(?:r)?\s+outlook\s+para\b)",
    re.IGNORECASE,
)
# "Sent from my Verizon, Samsung Galaxy smartphone": a carrier's tagline may hold a comma; a
# sentence that starts "Sent from work, …" does not end with the device.
_DEVICE_TAIL = re.compile(r"\b(?:smartphone|phone|tablet|device|iphone|ipad|android)\s*$", re.I)
_VALEDICTION = re.compile(
    r"^(?:thanks(?:\s+(?:again|so\s+much|a\s+lot))?|thank\s+you(?:\s+so\s+much)?|many\s+thanks|"
    r"best(?:\s+(?:regards|wishes))?|kind\s+regards|warm\s+regards|regards|sincerely|"
    r"respectfully|cheers|all\s+the\s+best|take\s+care|"
    r"gracias|muchas\s+gracias|saludos(?:\s+cordiales)?|un\s+saludo|atentamente|cordialmente|"
    r"bendiciones)"
    r"\s*[,.!]*\s*(?P<name>(?:[A-ZÁÉÍÓÚÑ][\w'’.-]*\s*){0,4})$",
    re.IGNORECASE,
)


def extract_reply(text: str) -> str:
    """The part of a reply the sender just wrote: no quoted history, no signature."""
    try:
        return _extract_reply(text)
    except Exception:
        return _tidy(text)


def _extract_reply(text: str) -> str:
    text = _tidy(text[:_MAX_REPLY_INPUT].translate(_INVISIBLE).replace("\u00a0", " "))
    lines = text.split("\n")
    start, end = _own_quote_start(lines)
    body = _unquoted(lines[:start])
    if start < len(lines) and _quoted_block_follows(lines, end):
        # Bottom-posting and inline answers (Thunderbird, mailing-list style): what follows the
        # "> " quoted lines, up to any older history, was written now too.
        rest = lines[end:]
        below = _unquoted(rest[: _own_quote_start(rest)[0]])
        body = f"{body}\n\n{below}".strip("\n") if body.strip() else below
    body = _strip_signature(_plain_lines(body))
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def _plain_lines(body: str) -> str:
    """Lines without their indentation, separator lines dropped: Slack shows the text as
    prose, and a rule only ever separates history or a list footer."""
    lines = (line.strip() for line in body.split("\n"))
    return "\n".join(line for line in lines if not _LONG_RULE.match(line))


def _unquoted(lines: list[str]) -> str:
    return "\n".join(line for line in lines if not line.lstrip().startswith(">")).strip("\n")


def _quoted_block_follows(lines: list[str], index: int) -> bool:
    for line in lines[index:]:
        if line.strip():
            return line.lstrip().startswith(">")
    return False


def _own_quote_start(lines: list[str]) -> tuple[int, int]:
    """(first line of quoted history, first line after its header); (n, n) if none."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):
            continue
        if _SEPARATOR.match(stripped) or _FORWARD_INTRO.match(stripped):
            return i, i + 1
        for span in (1, 2, 3):
            if span > 1 and not lines[i + span - 1 : i + span]:
                break
            joined = " ".join(part.strip() for part in lines[i : i + span])
            if span > 1 and lines[i + span - 1].lstrip().startswith(">"):
                break
            if _is_reply_header(joined):
                return _header_first_line(lines, i, i + span), i + span
        if _HEADER_FROM.match(stripped) and _header_block_follows(lines, i):
            return _back_over_rule(lines, i), i + 1
    return len(lines), len(lines)


def _header_first_line(lines: list[str], start: int, end: int) -> int:
    """Where a (possibly wrapped) reply header that ends at `end` begins: the latest line that
    reads like the start of one ("On …", "El …", a date), else the latest that still matches."""
    matching = [
        first
        for first in range(start, end)
        if _is_reply_header(" ".join(part.strip() for part in lines[first:end]))
    ]
    starts = [first for first in matching if _HEADER_START.match(lines[first])]
    return max(starts or matching)


_HEADER_START = re.compile(r"^\s*(?:-+\s*)?(?:(?:on|el|le|am|em|op|den|il)\s|\d)", re.IGNORECASE)
_WROTE_HINTS = (
    "wrote",
    "escribi",
    "crit",
    "schrieb",
    "escreveu",
    "schreef",
    "skrev",
    "kirjoitti",
    "scritto",
    "napisa",
    "написал",
)


def _is_reply_header(line: str) -> bool:
    if len(line) > 600:
        return False
    lowered = line.lower()
    if any(hint in lowered for hint in _WROTE_HINTS) and (
        _WROTE.match(line) or _ADDRESS_WROTE.match(line)
    ):
        return True
    return line.lstrip()[:4].isdigit() and "@" in line and bool(_DATED_SENDER.match(line))


def _header_block_follows(lines: list[str], start: int) -> bool:
    for line in lines[start + 1 : start + 7]:
        if _HEADER_OTHER.match(line.strip().lstrip("> ")):
            return True
    return False


def _back_over_rule(lines: list[str], index: int) -> int:
    j = index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j if j >= 0 and _RULE.match(lines[j]) else index


def _is_valediction(line: str) -> bool:
    """ "Thanks," or "Saludos, María" — a sign-off, optionally with a capitalised name."""
    match = _VALEDICTION.match(line)
    if match is None:
        return False
    return all(word[:1].isupper() for word in match.group("name").split())


def _strip_signature(body: str) -> str:
    lines = body.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _SIG_SEPARATOR.match(stripped) or (
            _SENT_FROM.match(stripped)
            and len(stripped.split()) <= 10
            and ("," not in stripped or _DEVICE_TAIL.search(stripped))
        ):
            lines = lines[:i]  # and a sign-off above it goes too ("Thanks,\nRob\n\nSent from…")
            break
    # A sign-off near the end ("Thanks,\nMaria"), never the first line of the message.
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in reversed(content[1:]):
        match = _VALEDICTION.match(lines[i].strip())
        after = [line for line in lines[i + 1 :] if line.strip()]
        if len(after) > 6:
            break
        if match and _is_valediction(lines[i].strip()):
            if all(len(line.strip()) < 80 for line in after):
                return "\n".join(lines[:i])
    return "\n".join(lines)
