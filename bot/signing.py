"""The one signature every token DeviceCare hands out carries (reply addresses, family links,
Slack button values): HMAC-SHA256 keyed with SECRET_KEY, cut to a size, base64url unpadded.

Tokens are signed with the current key and accepted under it or any key in
SECRET_KEY_PREVIOUS, so a key can be rotated without breaking links already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from bot.settings import Settings


def hmac_signature(message: str, secret: str, size: int) -> str:
    """The first `size` bytes of HMAC-SHA256(secret, message), base64url without padding."""
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()[:size]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def split_keys(text: str | None) -> tuple[str, ...]:
    """SECRET_KEY_PREVIOUS as keys: comma-separated, blanks around them ignored."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@dataclass(frozen=True, repr=False)
class SigningKeys:
    """The key new tokens are signed with, and the older keys that still verify them."""

    current: str
    previous: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        previous = settings.secret_key_previous
        return cls(
            settings.secret_key.get_secret_value(),
            split_keys(previous.get_secret_value() if previous else None),
        )

    def all(self) -> Iterator[str]:
        yield self.current
        yield from (key for key in self.previous if key != self.current)

    def sign(self, message: str, size: int) -> str:
        return hmac_signature(message, self.current, size)

    def accepts(self, text: str, expected: Callable[[str], str]) -> bool:
        """Whether `text` is exactly what `expected(key)` writes under one of the keys.

        Every key is tried (no early exit), so the time taken says nothing about which
        one matched; compared as bytes, since compare_digest refuses non-ASCII text."""
        found = False
        for key in self.all():
            found |= hmac.compare_digest(text.encode(), expected(key).encode())
        return found

    def __repr__(self) -> str:  # never show a key in a traceback or a log line
        return f"SigningKeys(current=***, previous={len(self.previous)} key(s))"


# What signing code takes: the keys, or one bare key (as in small tests and scripts).
Keys: TypeAlias = SigningKeys | str


def as_keys(keys: Keys) -> SigningKeys:
    return keys if isinstance(keys, SigningKeys) else SigningKeys(keys)


def signing_keys(settings: Settings) -> SigningKeys:
    """The configured keys: SECRET_KEY signs, SECRET_KEY_PREVIOUS still verifies."""
    return SigningKeys.from_settings(settings)
