"""Whether SECRET_KEY is good enough for where the service runs, and how to make a good one.

SECRET_KEY signs family links, reply addresses and Slack button values: whoever knows it can
forge them all. On a laptop the documented placeholder is fine. Once the service can be
reached from other machines, sends real mail or takes payments, the placeholder or a short or
repetitive key is refused at start-up.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlparse

from bot.settings import PLACEHOLDER_SECRET_KEY, Settings
from bot.signing import signing_keys

MIN_LENGTH = 32
# A key as long as this with fewer different characters is a pattern, not randomness
# ("aaaa…", "passwordpassword…"); a hex key uses 16, a generated one about 60.
MIN_DISTINCT_CHARACTERS = 12
GENERATE_COMMAND = "devicecare secret generate"


def generate_secret_key() -> str:
    """A new key: 48 random bytes, base64url (64 characters)."""
    return secrets.token_urlsafe(48)


def weakness(key: str) -> str | None:
    """Why `key` is too weak to sign with, or None."""
    if key == PLACEHOLDER_SECRET_KEY:
        return "is the public placeholder"
    if len(key) < MIN_LENGTH:
        return f"is {len(key)} characters long (at least {MIN_LENGTH} are needed)"
    if len(set(key)) < MIN_DISTINCT_CHARACTERS:
        return "is a repeated pattern, not a random key"
    return None


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(settings: Settings) -> str | None:
    """Why forged tokens could do harm with these settings (reachable beyond this machine,
    real mail or payments), or None for a local-only set-up."""
    public_host = urlparse(settings.public_base_url).hostname or ""
    if not _loopback(public_host):
        return f"PUBLIC_BASE_URL is {settings.public_base_url}"
    if not _loopback(settings.host):
        return f"HOST is {settings.host}"
    if settings.smtp_enabled:
        return "mail is sent (SMTP_HOST)"
    if settings.imap_enabled:  # replies from anyone, routed by the tokens they carry
        return "replies are read (IMAP_HOST)"
    if settings.stripe_enabled or settings.stripe_secret_key is not None:
        return "payments are on (STRIPE_SECRET_KEY)"
    if settings.payment_portal_url_template:
        return "payments are on (PAYMENT_PORTAL_URL_TEMPLATE)"
    return None


def secret_key_problem(settings: Settings) -> str | None:
    """One line saying why the service must not start with these keys, or None."""
    where = exposure(settings)
    if where is None:
        return None
    keys = signing_keys(settings)
    why = weakness(keys.current)
    if why is not None:
        return (
            f"SECRET_KEY {why}, and {where}: anyone could forge family links and reply "
            f"addresses. Set SECRET_KEY to the output of `{GENERATE_COMMAND}`."
        )
    for number, key in enumerate(keys.previous, start=1):
        why = weakness(key)
        if why is not None:
            return (
                f"SECRET_KEY_PREVIOUS key {number} {why}, and {where}: links signed with it "
                "could be forged. Remove it; families can ask for a new link on the page."
            )
    return None
