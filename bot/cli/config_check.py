"""`devicecare config check`: the effective configuration (secrets hidden) and whether the
database, SMTP and IMAP servers it names answer. Nothing is written, sent or marked."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import SecretStr

from bot.config_errors import env_file, env_name, is_secret
from bot.runtime import describe_parts
from bot.settings import Settings
from storage.database_url import database_backend, sqlite_file
from storage.migrate import connect_error, probe_database, where
from workflows.i18n import _

HIDDEN = "(set, hidden)"
NOT_SET = "(not set)"
# How long one step may take before the check reports the server as not answering (the
# service itself may wait longer: these are checks, not deliveries).
CHECK_TIMEOUT_SECONDS = 10.0

Status = Literal["ok", "failed", "off"]


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable
    value: str  # as shown: secrets hidden, passwords in URLs masked
    source: str  # "environment", ".env" or "default"


@dataclass(frozen=True)
class CheckResult:
    part: str
    status: Status
    detail: str


def mask_url(value: str) -> str:
    """A URL with its password replaced by ***; anything else unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or parts.password is None:
        return value
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def shown_value(settings: Settings, field: str) -> str:
    value = getattr(settings, field)
    if value is None or value == "":
        return NOT_SET
    if isinstance(value, SecretStr) or is_secret(Settings, field):
        return HIDDEN
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url(value)
    return str(value)


def effective_settings(settings: Settings) -> list[Setting]:
    """Every setting, as the service sees it, and where its value came from."""
    from_env = {k.upper() for k in os.environ}
    path = env_file(Settings)
    from_file = {k.upper() for k in dotenv_values(path)} if path.is_file() else set()
    rows: list[Setting] = []
    for field in Settings.model_fields:
        name = env_name(Settings, field)
        source = "environment" if name in from_env else ".env" if name in from_file else "default"
        rows.append(Setting(name, shown_value(settings, field), source))
    return rows


async def _guarded(part: str, check: Awaitable[CheckResult]) -> CheckResult:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS * 4)
    except TimeoutError:
        return CheckResult(part, "failed", _("no answer from the server in time"))
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is the reason shown
        return CheckResult(part, "failed", connect_error(exc))


async def check_database(settings: Settings) -> CheckResult:
    url = settings.database_url
    sqlite = database_backend(url) == "sqlite"
    file = sqlite_file(url)
    if file is not None and not Path(file).exists():
        return CheckResult(
            "database",
            "ok",
            _("SQLite file {file} doesn't exist yet; the first start creates it", file=file),
        )
    try:
        state, version = await probe_database(url, connect_timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return CheckResult(
            "database",
            "failed",
            _("can't connect to {where}: {problem}", where=where(url), problem=connect_error(exc)),
        )
    server = _(
        "{server} {version} at {where}",
        server="SQLite" if sqlite else "PostgreSQL",
        version=version,
        where=where(url),
    )
    if state.is_current:
        return CheckResult("database", "ok", f"{server}, {state.describe()}")
    if sqlite and state.is_behind:
        at = ", ".join(state.current) or _("no schema")
        heads = ", ".join(state.heads)
        return CheckResult(
            "database",
            "ok",
            _(
                "{server}, {at}; upgraded to {heads} when DeviceCare next starts",
                server=server,
                at=at,
                heads=heads,
            ),
        )
    return CheckResult("database", "failed", f"{server}: {state.describe()}")


def _off(part: str, settings: Settings, described: str) -> CheckResult:
    return CheckResult(part, "off", describe_parts(settings)[described].removeprefix("off: "))


async def check_smtp(settings: Settings) -> CheckResult:
    from bot.mail.sender import NoticeSender, smtp_config
    from bot.mail.smtp import SmtpTransport
    from workflows.clock import SystemClock

    if not settings.smtp_enabled:
        return _off("smtp", settings, "email out")
    try:
        NoticeSender.from_settings(settings, SystemClock())  # SMTP_FROM and the templates
    except ValueError as exc:
        return CheckResult("smtp", "failed", str(exc))
    config = smtp_config(settings)
    timeout = min(config.timeout, CHECK_TIMEOUT_SECONDS)
    transport = SmtpTransport(dataclasses.replace(config, timeout=timeout))
    return CheckResult("smtp", "ok", await transport.check())


async def check_imap(settings: Settings) -> CheckResult:
    from bot.mail.reader import ReaderConfig, check_mailbox

    if not settings.imap_enabled:
        return _off("imap", settings, "email in")
    timeout = min(float(settings.imap_timeout_seconds), CHECK_TIMEOUT_SECONDS)
    config = ReaderConfig.from_settings(settings, timeout=timeout)
    selected = await check_mailbox(config)
    security = {"tls": "TLS", "starttls": "STARTTLS", "none": _("no TLS")}[config.security]
    return CheckResult(
        "imap",
        "ok",
        _(
            "{host}:{port}, {security}, logged in as {user}, {mailbox} holds {count} messages",
            host=config.host,
            port=config.port,
            security=security,
            user=config.username,
            mailbox=config.mailbox,
            count=selected.exists,
        ),
    )


async def check_secret_key(settings: Settings) -> CheckResult:
    """What every process checks before it starts (bot.secret_key)."""
    from bot.secret_key import exposure, secret_key_problem

    problem = secret_key_problem(settings)
    if problem is not None:
        return CheckResult("secret", "failed", problem)
    if exposure(settings) is None:
        return CheckResult(
            "secret", "ok", _("good enough on this machine only (nothing is exposed)")
        )
    return CheckResult("secret", "ok", _("SECRET_KEY is strong enough to go live"))


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Each part is tested on its own, at the same time; one failing doesn't hide another."""
    return list(
        await asyncio.gather(
            _guarded("database", check_database(settings)),
            _guarded("smtp", check_smtp(settings)),
            _guarded("imap", check_imap(settings)),
            _guarded("secret", check_secret_key(settings)),
        )
    )


def render(settings: list[Setting], results: list[CheckResult]) -> list[str]:
    width = max(len(s.name) for s in settings)
    value_width = min(60, max(len(s.value) for s in settings))
    lines = [_("Configuration (secrets hidden):")]
    lines += [f"  {s.name:<{width}}  {s.value:<{value_width}}  {s.source}" for s in settings]
    lines += ["", _("Checks:")]
    lines += [f"  {r.part:<8}  {r.status:<6}  {r.detail}" for r in results]
    return lines


def all_passed(results: list[CheckResult]) -> bool:
    return all(r.status != "failed" for r in results)
