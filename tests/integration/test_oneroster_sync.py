"""The OneRoster sync end to end: the real client reads the local stand-in provider, the job
compares and applies in a caller's transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.settings import Settings
from bot.sync.credentials import CredentialError
from bot.sync.http import Backoff, SourceUnavailable
from bot.sync.job import SyncJob
from bot.sync.oneroster_job import OneRosterSyncJob, oneroster_job
from services.roster import import_roster
from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.sync_standins.oneroster import (
    CLIENT_ID,
    CLIENT_SECRET,
    OneRosterStandIn,
    org_record,
    user_record,
)
from workflows.sync import DEFAULT_MAX_CHANGE_SHARE, SyncPlan, too_many_removals

FIXTURES = Path(__file__).parent.parent / "fixtures" / "roster"
TABLES = (m.Building, m.Household, m.Student, m.Guardian, m.Guardianship)


def records(folder: str, name: str) -> list[dict[str, Any]]:
    with (FIXTURES / folder / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [org_record(r) if name == "orgs" else user_record(r) for r in rows]


async def no_wait(seconds: float) -> None:
    return None


def settings_for(server: OneRosterStandIn, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "oneroster_base_url": server.base_url,
        "oneroster_token_url": server.token_url,
        "oneroster_client_id": CLIENT_ID,
        "oneroster_client_secret": SecretStr(CLIENT_SECRET),
        "oneroster_page_size": 3,  # several pages even for the small fixtures
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def standin() -> AsyncIterator[OneRosterStandIn]:
    server = OneRosterStandIn(orgs=records("district", "orgs"), users=records("district", "users"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def job(standin: OneRosterStandIn) -> AsyncIterator[OneRosterSyncJob]:
    job = oneroster_job(settings_for(standin), backoff=Backoff(attempts=3, sleep=no_wait))
    assert job is not None
    yield job
    await job.aclose()


async def sync(
    stores: UnitOfWorkFactory,
    job: OneRosterSyncJob,
    *,
    apply: bool = True,
    cursor: str | None = None,
) -> SyncPlan:
    """As the runner does it: read, compare, apply in one transaction, commit."""
    runner_job: SyncJob = job  # the job is what the runner expects
    snapshot = await runner_job.read(cursor)
    now = stores.clock.now()
    async with stores() as uow:
        plan = await runner_job.compare(uow, snapshot, now)
        if apply:
            await runner_job.apply(uow, snapshot, plan, now)
        await uow.commit()
    return plan


async def store_state(stores: UnitOfWorkFactory) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the roster tables, as plain tuples."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    async with stores.sessions() as session:
        for model in TABLES:
            columns = [c for c in model.__table__.columns]
            rows = await session.execute(select(*columns).order_by(*model.__table__.primary_key))
            state[model.__tablename__] = [tuple(row) for row in rows]
    return state


async def active(stores: UnitOfWorkFactory) -> dict[str, bool]:
    async with stores.sessions() as session:
        rows = await session.execute(select(m.Student.sis_id, m.Student.active))
        return {sis_id: is_active for sis_id, is_active in rows}


# --- compare and apply ----------------------------------------------------------------------


async def test_compare_writes_nothing(stores: UnitOfWorkFactory, job: OneRosterSyncJob) -> None:
    empty = await store_state(stores)

    plan = await sync(stores, job, apply=False)

    assert await store_state(stores) == empty
    assert plan.counts == {
        "buildings created": 2,
        "students created": 5,
        "guardians created": 4,
        "households created": 3,
        "guardianships created": 5,
    }
    assert (plan.removals, plan.base) == (0, 0)
    assert "student stu-1: new" in plan.sample
    assert "building org-hms: new" in plan.sample


async def test_apply_then_rerun_changes_nothing(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob
) -> None:
    first = await sync(stores, job)
    after_first = await store_state(stores)

    again = await sync(stores, job)

    assert first.changes == 19
    assert again.changes == 0
    assert again.counts == {"unchanged": 2 + 5 + 4 + 5}
    assert again.sample == []
    assert (again.removals, again.base) == (0, 5)
    assert await store_state(stores) == after_first


async def test_a_sync_keeps_what_the_csv_import_of_the_same_roster_keeps(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob
) -> None:
    result = await import_roster(stores.sessions, FIXTURES / "district", clock=stores.clock)
    assert result.ok
    imported = await store_state(stores)

    plan = await sync(stores, job)

    assert plan.changes == 0
    assert await store_state(stores) == imported


async def test_compare_after_changes_writes_nothing(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    await sync(stores, job)
    before = await store_state(stores)
    standin.users = records("next_day", "users")  # stu-2 is tobedeleted
    standin.users[0]["grades"] = ["08"]

    plan = await sync(stores, job, apply=False)

    assert await store_state(stores) == before
    assert plan.counts["students updated"] == 1
    assert plan.counts["students deactivated"] == 1
    assert (plan.removals, plan.base) == (1, 5)
    assert plan.sample[0] == "student stu-2: inactive (the source marks it tobedeleted)"
    assert "student stu-1: grade changed" in plan.sample


# --- removals -------------------------------------------------------------------------------


async def test_students_missing_from_a_full_listing_become_inactive(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    await sync(stores, job)
    standin.users = [u for u in standin.users if u["sourcedId"] != "stu-4"]

    plan = await sync(stores, job)

    assert (plan.removals, plan.base) == (1, 5)
    assert plan.counts["students deactivated"] == 1
    assert plan.sample[0] == "student stu-4: inactive (no longer listed)"
    assert await active(stores) == {f"stu-{i}": i != 4 for i in range(1, 6)}  # kept, inactive
    # Listed again: active again.
    standin.users = records("district", "users")
    back = await sync(stores, job)
    assert back.counts == {"students updated": 1, "unchanged": 15}
    assert all((await active(stores)).values())


async def test_a_roster_that_drops_most_students_is_over_the_guard(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    await sync(stores, job)
    before = await store_state(stores)
    standin.users = [u for u in standin.users if u["sourcedId"] in ("stu-1", "par-1")]

    plan = await sync(stores, job, apply=False)

    assert (plan.removals, plan.base) == (4, 5)
    assert plan.removal_share == 0.8
    assert too_many_removals(plan, DEFAULT_MAX_CHANGE_SHARE)
    assert plan.sample[:4] == [
        f"student stu-{i}: inactive (no longer listed)" for i in (2, 3, 4, 5)
    ]
    assert await store_state(stores) == before


async def test_an_empty_listing_would_remove_everyone(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    await sync(stores, job)
    standin.users = []

    plan = await sync(stores, job, apply=False)

    assert (plan.removals, plan.base) == (5, 5)
    assert too_many_removals(plan, DEFAULT_MAX_CHANGE_SHARE)


async def test_an_incremental_read_removes_only_tobedeleted(
    stores: UnitOfWorkFactory, standin: OneRosterStandIn
) -> None:
    settings = settings_for(standin)
    job = oneroster_job(settings, backoff=Backoff(sleep=no_wait), incremental=True)
    assert job is not None
    try:
        await sync(stores, job)
        gone = user_record(
            {
                "sourcedId": "stu-3",
                "status": "tobedeleted",
                "role": "student",
                "givenName": "Mia",
                "familyName": "Chen",
                "orgSourcedIds": "org-hms",
                "grades": "06",
                "dateLastModified": "2025-09-01T00:00:00Z",
            }
        )
        standin.users = [u for u in standin.users if u["sourcedId"] not in ("stu-3", "stu-5")]
        standin.users.append(gone)

        plan = await sync(stores, job, cursor="2025-08-15T00:00:00Z")
    finally:
        await job.aclose()

    assert standin.reads("users")[-1].query["filter"] == "dateLastModified>'2025-08-15T00:00:00Z'"
    assert (plan.removals, plan.base) == (1, 5)
    # stu-5 is not in the changes since the cursor, which says nothing of who left.
    assert await active(stores) == {f"stu-{i}": i != 3 for i in range(1, 6)}


# --- bad input ------------------------------------------------------------------------------


async def test_bad_records_are_reported_and_the_rest_is_applied(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    standin.orgs = records("bad", "orgs")
    standin.users = records("bad", "users") + ["not a record"]

    plan = await sync(stores, job)

    problems = [line for line in plan.sample if line.startswith("problem: ")]
    assert plan.counts["problems"] >= 6
    assert plan.changes == sum(plan.counts.values()) - plan.counts["problems"]
    assert "problem: users #4 (stu-11): unknown org 'org-nowhere'" in plan.sample
    assert "problem: users #2: missing sourcedId" in plan.sample
    assert len(problems) >= 3
    assert set(await active(stores)) == {"stu-10", "stu-13"}


async def test_a_source_that_fails_mid_read_changes_nothing(
    stores: UnitOfWorkFactory, job: OneRosterSyncJob, standin: OneRosterStandIn
) -> None:
    standin.fail("users", "500", offset=6, times=5)

    with pytest.raises(SourceUnavailable):
        await sync(stores, job)

    assert await store_state(stores) == {t.__tablename__: [] for t in TABLES}


# --- settings -------------------------------------------------------------------------------


async def test_the_secret_can_come_from_a_file(
    stores: UnitOfWorkFactory, standin: OneRosterStandIn, tmp_path: Path
) -> None:
    secret_file = tmp_path / "oneroster-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    settings = settings_for(
        standin, oneroster_client_secret=None, oneroster_client_secret_file=secret_file
    )
    assert settings.oneroster_enabled
    job = oneroster_job(settings, backoff=Backoff(sleep=no_wait))
    assert job is not None
    try:
        plan = await sync(stores, job, apply=False)
    finally:
        await job.aclose()
    assert plan.counts["students created"] == 5
    assert CLIENT_SECRET not in repr(settings)


def test_without_settings_there_is_no_job() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.oneroster_enabled
    assert oneroster_job(settings) is None


def test_an_unreadable_secret_file_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        oneroster_base_url="https://sis.example.org/ims/oneroster/v1p1",
        oneroster_token_url="https://sis.example.org/oauth/token",
        oneroster_client_id="id",
        oneroster_client_secret_file=tmp_path / "missing",
    )
    with pytest.raises(CredentialError, match="ONEROSTER_CLIENT_SECRET_FILE"):
        oneroster_job(settings)


def test_a_base_url_must_be_a_whole_address() -> None:
    with pytest.raises(ValueError, match="https://"):
        Settings(_env_file=None, oneroster_base_url="sis.example.org")  # type: ignore[call-arg]
