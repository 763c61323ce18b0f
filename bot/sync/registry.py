"""The sources a district can sync from, and which of them this configuration turns on.

Each source has one entry in SOURCES below, under its name ("apple", "google", "oneroster"):

    "google": SourceEntry(
        settings=("GOOGLE_ADMIN_CUSTOMER", "GOOGLE_SERVICE_ACCOUNT_FILE", ...),
        configured=lambda s: bool(s.google_admin_customer and ...),
        build=google_job,  # def google_job(runtime): return DeviceSyncJob(GoogleAdmin(...))
    ),

`build` is called only when `configured` is true; it returns the bot.sync.job.SyncJob the
runner calls (storage.device_sync.DeviceSyncJob for a DeviceSource). The CLI and the nightly
scheduler ask `sync_jobs` for the configured sources and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from bot.runtime import Runtime
from bot.settings import Settings
from bot.sync.credentials import CredentialError
from bot.sync.job import SyncJob
from storage.uow import SqlUnitOfWork
from workflows.i18n import _
from workflows.sync import SOURCE_LABELS, SourceName, SyncPlan


@dataclass(frozen=True)
class SourceEntry:
    settings: tuple[str, ...]  # the variables to set, named when the source is off
    configured: Callable[[Settings], bool]
    build: Callable[[Runtime], SyncJob]


def _apple(runtime: Runtime) -> SyncJob:
    from bot.sync.apple import apple_source
    from storage.device_sync import DeviceSyncJob

    source = apple_source(runtime.settings, clock=runtime.clock)
    assert source is not None  # `configured` said so
    return DeviceSyncJob(source)


def _google(runtime: Runtime) -> SyncJob:
    from bot.sync.google import google_source
    from storage.device_sync import DeviceSyncJob

    source = google_source(runtime.settings, clock=runtime.clock)
    assert source is not None  # `configured` said so
    return DeviceSyncJob(source)


def _oneroster(runtime: Runtime) -> SyncJob:
    from bot.sync.oneroster_job import oneroster_job

    job = oneroster_job(runtime.settings, clock=runtime.clock)
    assert job is not None  # `configured` said so
    return job


SOURCES: dict[str, SourceEntry] = {
    "apple": SourceEntry(
        settings=("APPLE_CLIENT_ID", "APPLE_KEY_ID", "APPLE_PRIVATE_KEY (or _FILE)"),
        configured=lambda s: s.apple_enabled,
        build=_apple,
    ),
    "google": SourceEntry(
        settings=("GOOGLE_SERVICE_ACCOUNT_FILE (or _JSON)", "GOOGLE_ADMIN_SUBJECT"),
        configured=lambda s: s.google_enabled,
        build=_google,
    ),
    "oneroster": SourceEntry(
        settings=(
            "ONEROSTER_BASE_URL",
            "ONEROSTER_TOKEN_URL",
            "ONEROSTER_CLIENT_ID",
            "ONEROSTER_CLIENT_SECRET (or _FILE)",
        ),
        configured=lambda s: s.oneroster_enabled,
        build=_oneroster,
    ),
}


class UnusableSource:
    """A configured source whose credentials can't be used (a key file that can't be read, a
    key that isn't one): its run fails with that one line, is recorded and alerts staff,
    like a source that is down, instead of stopping the process with a traceback."""

    def __init__(self, source: SourceName, problem: CredentialError) -> None:
        self.source = source
        self.problem = problem

    async def read(self, cursor: str | None) -> Any:
        raise self.problem

    async def compare(self, uow: SqlUnitOfWork, snapshot: Any, now: datetime) -> SyncPlan:
        raise AssertionError("an unusable source is never read")

    async def apply(self, uow: SqlUnitOfWork, snapshot: Any, plan: SyncPlan, now: datetime) -> None:
        raise AssertionError("an unusable source is never read")


def _build(name: str, runtime: Runtime) -> SyncJob:
    try:
        return SOURCES[name].build(runtime)
    except CredentialError as exc:
        return UnusableSource(cast(SourceName, name), exc)


async def close_jobs(jobs: Iterable[SyncJob]) -> None:
    """Close the HTTP clients the jobs hold (a job without any has no aclose)."""
    for job in jobs:
        close = getattr(job, "aclose", None)
        if close is not None:
            await close()


def sync_jobs(runtime: Runtime) -> dict[str, SyncJob]:
    """The configured sources' jobs, by source name, in SOURCE_LABELS order."""
    order = list(SOURCE_LABELS)
    names = sorted(SOURCES, key=lambda n: order.index(n) if n in order else len(order))
    return {
        name: _build(name, runtime) for name in names if SOURCES[name].configured(runtime.settings)
    }


def not_configured(source: str) -> str:
    """One line saying what to set to turn `source` on."""
    name = SOURCE_LABELS.get(source, source)
    entry = SOURCES.get(source)
    if entry is None:
        return _("Syncing from {name} isn't available in this version of DeviceCare.", name=name)
    return _(
        "{name} isn't configured: set {settings}.", name=name, settings=", ".join(entry.settings)
    )
