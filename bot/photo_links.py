"""Signed, short-lived links for staff to see a stored photo: `/photos/<token>`.

`/device` and the incident card link each photo this way. A token names one photo and the
moment the link stops working (Unix seconds), followed by an HMAC-SHA256 over both keyed with
SECRET_KEY (or, after a rotation, a key in SECRET_KEY_PREVIOUS). A changed id or a later expiry
fails the signature, so a link opens exactly one photo, and only for a while: it travels
through Slack, where it may be forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.signing import Keys, as_keys, hmac_signature

PHOTO_LINK_LIFETIME = timedelta(hours=24)
SIGNATURE_BYTES = 20  # 160 bits; base64url without padding is 27 characters
# Numbers without leading zeros: each link has exactly one spelling.
_NUMBER = r"(0|[1-9][0-9]{0,11})"
TOKEN_RE = re.compile(rf"p{_NUMBER}x{_NUMBER}\.([A-Za-z0-9_-]{{27}})")


@dataclass(frozen=True)
class PhotoLink:
    photo_id: int
    expires_at: datetime


class PhotoLinkProblem(Exception):
    """Why a token doesn't open a photo: `kind` is "invalid" or "expired"."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _token(photo_id: int, expiry: int, secret: str) -> str:
    signature = hmac_signature(f"photo:{photo_id}:{expiry}", secret, SIGNATURE_BYTES)
    return f"p{photo_id}x{expiry}.{signature}"


def make_photo_token(photo_id: int, now: datetime, keys: Keys) -> str:
    expiry = int((now + PHOTO_LINK_LIFETIME).timestamp())
    return _token(photo_id, expiry, as_keys(keys).current)


def read_photo_token(token: str, keys: Keys, now: datetime) -> PhotoLink:
    """The link the token stands for; PhotoLinkProblem when altered, invented or expired."""
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        raise PhotoLinkProblem("invalid")
    photo_id, expiry = int(match[1]), int(match[2])
    if not as_keys(keys).accepts(token, lambda key: _token(photo_id, expiry, key)):
        raise PhotoLinkProblem("invalid")
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (OverflowError, OSError, ValueError):  # signed, but by no link we write
        raise PhotoLinkProblem("invalid") from None
    if now >= expires_at:
        raise PhotoLinkProblem("expired")
    return PhotoLink(photo_id, expires_at)


def photo_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/photos/{token}"


def signed_photo_url(base_url: str, photo_id: int, now: datetime, keys: Keys) -> str:
    return photo_url(base_url, make_photo_token(photo_id, now, keys))
