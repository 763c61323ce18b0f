"""Service configuration, read from environment variables and an optional `.env` file."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config_errors import load_settings
from storage.database_url import async_database_url, database_backend
from workflows.sync import DEFAULT_MAX_CHANGE_SHARE

DATA_DIR = Path("data")
# The documented default SECRET_KEY: fine on a laptop, refused wherever it could be abused.
PLACEHOLDER_SECRET_KEY = "change-me-in-production"


def supported_database_url(url: str) -> str:
    """The URL if DeviceCare can run on it; otherwise a message naming what to write."""
    if database_backend(url) not in ("postgresql", "sqlite"):
        raise ValueError(
            "not a PostgreSQL or SQLite URL; write postgresql://user:password@host:5432/name "
            "or sqlite:///path/to/devicecare.db"
        )
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///./{DATA_DIR}/devicecare.db",
        description=(
            "SQLAlchemy async URL of the workflow store. PostgreSQL is "
            "`postgresql+asyncpg://user:pass@host/db`; the `postgres://` and `postgresql://` URLs"
            " hosting platforms hand out work as they are (`?sslmode=` becomes asyncpg's `ssl=`)."
        ),
    )
    district_timezone: str = Field(
        default="America/Chicago",
        description=(
            'IANA time zone of the district; "days before due", incident dates and schedules are '
            "counted in it."
        ),
    )
    staff_language: str = Field(
        default="en",
        description=(
            "The language DeviceCare speaks to staff in Slack and on the command line: `en` or "
            "any language with a catalogue (`es`, `vi`). Families read their own language."
        ),
    )
    database_write_wait_seconds: float = Field(
        default=600,
        ge=1,
        le=3_600,
        description=(
            "How long a change may wait for its turn at the database in a burst (changes queue "
            "first come, first served) before it fails with a message saying it was not made."
        ),
    )
    blob_dir: Path = Field(
        default=DATA_DIR / "blobs",
        description=(
            "Folder for photo files and kept emails (the database keeps only their metadata)."
        ),
    )

    slack_bot_token: SecretStr | None = Field(
        default=None,
        description="Bot token (`xoxb-…`); Slack is off without it.",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="Verifies requests from Slack; Slack is off without it.",
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description=(
            "App-level token (`xapp-…`, scope `connections:write`) to use Socket Mode instead of "
            "HTTP events."
        ),
    )
    # The one workspace and Slack app served; learned from Slack's auth.test when unset.
    slack_team_id: str | None = Field(
        default=None,
        description=(
            "The one workspace served (`T…`); requests from any other are refused. Unset, it is "
            "the workspace Slack's `auth.test` says the bot token belongs to, asked at start."
        ),
    )
    slack_app_id: str | None = Field(
        default=None,
        description=(
            "The one Slack app served (`A…`, the requests' `api_app_id`). Unset, it comes from "
            "`auth.test` the same way."
        ),
    )
    slack_api_url: str | None = Field(
        default=None,
        description="Slack Web API base URL ending in `/api/` (GovSlack, tests). Unset: Slack's.",
    )
    slack_incidents_channel: str | None = Field(
        default=None,
        description=(
            "Channel id where incident cards are posted (their threads are the incidents' "
            "conversations)."
        ),
    )
    slack_approvals_channel: str | None = Field(
        default=None,
        description="Channel id where claim-cap override and waiver requests wait for an approver.",
    )
    slack_billing_channel: str | None = Field(
        default=None,
        description="Channel id for billing messages, parents' replies and digests.",
    )
    # The weekly digest (reports): off without a channel; posted on that day at that local time.
    weekly_digest_channel: str | None = Field(
        default=None,
        description=(
            "Channel id for the weekly digest (last week's incidents, money recovered, overdue "
            "totals, new repeat offenders); the digest is off without it."
        ),
    )
    weekly_digest_day: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field(
        default="monday",
        description="The day the weekly digest is posted (`monday` … `sunday`).",
    )
    weekly_digest_time: time = Field(
        default=time(7, 0),
        description="The district-time hour the weekly digest is posted at (`HH:MM`).",
    )

    # Syncs from the district's systems (bot/sync/): when they run nightly, how much one run may
    # take away before it stops for a person to look, and where they report.
    sync_time: time = Field(
        default=time(2, 0),
        description=(
            "The district-time hour (`HH:MM`) the nightly syncs from Apple School Manager, Google "
            "Admin and OneRoster run, one source after the other (only those configured)."
        ),
    )
    sync_max_change_share: float = Field(
        default=DEFAULT_MAX_CHANGE_SHARE,
        ge=0,
        le=1,
        description=(
            "The largest share (0 to 1) of a source's records one sync may retire or unassign; a "
            "run that would take away more stops, changes nothing and alerts staff in Slack "
            "(`devicecare sync SOURCE --allow-removals` applies it anyway)."
        ),
    )
    sync_channel: str | None = Field(
        default=None,
        description=(
            "Channel id for the syncs' nightly summaries and alerts; unset, they go to "
            "`SLACK_BILLING_CHANNEL`."
        ),
    )

    smtp_host: str | None = Field(
        default=None,
        description="Outgoing mail server; email out is off without it and `SMTP_FROM`.",
    )
    smtp_port: int = Field(
        default=587,
        description="Outgoing mail server's port.",
    )
    smtp_username: str | None = Field(
        default=None,
        description="SMTP login (no login when unset).",
    )
    smtp_password: SecretStr | None = Field(
        default=None,
        description="SMTP password.",
    )
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls`, `tls` (implicit) or `none`.",
    )
    smtp_from: str | None = Field(
        default=None,
        description="Sender address of notices; email out is off without it and `SMTP_HOST`.",
    )
    smtp_timeout: float = Field(
        default=30.0,
        description=(
            "Seconds an SMTP connect or command may take before the attempt counts as failed (and"
            " is retried)."
        ),
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description=(
            "A PEM file of CA certificates to trust for the SMTP server (a district's private CA)."
        ),
    )
    mail_reply_address: str | None = Field(
        default=None,
        description=(
            "The mailbox replies go to; notices say `Reply-To: <name>+<signed token>@<domain>` "
            "(plus-addressing), so it should be the mailbox `IMAP_*` reads. Unset: `SMTP_FROM`."
        ),
    )
    templates_dir: Path | None = Field(
        default=None,
        description=(
            "A folder whose `email/` files replace the shipped notice templates of the same name."
            " Unset: the shipped `templates/`."
        ),
    )

    imap_host: str | None = Field(
        default=None,
        description="Mailbox server that receives parents' replies.",
    )
    imap_port: int = Field(
        default=993,
        description="IMAP server's port.",
    )
    imap_username: str | None = Field(
        default=None,
        description="IMAP login; email in is off without it, `IMAP_HOST` and `IMAP_PASSWORD`.",
    )
    imap_password: SecretStr | None = Field(
        default=None,
        description="IMAP password.",
    )
    imap_security: Literal["starttls", "tls", "none"] = Field(
        default="tls",
        description="`tls`, `starttls` or `none`.",
    )
    imap_mailbox: str = Field(
        default="INBOX",
        description="The IMAP folder to read.",
    )
    # Without IDLE, how often to look for mail; with IDLE, how often to re-check anyway.
    imap_poll_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description=(
            "Without IDLE, how often to look for mail; with IDLE, how often to re-check anyway "
            "(IDLE is always renewed within 25 minutes)."
        ),
    )
    imap_timeout_seconds: int = Field(
        default=30,
        ge=5,
        le=600,
        description=(
            "How long an IMAP command may stay silent before the connection counts as dropped."
        ),
    )

    public_base_url: str = Field(
        default="http://localhost:3000",
        description=(
            "Address families and Slack reach this service at; when it is `https://…`, every "
            "response carries `Strict-Transport-Security`."
        ),
    )
    # The family invoice page: how long an emailed link works, and how many page requests one
    # client may make a minute before it is told to slow down.
    family_link_days: int = Field(
        default=45,
        ge=1,
        le=365,
        description=(
            "District days an emailed family-page link works, from the day its email was sent."
        ),
    )
    family_page_rate_per_minute: int = Field(
        default=60,
        ge=1,
        le=10_000,
        description=(
            "Family page and form requests one client address may make a minute (ten times as "
            "many photo requests) before it gets 429."
        ),
    )

    # Online payments through Stripe Checkout (off without a secret key). STRIPE_API_BASE points
    # the SDK at another host (a regional proxy, or a stand-in in tests).
    stripe_secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Stripe secret key (`sk_live_…`, or `sk_test_…` to try it); online card payments are "
            "off without it and `STRIPE_WEBHOOK_SECRET`."
        ),
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The signing secret (`whsec_…`) of the webhook endpoint "
            "`PUBLIC_BASE_URL/webhooks/stripe`."
        ),
    )
    stripe_api_base: str | None = Field(
        default=None,
        description=(
            "Another address for Stripe's API (a regional proxy; a stand-in in tests). Unset: "
            "Stripe's."
        ),
    )
    stripe_currency: str = Field(
        default="usd",
        description=(
            "The currency families are charged in; payments in any other currency are refused and"
            " reported."
        ),
    )
    # Webhook events signed longer ago than this are refused (replays of captured requests).
    stripe_webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description=(
            "How old (or how far in the future, by this service's clock) a webhook's signature "
            "may be."
        ),
    )
    # Google Admin: ChromeOS devices through the Admin SDK Directory API, read by a service
    # account acting for an admin (docs/sync-google.md). Off without a key.
    google_service_account_json: SecretStr | None = Field(
        default=None,
        description=(
            "The service account's JSON key (the whole file's text) for the Google Admin sync; "
            "or name the file with `GOOGLE_SERVICE_ACCOUNT_FILE`. The sync is off without one."
        ),
    )
    google_service_account_file: Path | None = Field(
        default=None,
        description=(
            "A file holding the service account's JSON key (a mounted secret), instead of "
            "`GOOGLE_SERVICE_ACCOUNT_JSON`."
        ),
    )
    google_admin_subject: str | None = Field(
        default=None,
        description=(
            "The Google Workspace admin the service account acts for (domain-wide delegation), "
            "e.g. `devicecare-sync@district.org`; it needs the right to read Chrome devices."
        ),
    )
    google_customer_id: str = Field(
        default="my_customer",
        description=(
            "The Google Workspace customer ID; `my_customer` means the admin's own account."
        ),
    )
    google_org_unit: str | None = Field(
        default=None,
        description=(
            "Read only the ChromeOS devices in this organizational unit and the units under it "
            "(`/Students`). Unset: every device of the account."
        ),
    )
    google_full_sync_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description=(
            "Days between full listings of Google's devices; the nightly runs in between read "
            "only the devices that synced since the last run."
        ),
    )
    google_api_url: str | None = Field(
        default=None,
        description="Another address for the Admin SDK API (a stand-in in tests). Unset: Google's.",
    )
    google_token_url: str | None = Field(
        default=None,
        description=(
            "Another address for Google's token endpoint. Unset: the key file's `token_uri`."
        ),
    )
    # A school payment portal without an API (RevTrak, MySchoolBucks, SchoolCash Online, ...):
    # the page links here instead of Stripe. Placeholders: {invoice_number}, {amount} (dollars,
    # "12.50"), {amount_cents}, {student_id} (the SIS id), {student_name}.
    payment_portal_url_template: str | None = Field(
        default=None,
        description=(
            "A school payment portal's address for one invoice, with the URL-encoded placeholders"
            " `{invoice_number}`, `{amount}` (`12.50`), `{amount_cents}`, `{student_id}`, "
            "`{student_name}`, e.g. "
            "`https://district.revtrak.net/pay?item=devices&ref={invoice_number}&amt={amount}`."
        ),
    )
    payment_portal_name: str = Field(
        default="the school payment portal",
        description=(
            "What families are told they are paying through; also the default `--portal` name of "
            "`payments import`."
        ),
    )
    # Apple School Manager (or Apple Business) API account for the device sync; off without
    # APPLE_CLIENT_ID. The key is the .pem file the account's page downloads, never logged.
    apple_client_id: str | None = Field(
        default=None,
        description=(
            "Client ID of the Apple School Manager API account (`SCHOOLAPI.…`; `BUSINESSAPI.…` "
            "for Apple Business). The Apple device sync is off without it."
        ),
    )
    apple_key_id: str | None = Field(
        default=None,
        description="Key ID shown with the API account's private key.",
    )
    apple_private_key: SecretStr | None = Field(
        default=None,
        description=(
            "The API account's private key: the PEM text of the `.pem` file Apple School Manager "
            "downloads (a P-256 EC key). Or set `APPLE_PRIVATE_KEY_FILE`."
        ),
    )
    apple_private_key_file: Path | None = Field(
        default=None,
        description="A file holding the API account's private key (a mounted secret), instead of "
        "`APPLE_PRIVATE_KEY`.",
    )
    apple_api_url: str = Field(
        default="https://api-school.apple.com",
        description=(
            "The Apple API to read devices from: `https://api-business.apple.com` for Apple "
            "Business (a stand-in in tests)."
        ),
    )
    apple_token_url: str = Field(
        default="https://account.apple.com/auth/oauth2/token",
        description="Where the API account's signed assertion is exchanged for an access token.",
    )
    apple_coverage_refresh_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description=(
            "Days between reads of every device's AppleCare coverage (one request per device); "
            "the nights between read it only for devices Apple shows as added or changed. `0`: "
            "every run reads all of it."
        ),
    )
    apple_scope: str | None = Field(
        default=None,
        description=(
            "OAuth scope asked for. Unset: `school.api`, or `business.api` when the client ID "
            "starts with `BUSINESSAPI.`."
        ),
    )
    # OneRoster 1.1 REST: schools, students and guardians from the SIS or rostering service
    # (docs/sync-oneroster.md). Off until the API root, token URL, client id and secret are set.
    oneroster_base_url: str | None = Field(
        default=None,
        description=(
            "The OneRoster 1.1 API root the SIS or rostering service gives out, ending in "
            "`/ims/oneroster/v1p1` (e.g. `https://sis.district.org/ims/oneroster/v1p1`). Unset: "
            "no OneRoster sync."
        ),
    )
    oneroster_token_url: str | None = Field(
        default=None,
        description=(
            "The provider's OAuth 2 token endpoint for client credentials (e.g. "
            "`https://sis.district.org/oauth/token`)."
        ),
    )
    oneroster_client_id: str | None = Field(
        default=None,
        description="The OAuth 2 client id (some providers call it the key) the provider issued.",
    )
    oneroster_client_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The OAuth 2 client secret; or name a file holding it in "
            "`ONEROSTER_CLIENT_SECRET_FILE`."
        ),
    )
    oneroster_client_secret_file: Path | None = Field(
        default=None,
        description=(
            "A file holding the client secret (a mounted secret), instead of "
            "`ONEROSTER_CLIENT_SECRET`."
        ),
    )
    oneroster_scope: str = Field(
        default="https://purl.imsglobal.org/spec/or/v1p1/scope/roster-core.readonly",
        description=(
            "The OAuth 2 scope asked for, space-separated if several; the default is the "
            "OneRoster 1.1 scope that reads orgs and users."
        ),
    )
    oneroster_page_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description=(
            "Records asked for per page (`limit`); a provider that serves fewer per page loses "
            "nothing, it only takes more requests."
        ),
    )
    secret_key: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET_KEY),
        description=(
            "Signs reply tokens, family links and Slack button values. Make one with `devicecare "
            "secret generate`; the placeholder is refused once the service is reachable from "
            "other machines, sends or reads mail, or takes payments."
        ),
    )
    secret_key_previous: SecretStr | None = Field(
        default=None,
        description=(
            "Older keys, comma-separated, that still verify links, reply addresses and Slack "
            "values signed before a rotation; new ones are signed with `SECRET_KEY`."
        ),
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "Proxies whose `X-Forwarded-For` is believed: IP addresses and networks, "
            "comma-separated (`127.0.0.1`, `10.0.0.0/8`). Empty: no proxy, the connecting "
            "address is the client."
        ),
    )
    port: int = Field(
        default=3000,
        description="Web port (the Procfile passes `$PORT`).",
    )
    host: str = Field(
        default="127.0.0.1",
        description=(
            "Web bind address. Loopback until told otherwise: `0.0.0.0` in a container or when "
            "the proxy is on another machine."
        ),
    )
    log_level: str = Field(
        default="INFO",
        description="Python log level.",
    )
    # Monitoring: see docs/operations/monitoring.md.
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`text`: one readable line per record; `json`: one JSON object per line (time, level,"
            " logger, message, extra fields, exception). uvicorn's lines use it too."
        ),
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        description=(
            "Report errors to this Sentry project (needs `pip install 'devicecare[sentry]'`);"
            " events carry no personal data, family tokens or secrets."
        ),
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, `/metrics` needs `Authorization: Bearer <token>`.",
    )

    @field_validator("google_service_account_json")
    @classmethod
    def _service_account_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from bot.sync.credentials import CredentialError
        from bot.sync.google import ServiceAccountKey

        setting = "GOOGLE_SERVICE_ACCOUNT_JSON"
        try:
            ServiceAccountKey.from_json(value.get_secret_value(), setting=setting)
        except CredentialError as exc:  # one line, no part of the key in it
            raise ValueError(str(exc).removeprefix(f"{setting}: ")) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return supported_database_url(async_database_url(value))

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        from bot.web.proxies import parse_trusted_proxies

        parse_trusted_proxies(value)  # a ValueError names the entry that is not an address
        return value

    @field_validator("oneroster_base_url", "oneroster_token_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.lower().startswith(("https://", "http://")):
            raise ValueError("write the whole address, starting with https://")
        return value

    @field_validator("staff_language")
    @classmethod
    def _catalogued_language(cls, value: str) -> str:
        from workflows.i18n import LANGUAGES

        language = value.strip().lower()
        if language not in LANGUAGES:
            raise ValueError(f"no catalogue for {value!r} (one of {', '.join(LANGUAGES)})")
        return language

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
    def apple_enabled(self) -> bool:
        """The Apple device sync is set up (its other settings are checked when it is built)."""
        return bool(self.apple_client_id and self.apple_client_id.strip())

    @property
    def google_enabled(self) -> bool:
        """A key is configured; GOOGLE_ADMIN_SUBJECT missing is then an error, not "off"."""
        return bool(self.google_service_account_json or self.google_service_account_file)

    @property
    def oneroster_enabled(self) -> bool:
        """Whether a OneRoster sync is configured (the secret may still be unreadable)."""
        return bool(
            self.oneroster_base_url
            and self.oneroster_token_url
            and self.oneroster_client_id
            and (self.oneroster_client_secret or self.oneroster_client_secret_file)
        )

    @property
    def imap_enabled(self) -> bool:
        return bool(self.imap_host and self.imap_username and self.imap_password)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings; a ConfigurationError (one line per problem) when they can't be used."""
    return load_settings(Settings)
