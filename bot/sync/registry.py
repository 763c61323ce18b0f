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

from collections.abc import Callable
from dataclasses import dataclass

from bot.runtime import Runtime
from bot.settings import Settings
from bot.sync.job import SyncJob
from workflows.sync import SOURCE_LABELS


@dataclass(frozen=True)
class SourceEntry:
    settings: tuple[str, ...]  # the variables to set, named when the source is off
    configured: Callable[[Settings], bool]
    build: Callable[[Runtime], SyncJob]


# One entry per source, added with its client (tests add their own stand-in source).
# Each source replaces its own placeholder line (kept apart so their changes merge cleanly).
SOURCES: dict[str, SourceEntry] = {
    # apple: Apple School Manager's entry
    #
    # google: Google Admin's entry
    #
    # oneroster: OneRoster's entry
}


def sync_jobs(runtime: Runtime) -> dict[str, SyncJob]:
    """The configured sources' jobs, by source name, in SOURCE_LABELS order."""
    order = list(SOURCE_LABELS)
    names = sorted(SOURCES, key=lambda n: order.index(n) if n in order else len(order))
    return {
        name: SOURCES[name].build(runtime)
        for name in names
        if SOURCES[name].configured(runtime.settings)
    }


def not_configured(source: str) -> str:
    """One line saying what to set to turn `source` on."""
    name = SOURCE_LABELS.get(source, source)
    entry = SOURCES.get(source)
    if entry is None:
        return f"Syncing from {name} isn't available in this version of DeviceCare."
    return f"{name} isn't configured: set {', '.join(entry.settings)}."
