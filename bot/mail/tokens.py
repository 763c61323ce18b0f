"""Signed reply tokens: `billing+<token>@district.org` names the invoice a reply is about.

The token is the invoice and notice ids plus an HMAC-SHA256 (keyed with SECRET_KEY;
older keys in SECRET_KEY_PREVIOUS still verify) over them,
so a parent's reply routes itself, and an altered or invented token routes nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.signing import Keys, as_keys, hmac_signature

# Numbers without leading zeros: each token has exactly one spelling (see verify_reply_token).
_NUMBER = r"(0|[1-9][0-9]{0,11})"
_TOKEN_RE = re.compile(rf"i{_NUMBER}n{_NUMBER}\.[A-Za-z0-9_-]{{20}}")
_SUB_ADDRESS_RE = re.compile(r"^[^+@\s]+\+([^@\s]+)@[^@\s]+$")
SIGNATURE_BYTES = 15  # 120 bits; base64url without padding is 20 characters


@dataclass(frozen=True)
class ReplyToken:
    invoice_id: int
    notice_id: int


def _signature(invoice_id: int, notice_id: int, secret: str) -> str:
    return hmac_signature(f"reply:{invoice_id}:{notice_id}", secret, SIGNATURE_BYTES)


def _token(invoice_id: int, notice_id: int, secret: str) -> str:
    return f"i{invoice_id}n{notice_id}.{_signature(invoice_id, notice_id, secret)}"


def make_reply_token(invoice_id: int, notice_id: int, keys: Keys) -> str:
    return _token(invoice_id, notice_id, as_keys(keys).current)


def verify_reply_token(token: str, keys: Keys) -> ReplyToken | None:
    """The ids the token names, or None when it is malformed, altered or invented."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    invoice_id, notice_id = int(match[1]), int(match[2])
    # Only the exact token we wrote routes: no leading zeros, no spare-bit variant of the
    # signature's last character, no surrounding whitespace.
    if not as_keys(keys).accepts(token, lambda key: _token(invoice_id, notice_id, key)):
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
