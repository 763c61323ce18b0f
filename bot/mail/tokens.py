"""Signed reply tokens: `billing+<token>@district.org` names the invoice a reply is about.

The token is the invoice and notice ids plus an HMAC-SHA256 (keyed with SECRET_KEY) over them,
so a parent's reply routes itself, and an altered or invented token routes nowhere.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from bot.signing import hmac_signature

_TOKEN_RE = re.compile(r"^i([0-9]{1,12})n([0-9]{1,12})\.([A-Za-z0-9_-]{16,32})$")
_SUB_ADDRESS_RE = re.compile(r"^[^+@\s]+\+([^@\s]+)@[^@\s]+$")
SIGNATURE_BYTES = 15  # 120 bits; base64url without padding is 20 characters


@dataclass(frozen=True)
class ReplyToken:
    invoice_id: int
    notice_id: int


def _signature(invoice_id: int, notice_id: int, secret: str) -> str:
    return hmac_signature(f"reply:{invoice_id}:{notice_id}", secret, SIGNATURE_BYTES)


def make_reply_token(invoice_id: int, notice_id: int, secret: str) -> str:
    return f"i{invoice_id}n{notice_id}.{_signature(invoice_id, notice_id, secret)}"


def verify_reply_token(token: str, secret: str) -> ReplyToken | None:
    """The ids the token names, or None when it is malformed, altered or invented."""
    match = _TOKEN_RE.match(token.strip())
    if match is None:
        return None
    invoice_id, notice_id, signature = int(match[1]), int(match[2]), match[3]
    if not hmac.compare_digest(signature, _signature(invoice_id, notice_id, secret)):
        return None
    return ReplyToken(invoice_id, notice_id)


def reply_address(base_address: str, token: str) -> str:
    """billing@district.org + token -> billing+token@district.org (plus-addressing)."""
    local, _, domain = base_address.strip().rpartition("@")
    if not local or not domain:
        raise ValueError(f"{base_address!r} is not an email address")
    return f"{local.split('+', 1)[0]}+{token}@{domain}"


def token_from_address(address: str) -> str | None:
    """The sub-address of billing+TOKEN@district.org, if there is one."""
    match = _SUB_ADDRESS_RE.match(address.strip().strip("<>"))
    return match[1] if match else None
