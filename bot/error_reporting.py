"""Optional error reporting to Sentry (SENTRY_DSN), with nothing of a family's sent along.

sentry-sdk is an optional extra (`pip install 'devicecare[sentry]'`) and is imported only when
SENTRY_DSN is set. Events go without personal data (send_default_pii off, no local variables,
no request bodies), and every string in an event is scrubbed of family links, reply tokens,
Slack and Stripe keys and the configured secrets before it leaves the process.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from bot.settings import Settings

log = logging.getLogger("devicecare")

REDACTED = "[redacted]"
_PATTERNS = (
    (re.compile(r"/family/(?!link-request\b)[^/?#\s\"'<>]+"), "/family/…"),
    # Family link tokens (g12n0e400.sig) and reply tokens (i12n3.sig), wherever they appear.
    (re.compile(r"\b[gi]\d+n\d+(?:e\d+)?\.[A-Za-z0-9_-]{6,}"), REDACTED),
    # The token in a reply address: billing+TOKEN@district.org
    (re.compile(r"\+[A-Za-z0-9_.=-]{6,}@"), "+…@"),
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"), REDACTED),  # Slack tokens
    (re.compile(r"\b(?:sk|rk|whsec)_[A-Za-z0-9_]{8,}"), REDACTED),  # Stripe keys and secrets
    (re.compile(r"(?i)(authorization|cookie|token|password|secret)=[^&\s]+"), r"\1=" + REDACTED),
)
_SECRET_HEADERS = frozenset({"authorization", "cookie", "x-slack-signature", "stripe-signature"})


class Scrubber:
    """Rewrites every string of a Sentry event (URLs, messages, breadcrumbs, frames)."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def walk(self, value: Any, key: str = "") -> Any:
        if isinstance(value, str):
            return REDACTED if key.lower() in _SECRET_HEADERS else self.text(value)
        if isinstance(value, dict):
            return {k: self.walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.walk(v, key) for v in value]
        return value

    def before_send(self, event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = self.walk(event)
        scrubbed.pop("user", None)
        request = scrubbed.get("request")
        if isinstance(request, dict):
            request.pop("data", None)
            request.pop("cookies", None)
        return scrubbed


def configured_secrets(settings: Settings) -> list[str]:
    values = [
        settings.secret_key,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.smtp_password,
        settings.imap_password,
        settings.stripe_secret_key,
        settings.stripe_webhook_secret,
        settings.metrics_token,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def privacy_options(sdk_version: str) -> dict[str, Any]:
    """No user, cookies, bodies or frame variables (a frame's locals may hold a token or an
    address). sentry-sdk 3 replaced `send_default_pii` with `data_collection`."""
    if int(sdk_version.split(".", 1)[0]) >= 3:
        return {
            "data_collection": {
                "user_info": False,
                "cookies": {"mode": "off"},
                "http_headers": {"request": {"mode": "denylist"}},
                "http_bodies": [],
                "url_query_params": {"mode": "off"},
                "stack_frame_variables": False,
                "database_query_data": False,
            }
        }
    return {
        "send_default_pii": False,
        "include_local_variables": False,
        "max_request_body_size": "never",
    }


def init_error_reporting(settings: Settings) -> bool:
    """Start reporting errors to Sentry when SENTRY_DSN is set; True if it started."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value().strip():
        return False
    try:
        import sentry_sdk
    except ImportError:
        log.warning(
            "SENTRY_DSN is set but sentry-sdk is not installed; errors are not reported"
            " (install it with: pip install 'devicecare[sentry]')"
        )
        return False
    try:
        release = f"devicecare@{package_version('devicecare')}"
    except PackageNotFoundError:
        release = None
    scrubber = Scrubber(configured_secrets(settings))
    options: dict[str, Any] = {
        "dsn": settings.sentry_dsn.get_secret_value().strip(),
        "release": release,
        "before_send": scrubber.before_send,
        "before_breadcrumb": lambda crumb, _hint: scrubber.walk(crumb),
    }
    options.update(privacy_options(sentry_sdk.VERSION))
    sentry_sdk.init(**options)
    log.info("errors are reported to Sentry")
    return True
