"""The daily billing run: reminders, status progression and auto-cancel, each exactly once.

The rules are `workflows.billing`; this module feeds them and has what they decide written
by the run's statements (`storage.billing_run_queries`).

- Streamed: candidates come from one indexed query, a batch at a time by invoice id, so memory
  does not grow with the number of invoices. Each batch is one transaction.
- Exactly once: every step is first claimed in `billing_steps`, unique on (invoice, step, due
  date, epoch); only a claimed step changes the invoice and queues its emails, in the same
  transaction. A rerun, a second process or a rerun after a crash claims nothing twice.
- Digests: a run's emails wait as "pending" notices until every batch is done; then a guardian
  with several gets one digest, the others their own email, and the outbox takes them.
- One at a time: the run holds `storage.run_lock.exclusive` for its whole length.
- Payment plans: an invoice with installments is left out of the date-driven query and decided
  on its own pass, due when its current installment is (`workflows.payment_plans.plan_facts`);
  that pass also flags each missed installment once, with its email and Slack alert.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from services.batched import BATCH_SIZE, BatchedJob, BatchHook
from storage import models as m
from storage.billing_run_queries import (
    AUTOMATION_LABEL,
    DIGEST_TEMPLATE,
    DIGESTED,
    SLACK_RUN_KIND,
    already_taken,
    billing_state,
    candidates,
    guardians_of,
    guardians_with_several_pending,
    log_steps,
    mark_run_completed,
    mark_run_started,
    note_installment,
    plan_candidates,
    queue_digests,
    release_single_notices,
    reloaded_invoice,
    run_totals,
    take_steps,
)
from storage.db import DbSession, Engine, Sessions
from storage.payment_plans import current_notice_facts, flag_missed, plan_paid_for, plans_of
from storage.run_lock import exclusive
from storage.uow import SqlUnitOfWork
from workflows.billing import (
    Action,
    InvoiceFacts,
    PauseCalendar,
    RunTotals,
    RunWindow,
    Step,
    candidate_filter,
    decide,
    notice_day,
    run_window,
    summarise_steps,
)
from workflows.billing_settings import BillingSettings
from workflows.clock import Clock, local_date
from workflows.errors import ValidationError
from workflows.i18n import DEFAULT_LANGUAGE, _, staff_reading
from workflows.invoice_updates import UpdateReason, notify_amount_change
from workflows.payment_plans import (
    missed_installments,
    plan_billing_settings,
    plan_facts,
    schedule_of,
)
from workflows.ports import Context

__all__ = [
    "AUTOMATION_LABEL",
    "DIGESTED",
    "DIGEST_TEMPLATE",
    "LOCK_NAME",
    "SLACK_RUN_KIND",
    "BillingRunner",
    "PlannedStep",
    "RunResult",
    "run_totals",
    "totals_from_payload",
    "totals_payload",
]

log = logging.getLogger("devicecare.billing")

LOCK_NAME = "billing-run"


@dataclass(frozen=True)
class PlannedStep:
    """One step as the dry run (or the run's log) describes it."""

    invoice_id: int
    number: str
    step: str
    from_status: str
    to_status: str | None
    recipients: int
    days_overdue: int | None


@dataclass
class RunResult:
    day: date
    ran: bool
    message: str
    dry_run: bool = False
    totals: RunTotals | None = None
    planned: list[PlannedStep] = field(default_factory=list)


class BillingRunner(BatchedJob):
    """Runs (or previews) one billing day against the store.

    `after_batch` is told how many steps each batch took.
    """

    def __init__(
        self,
        engine: Engine,
        sessions: Sessions,
        clock: Clock,
        tz: ZoneInfo,
        *,
        mail_domain: str,
        batch_size: int = BATCH_SIZE,
        after_batch: BatchHook | None = None,
    ) -> None:
        super().__init__(
            sessions,
            clock,
            tz,
            mail_domain=mail_domain,
            batch_size=batch_size,
            after_batch=after_batch,
        )
        self.engine = engine

    async def run(self, day: date | None = None, *, dry_run: bool = False) -> RunResult:
        day = day or self.today()
        if dry_run:
            return await self._preview(day)
        if day > self.today():
            # Running a future day would send its reminders early and mark it done.
            raise ValidationError(
                _(
                    "{day} is in the future; run today or an earlier day, "
                    "or preview it with a dry run.",
                    day=day.isoformat(),
                ),
                field="day",
            )
        async with exclusive(self.engine, LOCK_NAME) as held:
            if not held:
                return RunResult(day, ran=False, message=_("Another billing run is in progress."))
            return await self._run(day)

    # --- the run ------------------------------------------------------------------------------

    async def _run(self, day: date) -> RunResult:
        settings, pauses, window = await self._start(day)
        if pauses.is_paused(day):
            totals = await self._finish(window, paused=True)
            return RunResult(day, ran=True, message=_("Billing is paused today."), totals=totals)
        flt = candidate_filter(settings, window)
        after_id = 0
        while True:
            async with self.sessions() as session, session.begin():
                rows = await candidates(session, flt, after_id, limit=self.batch_size, lock=True)
                if not rows:
                    break
                after_id = rows[-1].id
                decided = self._decide(rows, settings, window, pauses)
                taken = await self._take(session, decided, window.day)
            if self.after_batch is not None:
                await self.after_batch(taken)
        await self._run_plans(settings, window, pauses)
        await self._release_pending(day)
        totals = await self._finish(window, paused=False)
        return RunResult(day, ran=True, message=_describe(totals), totals=totals)

    async def _start(self, day: date) -> tuple[BillingSettings, PauseCalendar, RunWindow]:
        async with self.sessions() as session, session.begin():
            settings, pauses, last = await billing_state(session, day)
            window = run_window(day, last)
            await mark_run_started(session, window, self.clock.now())
        return settings, pauses, window

    def _decide(
        self,
        rows: Sequence[Any],
        settings: BillingSettings,
        window: RunWindow,
        pauses: PauseCalendar,
    ) -> list[tuple[Any, Action]]:
        decided: list[tuple[Any, Action]] = []
        for row in rows:
            action = decide(self._facts(row), settings, window.day, window.covered_since, pauses)
            if action is not None:
                decided.append((row, action))
        return decided

    def _facts(self, row: Any) -> InvoiceFacts:
        return InvoiceFacts(
            id=row.id,
            status=row.status,
            due_date=row.due_date,
            created_on=local_date(row.created_at, self.tz),
            total_cents=row.total_cents,
            paid_cents=row.paid_cents,
            waived_cents=row.waived_cents,
            automation_enabled=row.automation_enabled,
            epoch=row.automation_epoch,
            final_notice_on=row.final_notice_on,
            notice_on=notice_day(row.notice_sent_at, row.notice_queued_at, self.tz),
        )

    def _decide_plans(
        self,
        rows: Sequence[Any],
        plans: dict[int, list[m.Installment]],
        settings: BillingSettings,
        window: RunWindow,
        pauses: PauseCalendar,
    ) -> list[tuple[Any, Action]]:
        """`_decide` for invoices on a plan: due when their current installment is."""
        settings = plan_billing_settings(settings)
        decided: list[tuple[Any, Action]] = []
        for row in rows:
            installments = plans.get(row.id)
            if not installments:
                continue
            facts = plan_facts(
                self._facts(row), schedule_of(installments), plan_paid_for(row, installments)
            )
            action = decide(facts, settings, window.day, window.covered_since, pauses)
            if action is not None:
                decided.append((row, action))
        return decided

    async def _take(
        self, session: DbSession, decided: Sequence[tuple[Any, Action]], day: date
    ) -> int:
        """Claim each decided step once and write what the claimed ones do."""
        if not decided:
            return 0
        now = self.clock.now()
        claimed = await take_steps(session, decided, day, now, mail_domain=self.mail_domain)
        if not claimed:
            return 0
        await self._tell_cancelled(
            session,
            [
                action.invoice_id
                for _row, action in decided
                if action.step is Step.AUTO_CANCEL and action.invoice_id in claimed
            ],
        )
        await log_steps(session, decided, claimed, day, now)
        return len(claimed)

    async def _tell_cancelled(self, session: DbSession, cancelled: Sequence[int]) -> None:
        """A family told about an invoice hears once that it was cancelled (the same
        `invoice_updated` notice a cancellation by staff sends). Auto-cancels are few a day,
        so each goes through the use case's own rule rather than a set-based statement."""
        if not cancelled:
            return
        store = SqlUnitOfWork(session, self.clock, mail_domain=self.mail_domain)
        ctx = Context(store=store, clock=self.clock, tz=self.tz)
        for invoice_id in cancelled:
            invoice = await reloaded_invoice(session, invoice_id)
            if invoice is None:
                continue
            await notify_amount_change(
                ctx,
                invoice,
                # What it charged before: cancelling changes none of these columns.
                old_cents=invoice.total_cents - invoice.waived_cents - invoice.refunded_cents,
                reason=UpdateReason.CANCELLED,
                cause="auto-cancel",
                note="cancelled automatically after the final notice",
            )

    # --- invoices on a payment plan -----------------------------------------------------------

    async def _run_plans(
        self, settings: BillingSettings, window: RunWindow, pauses: PauseCalendar
    ) -> None:
        """Flag missed installments (once each), then take each plan invoice's step."""
        after_id = 0
        while True:
            async with self.sessions() as session, session.begin():
                rows = await plan_candidates(session, after_id, limit=self.batch_size, lock=True)
                if not rows:
                    break
                after_id = rows[-1].id
                plans = await plans_of(session, [r.id for r in rows])
                await self._flag_missed(session, rows, plans, window.day, pauses)
                decided = self._decide_plans(rows, plans, settings, window, pauses)
                taken = await self._take(session, decided, window.day)
                await self._note_installments(session, decided, plans, window.day)
            if self.after_batch is not None:
                await self.after_batch(taken)

    async def _flag_missed(
        self,
        session: DbSession,
        rows: Sequence[Any],
        plans: dict[int, list[m.Installment]],
        day: date,
        pauses: PauseCalendar,
    ) -> None:
        now = self.clock.now()
        for row in rows:
            installments = plans.get(row.id) or []
            missed = missed_installments(
                schedule_of(installments), plan_paid_for(row, installments), day, pauses=pauses
            )
            for state in missed:
                installment = installments[state.position - 1]
                if installment.missed_on is not None:
                    continue
                await flag_missed(
                    session,
                    invoice=row,
                    installment=installment,
                    state=state,
                    rows=installments,
                    day=day,
                    now=now,
                    mail_domain=self.mail_domain,
                )

    async def _note_installments(
        self,
        session: DbSession,
        decided: Sequence[tuple[Any, Action]],
        plans: dict[int, list[m.Installment]],
        day: date,
    ) -> None:
        """The run's notices about a plan invoice name the installment they are about."""
        for row, action in decided:
            if action.template is None:
                continue
            facts = current_notice_facts(row, plans.get(row.id) or [])
            if facts is None:
                continue
            await note_installment(
                session, action.key, day, {"step": action.step_name, "installment": facts}
            )

    # --- digests: one email per guardian per day ---------------------------------------------

    async def _release_pending(self, day: date) -> None:
        """Turn pending run notices into emails: a digest where a guardian has several.

        Set-based, so it costs a few statements whatever the number of notices: guardians with
        one pending notice get it queued in one UPDATE and one INSERT … SELECT into the outbox;
        the others are grouped a chunk of guardians at a time.
        """
        async with self.sessions() as session, session.begin():
            await release_single_notices(session, self.clock.now())
        after = 0
        while True:
            async with self.sessions() as session, session.begin():
                guardian_ids = await guardians_with_several_pending(session, after)
                if not guardian_ids:
                    return
                after = guardian_ids[-1]
                await queue_digests(
                    session, day, guardian_ids, self.clock.now(), mail_domain=self.mail_domain
                )

    # --- finishing ----------------------------------------------------------------------------

    async def _finish(self, window: RunWindow, *, paused: bool) -> RunTotals:
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            totals = await run_totals(session, window, paused=paused)
            # One digest per day in Slack; a rerun updates the stored summary only.
            await mark_run_completed(
                session,
                window.day,
                now,
                paused=paused,
                summary=totals_payload(totals),
                post_to_slack=not paused,
            )
        with staff_reading(DEFAULT_LANGUAGE):  # the log stays in English
            described = _describe(totals)
        log.info("billing run for %s: %s", window.day, described)
        return totals

    # --- the dry run --------------------------------------------------------------------------

    async def _preview(self, day: date) -> RunResult:
        async with self.sessions() as session:
            settings, pauses, last = await billing_state(session, day)
            window = run_window(day, last)
            if pauses.is_paused(day):
                return RunResult(
                    day,
                    ran=False,
                    dry_run=True,
                    message=_("Billing is paused that day; nothing would happen."),
                )
            flt = candidate_filter(settings, window)
            planned: list[PlannedStep] = []
            per_guardian: Counter[int] = Counter()
            after_id = 0
            steps: Counter[str] = Counter()
            not_emailed = 0
            plan_after_id = 0
            while True:
                rows = await candidates(session, flt, after_id, limit=self.batch_size, lock=False)
                if rows:
                    after_id = rows[-1].id
                    decided = self._decide(rows, settings, window, pauses)
                else:
                    rows = await plan_candidates(
                        session, plan_after_id, limit=self.batch_size, lock=False
                    )
                    if not rows:
                        break
                    plan_after_id = rows[-1].id
                    plans = await plans_of(session, [r.id for r in rows])
                    decided = self._decide_plans(rows, plans, settings, window, pauses)
                taken_keys = await already_taken(session, [a for _r, a in decided])
                guardians = await guardians_of(
                    session, [r.student_id for r, a in decided if a.template is not None]
                )
                for row, action in decided:
                    if action.key in taken_keys:
                        continue
                    sent_to = (
                        guardians.get(row.student_id, ()) if action.template is not None else ()
                    )
                    for guardian_id, _address in sent_to:
                        per_guardian[guardian_id] += 1
                    if action.template is not None and not sent_to:
                        not_emailed += 1
                    steps[action.step_name] += 1
                    planned.append(
                        PlannedStep(
                            invoice_id=row.id,
                            number=row.number,
                            step=action.step_name,
                            from_status=row.status,
                            to_status=None
                            if action.new_status is None
                            else action.new_status.value,
                            recipients=len(sent_to),
                            days_overdue=action.days_overdue,
                        )
                    )
        reminders, advanced, cancelled = summarise_steps(list(steps.items()))
        emails = len(per_guardian)  # one email per guardian: alone or as a digest
        totals = RunTotals(
            day=day,
            covered_since=window.covered_since,
            reminders_by_step=reminders,
            advanced=advanced,
            auto_cancelled=cancelled,
            emails_queued=emails,
            digests=sum(1 for n in per_guardian.values() if n > 1),
            not_emailed=not_emailed,
        )
        return RunResult(
            day, ran=False, dry_run=True, message=_describe(totals), totals=totals, planned=planned
        )


def totals_payload(t: RunTotals) -> dict[str, Any]:
    """RunTotals as JSON for the run's row and the Slack digest."""
    return {
        "day": t.day.isoformat(),
        "covered_since": t.covered_since.isoformat(),
        "paused": t.paused,
        "reminders_by_step": [list(pair) for pair in t.reminders_by_step],
        "advanced": [list(pair) for pair in t.advanced],
        "auto_cancelled": t.auto_cancelled,
        "emails_queued": t.emails_queued,
        "digests": t.digests,
        "not_emailed": t.not_emailed,
        "failures": list(t.failures),
    }


def totals_from_payload(p: dict[str, Any]) -> RunTotals:
    return RunTotals(
        day=date.fromisoformat(p["day"]),
        covered_since=date.fromisoformat(p["covered_since"]),
        paused=bool(p.get("paused")),
        reminders_by_step=tuple((str(s), int(n)) for s, n in p.get("reminders_by_step", [])),
        advanced=tuple((str(s), int(n)) for s, n in p.get("advanced", [])),
        auto_cancelled=int(p.get("auto_cancelled", 0)),
        emails_queued=int(p.get("emails_queued", 0)),
        digests=int(p.get("digests", 0)),
        not_emailed=int(p.get("not_emailed", 0)),
        failures=tuple(str(f) for f in p.get("failures", [])),
    )


def _describe(t: RunTotals) -> str:
    if t.paused:
        return _("{day}: paused.", day=t.day)
    advanced = sum(n for _s, n in t.advanced)
    return _(
        "{day}: {reminders} reminder step(s), {advanced} status change(s), "
        "{cancelled} auto-cancelled, {emails} email(s) queued ({digests} digest(s)).",
        day=t.day,
        reminders=t.reminders,
        advanced=advanced,
        cancelled=t.auto_cancelled,
        emails=t.emails_queued,
        digests=t.digests,
    )
