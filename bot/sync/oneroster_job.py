"""The OneRoster sync as the runner sees it (bot.sync.job.SyncJob): read the provider's orgs and
users, compare them with the store, apply the difference in the runner's transaction."""

from __future__ import annotations

from datetime import datetime

import httpx

from bot.settings import Settings
from bot.sync.credentials import credential
from bot.sync.http import Backoff
from bot.sync.oneroster import OneRosterClient, RosterSnapshot
from services.roster_sync import apply_roster_sync, plan_roster_sync
from storage.uow import SqlUnitOfWork
from workflows.clock import Clock
from workflows.sync import SourceName, SyncPlan


class OneRosterSyncJob:
    """Reads whole listings unless `incremental`: only a whole listing shows which students
    have left (an incremental read, from the cursor, catches `tobedeleted` but not a student
    the SIS dropped without saying)."""

    source: SourceName = "oneroster"

    def __init__(self, client: OneRosterClient, *, incremental: bool = False) -> None:
        self.client = client
        self.incremental = incremental

    async def read(self, cursor: str | None) -> RosterSnapshot:
        return await self.client.read_roster(since=cursor if self.incremental else None)

    async def compare(
        self, uow: SqlUnitOfWork, snapshot: RosterSnapshot, now: datetime
    ) -> SyncPlan:
        return await plan_roster_sync(uow, snapshot, now)

    async def apply(
        self, uow: SqlUnitOfWork, snapshot: RosterSnapshot, plan: SyncPlan, now: datetime
    ) -> None:
        await apply_roster_sync(uow, snapshot, now)

    async def aclose(self) -> None:
        await self.client.aclose()


def oneroster_job(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
    incremental: bool = False,
) -> OneRosterSyncJob | None:
    """The job the settings describe; None when OneRoster isn't configured. Raises
    bot.sync.credentials.CredentialError when the secret (or its file) can't be had."""
    if not settings.oneroster_enabled:
        return None
    assert settings.oneroster_base_url and settings.oneroster_token_url
    assert settings.oneroster_client_id
    secret = credential(
        settings.oneroster_client_secret,
        settings.oneroster_client_secret_file,
        setting="ONEROSTER_CLIENT_SECRET",
    )
    assert secret is not None  # required=True: a missing secret raised
    client = OneRosterClient(
        settings.oneroster_base_url,
        settings.oneroster_token_url,
        settings.oneroster_client_id,
        secret,
        scope=settings.oneroster_scope,
        page_size=settings.oneroster_page_size,
        http=http,
        backoff=backoff,
        clock=clock,
    )
    return OneRosterSyncJob(client, incremental=incremental)
