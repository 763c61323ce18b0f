"""Service configuration, read from environment variables and an optional `.env` file."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DATA_DIR = Path("data")
# The documented default SECRET_KEY: fine on a laptop, refused wherever it could be abused.
PLACEHOLDER_SECRET_KEY = "change-me-in-production"


# Hosting platforms (Heroku, Render, Dokku) hand out `postgres://…?sslmode=require`;
# SQLAlchemy needs the dialect and the async driver spelled out, and asyncpg calls it `ssl`.
_POSTGRES_DRIVERS = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}
)


def async_database_url(url: str) -> str:
    """The URL with the async driver DeviceCare runs on (asyncpg, aiosqlite)."""
    url = url.strip()
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # left for the engine to refuse with its own message
    if parsed.drivername in _POSTGRES_DRIVERS:
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(drivername="postgresql+asyncpg", query=query)
        return parsed.render_as_string(hide_password=False)
    if parsed.drivername == "sqlite":
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = f"sqlite+aiosqlite:///./{DATA_DIR}/devicecare.db"
    district_timezone: str = "America/Chicago"
    blob_dir: Path = DATA_DIR / "blobs"

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    # The one workspace and Slack app served; learned from Slack's auth.test when unset.
    slack_team_id: str | None = None
    slack_app_id: str | None = None
    slack_api_url: str | None = None
    slack_incidents_channel: str | None = None
    slack_approvals_channel: str | None = None
    slack_billing_channel: str | None = None
    # The weekly digest (reports): off without a channel; posted on that day at that local time.
    weekly_digest_channel: str | None = None
    weekly_digest_day: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"
    weekly_digest_time: time = time(7, 0)

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str | None = None
    smtp_timeout: float = 30.0
    smtp_ca_file: Path | None = None
    mail_reply_address: str | None = None
    templates_dir: Path | None = None

    imap_host: str | None = None
    imap_port: int = 993
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_security: Literal["starttls", "tls", "none"] = "tls"
    imap_mailbox: str = "INBOX"
    # Without IDLE, how often to look for mail; with IDLE, how often to re-check anyway.
    imap_poll_seconds: int = Field(default=60, ge=1, le=86_400)
    imap_timeout_seconds: int = Field(default=30, ge=5, le=600)

    public_base_url: str = "http://localhost:3000"
    # The family invoice page: how long an emailed link works, and how many page requests one
    # client may make a minute before it is told to slow down.
    family_link_days: int = Field(default=45, ge=1, le=365)
    family_page_rate_per_minute: int = Field(default=60, ge=1, le=10_000)

    # Online payments through Stripe Checkout (off without a secret key). STRIPE_API_BASE points
    # the SDK at another host (a regional proxy, or a stand-in in tests).
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_currency: str = "usd"
    # Webhook events signed longer ago than this are refused (replays of captured requests).
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=86_400)
    # A school payment portal without an API (RevTrak, MySchoolBucks, SchoolCash Online, ...):
    # the page links here instead of Stripe. Placeholders: {invoice_number}, {amount} (dollars,
    # "12.50"), {amount_cents}, {student_id} (the SIS id), {student_name}.
    payment_portal_url_template: str | None = None
    payment_portal_name: str = "the school payment portal"
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET_KEY)
    # Older keys (comma-separated) that still verify links and tokens signed before a rotation.
    secret_key_previous: SecretStr | None = None
    # Proxies (IPs or CIDR networks, comma-separated) whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    port: int = 3000
    # Loopback until told otherwise: a fresh checkout is not reachable from the network.
    host: str = "127.0.0.1"
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_database_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        from bot.proxies import parse_trusted_proxies

        parse_trusted_proxies(value)  # a ValueError names the entry that is not an address
        return value

    @field_validator("district_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.district_timezone)

    @property
    def mail_domain(self) -> str:
        """The domain of our Message-IDs: the sender's, else the public host's."""
        if self.smtp_from and "@" in self.smtp_from:
            return self.smtp_from.rsplit("@", 1)[1].strip("> ")
        from urllib.parse import urlparse

        return urlparse(self.public_base_url).hostname or "devicecare.invalid"

    @property
    def smtp_from_address(self) -> str | None:
        """The bare address of SMTP_FROM ("Billing <billing@x.org>" -> "billing@x.org")."""
        if not self.smtp_from:
            return None
        from email.utils import parseaddr

        return parseaddr(self.smtp_from)[1] or None

    @property
    def reply_base_address(self) -> str | None:
        """Where replies go before the token is added: MAIL_REPLY_ADDRESS, else SMTP_FROM."""
        if self.mail_reply_address:
            from email.utils import parseaddr

            return parseaddr(self.mail_reply_address)[1] or None
        return self.smtp_from_address

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_webhook_secret)

    @property
    def imap_enabled(self) -> bool:
        return bool(self.imap_host and self.imap_username and self.imap_password)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
