"""One sync run of one source, from the lock to the stored result.

1. The source's lock (storage.run_lock): a sync started while another of the same source runs
   says so and does nothing.
2. A sync_runs row, 'running', committed at once so `devicecare sync status` shows it.
3. The source is read in full (or from the last cursor). A source that stays down or refuses
   the credentials fails the run here, before anything is compared or written.
4. One transaction compares and applies: a dry run, or a run that would take away more than
   SYNC_MAX_CHANGE_SHARE of the source's records, rolls back and writes only its run row (and
   the alert); any error rolls back everything the run wrote. The run's result and its Slack
   message (through the outbox) commit together with what it applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.runtime import Runtime
from bot.sync.credentials import CredentialError
from bot.sync.http import SourceUnavailable
from bot.sync.job import SyncJob
from storage.run_lock import exclusive
from storage.sync_runs import close_interrupted, finish_run, last_cursor, start_run
from storage.uow import SqlUnitOfWork
from workflows.i18n import _
from workflows.sync import SOURCE_LABELS, SyncPlan, too_many_removals

log = logging.getLogger("devicecare.sync")

SYNC_SUMMARY_KIND = "slack.sync_summary"
SYNC_ALERT_KIND = "slack.sync_alert"
ERROR_LIMIT = 500
Trigger = Literal["nightly", "cli"]
# 'busy': another run of the same source held the lock; nothing was recorded.
Status = Literal["applied", "no_changes", "dry_run", "held", "failed", "busy"]


def lock_name(source: str) -> str:
    return f"sync:{source}"


def label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


@dataclass
class SyncRunResult:
    source: str
    status: Status
    message: str
    run_id: int | None = None
    plan: SyncPlan | None = None
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


def _payload(source: str, run_id: int, trigger: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"source": source, "run_id": run_id, "trigger": trigger, "status": status, **extra}


def _plan_payload(plan: SyncPlan) -> dict[str, Any]:
    return {
        "counts": dict(plan.counts),
        "sample": list(plan.sample),
        "removals": plan.removals,
        "base": plan.base,
    }


async def run_sync(
    runtime: Runtime,
    job: SyncJob,
    *,
    dry_run: bool = False,
    trigger: Trigger = "cli",
    allow_removals: bool = False,
) -> SyncRunResult:
    """Run `job` once, holding its source's lock; never raises for a source's failure."""
    source = job.source
    async with exclusive(runtime.engine, lock_name(source)) as held:
        if not held:
            message = _(
                "A sync from {source} is already running; this one did nothing.",
                source=label(source),
            )
            log.info("sync: %s", message)
            return SyncRunResult(source, "busy", message)
        return await _Run(runtime, job, dry_run, trigger, allow_removals).run()


class _Run:
    def __init__(
        self, runtime: Runtime, job: SyncJob, dry_run: bool, trigger: Trigger, allow: bool
    ) -> None:
        self.runtime = runtime
        self.job = job
        self.source = job.source
        self.dry_run = dry_run
        self.trigger = trigger
        self.allow = allow
        self.run_id = 0

    def now(self) -> Any:
        return self.runtime.clock.now()

    async def run(self) -> SyncRunResult:
        async with self.runtime.stores() as uow:
            await close_interrupted(uow, self.source, self.now())
            self.run_id = await start_run(uow, self.source, self.trigger, self.dry_run, self.now())
            cursor = await last_cursor(uow, self.source)
            await uow.commit()
        try:
            snapshot = await self.job.read(cursor)
        except (SourceUnavailable, CredentialError) as exc:
            return await self.failed(f"{label(self.source)} couldn't be read: {_short(exc)}")
        except Exception as exc:  # noqa: BLE001 - reported as the run's failure, then logged
            log.exception("sync from %s: reading failed", self.source)
            return await self.failed(f"reading {label(self.source)} failed: {_short(exc)}")
        try:
            return await self.compare_and_apply(snapshot)
        except Exception as exc:  # noqa: BLE001 - rolled back; the run is recorded as failed
            log.exception("sync from %s failed; nothing of it was applied", self.source)
            return await self.failed(f"{type(exc).__name__}: {_short(exc)}")

    async def compare_and_apply(self, snapshot: Any) -> SyncRunResult:
        async with self.runtime.stores() as uow:
            now = self.now()
            plan = await self.job.compare(uow, snapshot, now)
            if self.dry_run:
                await uow.rollback()
                await self.finish(uow, "dry_run", plan)
                return self.result("dry_run", plan, self.planned_message(plan))
            share = self.runtime.settings.sync_max_change_share
            if not self.allow and too_many_removals(plan, share):
                await uow.rollback()
                message = self.held_message(plan, share)
                alert = _payload(
                    self.source,
                    self.run_id,
                    self.trigger,
                    "held",
                    max_share=share,
                    message=message,
                    **_plan_payload(plan),
                )
                await self.finish(uow, "held", plan, alert=alert)
                return self.result("held", plan, message)
            status: Status = "applied" if plan.changes else "no_changes"
            if plan.changes:
                await self.job.apply(uow, snapshot, plan, now)
            summary = None
            if self.trigger == "nightly":
                summary = _payload(
                    self.source, self.run_id, self.trigger, status, **_plan_payload(plan)
                )
            cursor = getattr(snapshot, "cursor", None)
            await self.finish(uow, status, plan, cursor=cursor, summary=summary)
            return self.result(status, plan, self.applied_message(plan, status))

    async def finish(
        self,
        uow: SqlUnitOfWork,
        status: str,
        plan: SyncPlan | None,
        *,
        cursor: str | None = None,
        error: str | None = None,
        alert: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """The run's row and its Slack message, committed with whatever the unit of work holds."""
        now = self.now()
        await finish_run(uow, self.run_id, status, now, plan=plan, cursor=cursor, error=error)
        # The run id makes each key unique: no lookup for an earlier one.
        if alert is not None:
            key = f"sync:{self.run_id}:alert"
            await uow.outbox.enqueue(SYNC_ALERT_KIND, key, alert, fresh_key=True)
        if summary is not None:
            key = f"sync:{self.run_id}:summary"
            await uow.outbox.enqueue(SYNC_SUMMARY_KIND, key, summary, fresh_key=True)
        await uow.commit()

    async def failed(self, error: str) -> SyncRunResult:
        log.warning("sync from %s failed: %s", self.source, error)
        alert = _payload(self.source, self.run_id, self.trigger, "failed", error=error)
        async with self.runtime.stores() as uow:
            await self.finish(uow, "failed", None, error=error, alert=alert)
        message = _(
            "The sync from {source} failed; nothing was changed. {error}",
            source=label(self.source),
            error=error,
        )
        return SyncRunResult(self.source, "failed", message, self.run_id, error=error)

    def result(self, status: Status, plan: SyncPlan, message: str) -> SyncRunResult:
        log.info("sync from %s: %s", self.source, message)
        return SyncRunResult(self.source, status, message, self.run_id, plan, counts=plan.counts)

    def planned_message(self, plan: SyncPlan) -> str:
        if not plan.changes:
            return _("Dry run of {source}: nothing would change.", source=label(self.source))
        return _(
            "Dry run of {source}: {changes} changes; nothing was changed.",
            source=label(self.source),
            changes=plan.changes,
        )

    def applied_message(self, plan: SyncPlan, status: Status) -> str:
        if status == "no_changes":
            return _("{source} is in sync: nothing changed.", source=label(self.source))
        return _(
            "Synced {source}: {changes} changes applied.",
            source=label(self.source),
            changes=plan.changes,
        )

    def held_message(self, plan: SyncPlan, share: float) -> str:
        return held_text(self.source, plan.removals, plan.base, share)


def held_text(source: str, removals: int, base: int, share: float) -> str:
    """Why a run stopped, and how to apply it anyway: said in the CLI and in Slack."""
    taken = removals / base if base else 1.0
    return _(
        "The sync from {label} was held: it would retire or unassign {removals} of "
        "{base} records ({taken}), more than the {share} a run may "
        "(SYNC_MAX_CHANGE_SHARE). Nothing was changed. Check the source; if the removals are "
        "right, run `devicecare sync {source} --allow-removals`.",
        label=label(source),
        removals=removals,
        base=base,
        taken=f"{taken:.0%}",
        share=f"{share:.0%}",
        source=source,
    )
