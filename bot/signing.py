"""The one signature every token DeviceCare hands out carries (reply addresses, family links,
Slack button values): HMAC-SHA256 keyed with SECRET_KEY, cut to a size, base64url unpadded."""

from __future__ import annotations

import base64
import hashlib
import hmac


def hmac_signature(message: str, secret: str, size: int) -> str:
    """The first `size` bytes of HMAC-SHA256(secret, message), base64url without padding."""
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()[:size]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
