"""One sync run end to end: lock, run row, read, compare and apply, outbox (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.sync.runner import SYNC_ALERT_KIND, SYNC_SUMMARY_KIND, lock_name, run_sync
from storage import models as m
from storage.device_sync import DeviceSyncJob
from storage.run_lock import exclusive
from tests.sync.listed_source import ListedSource, chromebook, counting_writes
from workflows.clock import FixedClock


@pytest.fixture
async def runtime(
    engine: AsyncEngine, database_url: str, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        sync_max_change_share=0.25,
    )
    rt = build_runtime(settings, clock)
    yield rt
    await rt.close()


async def _rows(runtime: Runtime, model: type) -> list:  # type: ignore[type-arg]
    async with runtime.reads() as store:
        return list((await store.session.execute(select(model).order_by(model.id))).scalars())


async def _serials(runtime: Runtime) -> dict[str, str]:
    return {d.serial: d.status for d in await _rows(runtime, m.Device)}


async def test_a_run_applies_stores_its_result_and_resumes_from_its_cursor(
    runtime: Runtime,
) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(3)], cursor="page-token-1")
    result = await run_sync(runtime, DeviceSyncJob(source))
    assert (result.status, result.counts) == ("applied", {"new": 3})
    (run,) = await _rows(runtime, m.SyncRun)
    assert (run.status, run.trigger, run.dry_run, run.cursor) == (
        "applied",
        "cli",
        False,
        "page-token-1",
    )
    assert run.counts == {"new": 3} and run.sample[0] == "new 5CD0000000 HP Chromebook 11 G9"
    assert run.finished_at is not None
    assert len(await _serials(runtime)) == 3
    again = await run_sync(runtime, DeviceSyncJob(source), trigger="nightly")
    assert again.status == "no_changes"
    assert source.reads == [None, "page-token-1"]
    (summary,) = await _rows(runtime, m.OutboxMessage)
    assert summary.kind == SYNC_SUMMARY_KIND
    assert summary.payload["status"] == "no_changes" and summary.payload["source"] == "google"


async def test_a_sync_started_while_one_runs_does_nothing(runtime: Runtime) -> None:
    source = ListedSource("google", [chromebook(1)])
    async with exclusive(runtime.engine, lock_name("google")) as held:
        assert held
        result = await run_sync(runtime, DeviceSyncJob(source))
    assert result.status == "busy"
    assert result.message == "A sync from Google Admin is already running; this one did nothing."
    assert source.reads == [] and await _rows(runtime, m.SyncRun) == []


async def test_two_syncs_started_together_run_once(runtime: Runtime) -> None:
    gate = asyncio.Event()
    source = ListedSource("google", [chromebook(1)], gate=gate)
    first = asyncio.create_task(run_sync(runtime, DeviceSyncJob(source)))
    while not source.reads:
        await asyncio.sleep(0.01)
    second = await run_sync(runtime, DeviceSyncJob(source))
    gate.set()
    assert second.status == "busy"
    assert (await first).status == "applied"
    assert len(source.reads) == 1 and len(await _rows(runtime, m.SyncRun)) == 1


async def test_a_source_that_is_down_fails_the_run_and_alerts(runtime: Runtime) -> None:
    source = ListedSource("google", [chromebook(1)], down="Google Admin answered 503: busy")
    result = await run_sync(runtime, DeviceSyncJob(source), trigger="nightly")
    assert result.status == "failed"
    assert "Google Admin answered 503" in result.message
    (run,) = await _rows(runtime, m.SyncRun)
    assert run.status == "failed" and "503" in (run.error or "")
    (alert,) = await _rows(runtime, m.OutboxMessage)
    assert alert.kind == SYNC_ALERT_KIND and alert.payload["status"] == "failed"
    assert await _serials(runtime) == {}


async def test_too_many_removals_hold_the_run_and_alert(runtime: Runtime) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(8)])
    await run_sync(runtime, DeviceSyncJob(source))
    source.devices = source.devices[:5]  # 3 of 8 gone: more than a quarter
    source.devices[0] = replace(source.devices[0], model="HP Chromebook 14")
    result = await run_sync(runtime, DeviceSyncJob(source), trigger="nightly")
    assert result.status == "held"
    assert "retire or unassign 3 of 8 records (38%), more than the 25%" in result.message
    assert "devicecare sync google --allow-removals" in result.message
    assert set((await _serials(runtime)).values()) == {"in_service"}
    models = {d.model for d in await _rows(runtime, m.Device)}
    assert models == {"HP Chromebook 11 G9"}  # nothing of a held run is applied
    runs = await _rows(runtime, m.SyncRun)
    assert [r.status for r in runs] == ["applied", "held"]
    assert (runs[1].removals, runs[1].base) == (3, 8)
    (alert,) = await _rows(runtime, m.OutboxMessage)
    assert alert.kind == SYNC_ALERT_KIND
    assert (alert.payload["status"], alert.payload["removals"], alert.payload["max_share"]) == (
        "held", 3, 0.25
    )  # fmt: skip
    applied = await run_sync(runtime, DeviceSyncJob(source), allow_removals=True)
    assert applied.status == "applied"
    assert list((await _serials(runtime)).values()).count("retired") == 3


async def test_a_dry_run_writes_only_its_run_row(runtime: Runtime) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(3)], cursor="c1")
    with counting_writes(runtime.engine) as writes:
        result = await run_sync(runtime, DeviceSyncJob(source), dry_run=True)
    assert result.status == "dry_run" and result.counts == {"new": 3}
    assert writes.count and all(
        statement.split()[:3] in (["INSERT", "INTO", "sync_runs"], ["UPDATE", "sync_runs", "SET"])
        for statement in writes.statements
    )
    (run,) = await _rows(runtime, m.SyncRun)
    assert (run.status, run.dry_run, run.cursor, run.counts) == ("dry_run", True, None, {"new": 3})
    assert await _serials(runtime) == {}


async def test_a_run_a_dead_process_left_running_is_closed_as_failed(runtime: Runtime) -> None:
    async with runtime.stores() as store:
        store.session.add(
            m.SyncRun(
                source="google",
                trigger="nightly",
                dry_run=False,
                status="running",
                started_at=runtime.clock.now(),
                counts={},
                sample=[],
                removals=0,
                base=0,
            )
        )
        await store.commit()
    await run_sync(runtime, DeviceSyncJob(ListedSource("google", [])))
    runs = await _rows(runtime, m.SyncRun)
    assert [r.status for r in runs] == ["failed", "no_changes"]
    assert "stopped before it finished" in (runs[0].error or "")
