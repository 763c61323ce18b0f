"""No log line carries a secret: keys, passwords and the bearer tokens we hand to families.

Every log record is cleaned as it is made (a record factory, so it covers our loggers,
uvicorn's access and error logs, Slack's, Stripe's and the mail libraries' alike, whichever
handler or format writes them later):

- the configured secrets themselves (SECRET_KEY and older keys, Slack tokens and signing
  secret, Stripe keys, SMTP and IMAP passwords, the database password);
- anything shaped like a secret even when it is not ours: Slack and Stripe keys, the password
  in a URL;
- family link, reply and staff photo link tokens: their signature is cut off
  (`g12n3e20500.…`), so the line still says whose link it was but no longer opens anything.
"""

from __future__ import annotations

import base64
import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any

from bot.settings import Settings
from bot.signing import signing_keys
from storage.database_url import database_password

MASK = "***"
# Shorter values would mask ordinary words; no real key or password is this short anyway.
MIN_SECRET_LENGTH = 6

_EDGE = r"(?<![A-Za-z0-9_-])"
_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A family link and a reply token: keep the ids, drop the signature.
    (re.compile(_EDGE + r"(g[0-9]+n[0-9]+e[0-9]+\.)[A-Za-z0-9_-]{27}"), r"\1…"),
    (re.compile(_EDGE + r"(i[0-9]+n[0-9]+\.)[A-Za-z0-9_-]{20}"), r"\1…"),
    # A staff photo link (bot.photo_links): keep the photo id and expiry, drop the signature.
    (re.compile(_EDGE + r"(p[0-9]+x[0-9]+\.)[A-Za-z0-9_-]{27}"), r"\1…"),
    # Slack tokens, Stripe keys and webhook secrets, whoever's they are.
    (re.compile(_EDGE + r"(xox[a-z]|xapp)-[A-Za-z0-9-]{6,}"), r"\1-" + MASK),
    (re.compile(_EDGE + r"(sk|rk|pk)_(live|test)_[A-Za-z0-9]{6,}"), r"\1_\2_" + MASK),
    (re.compile(_EDGE + r"whsec_[A-Za-z0-9+/=]{6,}"), "whsec_" + MASK),
    # user:password@ in any URL (database, SMTP relay, proxies).
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
)


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None

    def add_secrets(self, values: Iterable[str | None]) -> None:
        self._secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        for pattern, replacement in _TOKEN_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, int | float):
            return value  # numbers keep their %d and %.2f formatting
        # Anything else (an exception, a URL object, a dict) is left as it is unless its text
        # holds a secret; then it is logged as that text, cleaned.
        text = str(value)
        cleaned = self.redact(text)
        return value if cleaned == text else cleaned

    def clean(self, record: logging.LogRecord) -> None:
        record.msg = self._value(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: self._value(v) for key, v in record.args.items()}
        elif isinstance(record.args, tuple):
            # Kept a tuple of the same length: uvicorn's access formatter unpacks it.
            record.args = tuple(self._value(arg) for arg in record.args)
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            cleaned = self.redact(text)
            if cleaned != text:
                # Formatters print exc_text as it is; the exception itself would be
                # formatted again, secret and all.
                record.exc_info = None
                record.exc_text = cleaned
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


REDACTOR = Redactor()


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings, with the spellings they take on the wire."""
    keys = signing_keys(settings)
    values: list[str] = [keys.current, *keys.previous]
    for secret in (
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.stripe_secret_key,
        settings.stripe_webhook_secret,
        settings.smtp_password,
        settings.imap_password,
    ):
        if secret is not None:
            values.append(secret.get_secret_value())
    for username, password in (
        (settings.smtp_username, settings.smtp_password),
        (settings.imap_username, settings.imap_password),
    ):
        if password is not None:
            # SMTP AUTH LOGIN and PLAIN send the password base64-encoded.
            raw = password.get_secret_value()
            values.append(base64.b64encode(raw.encode()).decode())
            values.append(base64.b64encode(f"\0{username or ''}\0{raw}".encode()).decode())
    values.append(database_password(settings.database_url))
    return values


def install_log_redaction(settings: Settings) -> None:
    """Clean every log record made from now on in this process (safe to call again)."""
    REDACTOR.add_secrets(configured_secrets(settings))
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        REDACTOR.clean(record)
        return record

    make_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
