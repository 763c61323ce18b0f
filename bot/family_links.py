"""Signed links to a family's invoice page: `/family/<token>`.

A token names one guardian (the family is the students they are guardian of), the notice whose
email carried it (0 for a link sent on request) and the last day it works, followed by an
HMAC-SHA256 over all three keyed with SECRET_KEY (or, after a rotation, a key in
SECRET_KEY_PREVIOUS). Nothing about it can be guessed or altered:
a changed id or a later expiry fails the signature, so no link can reach another family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from bot.signing import Keys, as_keys, hmac_signature

# Numbers without leading zeros: each link has exactly one spelling (see read_family_token).
_NUMBER = r"(0|[1-9][0-9]{0,11})"
_TOKEN_RE = re.compile(rf"g{_NUMBER}n{_NUMBER}e(0|[1-9][0-9]{{0,6}})\.([A-Za-z0-9_-]{{27}})")
SIGNATURE_BYTES = 20  # 160 bits; base64url without padding is 27 characters
_EPOCH = date(1970, 1, 1)
_LAST_DAY = (date.max - _EPOCH).days  # past it an expiry is no date at all


@dataclass(frozen=True)
class FamilyLink:
    guardian_id: int
    notice_id: int | None  # the email the link came in, recorded as viewed when opened
    expires_on: date  # the last day the link works (in the district's time zone)

    def expired(self, today: date) -> bool:
        return today > self.expires_on


class LinkProblem(Exception):
    """Why a token doesn't open a page: `kind` is "invalid" or "expired"."""

    def __init__(self, kind: str, link: FamilyLink | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.link = link  # set for an expired link: whose it was (to offer a fresh one)


def _signature(guardian_id: int, notice_id: int, expiry_day: int, secret: str) -> str:
    return hmac_signature(f"family:{guardian_id}:{notice_id}:{expiry_day}", secret, SIGNATURE_BYTES)


def _token(guardian_id: int, notice_id: int, expiry_day: int, secret: str) -> str:
    signature = _signature(guardian_id, notice_id, expiry_day, secret)
    return f"g{guardian_id}n{notice_id}e{expiry_day}.{signature}"


def make_family_token(guardian_id: int, notice_id: int | None, expires_on: date, keys: Keys) -> str:
    day = (expires_on - _EPOCH).days
    return _token(guardian_id, notice_id or 0, day, as_keys(keys).current)


def link_expiry(today: date, days: int) -> date:
    return today + timedelta(days=days)


def read_family_token(token: str, keys: Keys, today: date) -> FamilyLink:
    """The link the token stands for; LinkProblem when it is altered, invented or expired."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise LinkProblem("invalid")
    guardian_id, notice_id, day = int(match[1]), int(match[2]), int(match[3])
    # The whole token must be the one we would write: no other spelling of the same numbers
    # or signature (a spare bit in the last base64 character, whitespace) opens the page.
    if not as_keys(keys).accepts(token, lambda key: _token(guardian_id, notice_id, day, key)):
        raise LinkProblem("invalid")
    if day > _LAST_DAY:  # signed, but by no link we write (they last weeks, not millennia)
        raise LinkProblem("invalid")
    link = FamilyLink(guardian_id, notice_id or None, _EPOCH + timedelta(days=day))
    if link.expired(today):
        raise LinkProblem("expired", link)
    return link


def family_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/family/{token}"
