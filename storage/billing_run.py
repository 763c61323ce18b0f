"""The daily billing run: reminders, status progression and auto-cancel, each exactly once.

The rules are `workflows.billing`; this module feeds them and writes what they decide.

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
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import models as m
from storage.notices import NOTICE_KIND, reachable
from storage.outbox import new_message
from storage.payment_plans import current_notice_facts, flag_missed, plan_paid_for, plans_of
from storage.run_lock import exclusive
from storage.uow import SqlUnitOfWork
from workflows.billing import (
    Action,
    CandidateFilter,
    InvoiceFacts,
    PauseCalendar,
    PauseWindow,
    RunTotals,
    RunWindow,
    Step,
    cancel_comment,
    candidate_filter,
    decide,
    notice_day,
    run_window,
    step_key,
    summarise_steps,
)
from workflows.billing_settings import BillingSettings, billing_settings_from
from workflows.clock import Clock, local_date
from workflows.errors import ValidationError
from workflows.invoice_updates import UpdateReason, notify_amount_change
from workflows.invoices import OPEN_STATUSES, InvoiceStatus, NoticeTemplate
from workflows.payment_plans import (
    missed_installments,
    plan_billing_settings,
    plan_facts,
    schedule_of,
)
from workflows.ports import Context

log = logging.getLogger("devicecare.billing")

LOCK_NAME = "billing-run"
DIGEST_TEMPLATE = "billing_digest"
DIGESTED = "digested"  # a member notice, sent inside its digest
SLACK_RUN_KIND = "slack.billing_run"
AUTOMATION_LABEL = "DeviceCare automation"
BATCH_SIZE = 2000
_INVOICES = cast(Table, m.Invoice.__table__)
_NOTICES = cast(Table, m.Notice.__table__)
_STEPS = cast(Table, m.BillingStep.__table__)
_ACTIVITY = cast(Table, m.ActivityEntry.__table__)
_OUTBOX = cast(Table, m.OutboxMessage.__table__)
_GUARDIANS = cast(Table, m.Guardian.__table__)
_GUARDIANSHIPS = cast(Table, m.Guardianship.__table__)
_NOTICE_COLUMNS = [
    "invoice_id", "guardian_id", "template", "dedupe_key", "to_address", "message_id",
    "context", "status", "created_at", "run_day",
]  # fmt: skip
_OUTBOX_COLUMNS = [
    "kind", "dedupe_key", "payload", "status", "attempts", "next_attempt_at", "created_at",
]  # fmt: skip
_STEP_TEMPLATES = {
    Step.FIRST: NoticeTemplate.OVERDUE_FIRST,
    Step.SECOND: NoticeTemplate.OVERDUE_SECOND,
    Step.FINAL: NoticeTemplate.OVERDUE_FINAL,
}
GUARDIAN_BATCH = 500


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


BatchHook = Callable[[int], Awaitable[None]]


class BillingRunner:
    """Runs (or previews) one billing day against the store."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        tz: ZoneInfo,
        *,
        mail_domain: str,
        batch_size: int = BATCH_SIZE,
        after_batch: BatchHook | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.clock = clock
        self.tz = tz
        self.mail_domain = mail_domain
        self.batch_size = batch_size
        # Called after each committed batch with the number of steps it took (progress, tests).
        self.after_batch = after_batch
        self.is_pg = engine.dialect.name == "postgresql"

    def today(self) -> date:
        return local_date(self.clock.now(), self.tz)

    async def run(self, day: date | None = None, *, dry_run: bool = False) -> RunResult:
        day = day or self.today()
        if dry_run:
            return await self._preview(day)
        if day > self.today():
            # Running a future day would send its reminders early and mark it done.
            raise ValidationError(
                f"{day.isoformat()} is in the future; run today or an earlier day, "
                "or preview it with a dry run.",
                field="day",
            )
        async with exclusive(self.engine, LOCK_NAME) as held:
            if not held:
                return RunResult(day, ran=False, message="Another billing run is in progress.")
            return await self._run(day)

    # --- the run ------------------------------------------------------------------------------

    async def _run(self, day: date) -> RunResult:
        settings, pauses, window = await self._start(day)
        if pauses.is_paused(day):
            totals = await self._finish(window, paused=True)
            return RunResult(day, ran=True, message="Billing is paused today.", totals=totals)
        flt = candidate_filter(settings, window)
        after_id = 0
        while True:
            async with self.sessions() as session, session.begin():
                rows = await self._candidates(session, flt, after_id, lock=True)
                if not rows:
                    break
                after_id = rows[-1].id
                taken = await self._apply(session, rows, settings, window, pauses)
            if self.after_batch is not None:
                await self.after_batch(taken)
        await self._run_plans(settings, window, pauses)
        await self._release_pending(day)
        totals = await self._finish(window, paused=False)
        return RunResult(day, ran=True, message=_describe(totals), totals=totals)

    async def _start(self, day: date) -> tuple[BillingSettings, PauseCalendar, RunWindow]:
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            settings, pauses, last = await self._state(session, day)
            window = run_window(day, last)
            run = await session.get(m.BillingRun, day)
            if run is None:
                session.add(
                    m.BillingRun(
                        day=day,
                        covered_since=window.covered_since,
                        status="running",
                        paused=False,
                        started_at=now,
                    )
                )
            else:
                run.status, run.started_at, run.finished_at = "running", now, None
                run.covered_since = window.covered_since
        return settings, pauses, window

    async def _state(
        self, session: AsyncSession, day: date
    ) -> tuple[BillingSettings, PauseCalendar, date | None]:
        record = await session.get(m.DistrictSettings, 1)
        settings = billing_settings_from(record) if record is not None else BillingSettings()
        windows = (await session.execute(select(m.BillingPause))).scalars()
        pauses = PauseCalendar(PauseWindow(w.starts_on, w.ends_on, w.reason) for w in windows)
        last = (
            await session.execute(
                select(func.max(m.BillingRun.day)).where(
                    m.BillingRun.status == "completed", m.BillingRun.day < day
                )
            )
        ).scalar()
        # A day that started but never completed (a crash, a failed first-ever run) is owed
        # too: cover from the day before the earliest such day after the last completed one.
        unfinished = select(func.min(m.BillingRun.day)).where(
            m.BillingRun.status != "completed", m.BillingRun.day < day
        )
        if last is not None:
            unfinished = unfinished.where(m.BillingRun.day > last)
        first_unfinished = (await session.execute(unfinished)).scalar()
        if first_unfinished is not None:
            last = first_unfinished - timedelta(days=1)
        return settings, pauses, last

    async def _candidates(
        self, session: AsyncSession, flt: CandidateFilter, after_id: int, *, lock: bool
    ) -> list[Any]:
        inv = m.Invoice
        cases: list[Any] = [
            and_(inv.due_date > low, inv.due_date <= high) for low, high in flt.pre_due_ranges
        ]
        cases += [
            and_(inv.status == status, inv.due_date <= limit)
            for status, limit in flt.overdue_before.items()
        ]
        if flt.final_before is not None:
            cases.append(
                and_(
                    inv.status == InvoiceStatus.FINAL,
                    or_(inv.final_notice_on.is_(None), inv.final_notice_on < flt.final_before),
                )
            )
        if flt.cancel_final_on_or_before is not None:
            cases.append(
                and_(
                    inv.status == InvoiceStatus.COLLECTIONS,
                    or_(
                        inv.final_notice_on.is_(None),
                        inv.final_notice_on <= flt.cancel_final_on_or_before,
                    ),
                )
            )
        if not cases:
            return []
        conditions = [
            inv.id > after_id,
            inv.automation_enabled.is_(True),
            inv.due_date.is_not(None),
            inv.status.in_(sorted(s.value for s in OPEN_STATUSES)),
            inv.paid_cents + inv.waived_cents < inv.total_cents,
            or_(*cases),
            # Invoices on a payment plan follow their installments (`_plan_candidates`).
            ~_on_plan(inv.id),
            # The family hasn't been told yet: a decision on the amount is pending.
            inv.notice_hold.is_(None),
        ]
        if flt.stop_on_partial:
            conditions.append(inv.paid_cents == 0)
        stmt = (
            select(*_candidate_columns()).where(*conditions).order_by(inv.id).limit(self.batch_size)
        )
        if lock and self.is_pg:
            stmt = stmt.with_for_update(of=inv)
        return list((await session.execute(stmt)).all())

    async def _plan_candidates(
        self, session: AsyncSession, after_id: int, *, lock: bool
    ) -> list[Any]:
        """Open invoices on a payment plan, with automation on: each is decided exactly (there
        are few next to the invoices the date filter above narrows down)."""
        inv = m.Invoice
        stmt = (
            select(*_candidate_columns())
            .where(
                inv.id > after_id,
                inv.automation_enabled.is_(True),
                inv.status.in_(sorted(s.value for s in OPEN_STATUSES)),
                inv.paid_cents + inv.waived_cents < inv.total_cents,
                _on_plan(inv.id),
                inv.notice_hold.is_(None),
            )
            .order_by(inv.id)
            .limit(self.batch_size)
        )
        if lock and self.is_pg:
            stmt = stmt.with_for_update(of=inv)
        return list((await session.execute(stmt)).all())

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

    async def _apply(
        self,
        session: AsyncSession,
        rows: Sequence[Any],
        settings: BillingSettings,
        window: RunWindow,
        pauses: PauseCalendar,
    ) -> int:
        return await self._take(session, self._decide(rows, settings, window, pauses), window.day)

    async def _take(
        self, session: AsyncSession, decided: Sequence[tuple[Any, Action]], day: date
    ) -> int:
        """Claim each decided step once and write what the claimed ones do."""
        if not decided:
            return 0
        now = self.clock.now()
        step_rows = [
            {
                "invoice_id": action.invoice_id,
                "step": action.step_name,
                "due_date": action.due_date,
                "epoch": action.epoch,
                "run_day": day,
                "from_status": row.status,
                "to_status": None if action.new_status is None else action.new_status.value,
                "days_overdue": action.days_overdue,
                "recipients": row.recipients if action.template is not None else 0,
                "created_at": now,
            }
            for row, action in decided
        ]
        insert = pg_insert if self.is_pg else sqlite_insert
        claim = (
            insert(_STEPS)
            .on_conflict_do_nothing(index_elements=["invoice_id", "step", "due_date", "epoch"])
            .returning(_STEPS.c.id, _STEPS.c.invoice_id)
        )
        claimed = {
            invoice_id: step_id
            for step_id, invoice_id in (await session.execute(claim, step_rows)).all()
        }
        if not claimed:
            return 0
        step_ids = sorted(claimed.values())
        # The claimed steps drive the rest in set-based statements, so the work per invoice
        # is done by the database rather than by building rows here.
        await session.execute(self._queue_notices(step_ids, day, now))
        await session.execute(_advance_invoices(step_ids, day, now))
        await self._tell_cancelled(
            session,
            [
                action.invoice_id
                for _row, action in decided
                if action.step is Step.AUTO_CANCEL and action.invoice_id in claimed
            ],
        )
        activity = [
            _activity_row(row, action, day, now)
            for row, action in decided
            if action.invoice_id in claimed and action.new_status is not None
        ]
        if activity:
            await session.execute(_ACTIVITY.insert(), activity)
        return len(claimed)

    async def _tell_cancelled(self, session: AsyncSession, cancelled: Sequence[int]) -> None:
        """A family told about an invoice hears once that it was cancelled (the same
        `invoice_updated` notice a cancellation by staff sends). Auto-cancels are few a day,
        so each goes through the use case's own rule rather than a set-based statement."""
        if not cancelled:
            return
        store = SqlUnitOfWork(session, self.clock, mail_domain=self.mail_domain)
        ctx = Context(store=store, clock=self.clock, tz=self.tz)
        for invoice_id in cancelled:
            invoice = await session.get(m.Invoice, invoice_id, populate_existing=True)
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
                rows = await self._plan_candidates(session, after_id, lock=True)
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
        session: AsyncSession,
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
        session: AsyncSession,
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
            await session.execute(
                update(_NOTICES)
                .where(
                    _NOTICES.c.dedupe_key == action.key,
                    _NOTICES.c.run_day == day,
                    _NOTICES.c.status == "pending",
                )
                .values(context={"step": action.step_name, "installment": facts})
            )

    def _queue_notices(self, step_ids: Sequence[int], day: date, now: datetime) -> Any:
        """INSERT … SELECT: a pending notice per reachable guardian for each emailing step."""
        st, n = _STEPS, _NOTICES
        inv, gs, g = _INVOICES, _GUARDIANSHIPS, _GUARDIANS
        template = case(
            *[(st.c.step == step.value, tmpl.value) for step, tmpl in _STEP_TEMPLATES.items()],
            else_=NoticeTemplate.DUE_REMINDER.value,
        )
        # `workflows.billing.step_key`, spelled in SQL.
        key = (
            literal("billing:")
            + sql_cast(st.c.invoice_id, String)
            + ":"
            + st.c.step
            + ":"
            + sql_cast(st.c.due_date, String)
            + ":"
            + sql_cast(st.c.epoch, String)
        )
        rows = (
            select(
                st.c.invoice_id,
                g.c.id,
                template,
                key,
                g.c.email,
                self._message_id(),
                self._json_object("step", st.c.step),
                literal("pending"),
                literal(now, type_=m.UtcDateTime()),
                literal(day, type_=Date()),
            )
            .select_from(st)
            .join(inv, inv.c.id == st.c.invoice_id)
            .join(gs, gs.c.student_id == inv.c.student_id)
            .join(g, g.c.id == gs.c.guardian_id)
            .where(
                st.c.id.in_(step_ids),
                st.c.step.not_in([Step.COLLECTIONS.value, Step.AUTO_CANCEL.value]),
                reachable(g.c),
            )
        )
        return n.insert().from_select(_NOTICE_COLUMNS, rows)

    # --- digests: one email per guardian per day ---------------------------------------------

    async def _release_pending(self, day: date) -> None:
        """Turn pending run notices into emails: a digest where a guardian has several.

        Set-based, so it costs a few statements whatever the number of notices: guardians with
        one pending notice get it queued in one UPDATE and one INSERT … SELECT into the outbox;
        the others are grouped a chunk of guardians at a time.
        """
        await self._release_singles()
        after = 0
        while True:
            async with self.sessions() as session, session.begin():
                # guardian_id > after leaves out NULLs, released as singles.
                found = (
                    await session.execute(
                        select(m.Notice.guardian_id)
                        .where(m.Notice.status == "pending", m.Notice.guardian_id > after)
                        .group_by(m.Notice.guardian_id)
                        .having(func.count() > 1)
                        .order_by(m.Notice.guardian_id)
                        .limit(GUARDIAN_BATCH)
                    )
                ).scalars()
                guardian_ids = [g for g in found if g is not None]
                if not guardian_ids:
                    return
                after = guardian_ids[-1]
                await self._digest(session, day, guardian_ids)

    async def _release_singles(self) -> None:
        n = _NOTICES
        lone = (
            select(n.c.guardian_id)
            .where(n.c.status == "pending", n.c.guardian_id.is_not(None))
            .group_by(n.c.guardian_id)
            .having(func.count() == 1)
        )
        single = and_(
            n.c.status == "pending",
            or_(n.c.guardian_id.is_(None), n.c.guardian_id.in_(lone)),
        )
        singles = select(n.c.id).where(single).subquery()
        async with self.sessions() as session, session.begin():
            await session.execute(
                _OUTBOX.insert().from_select(_OUTBOX_COLUMNS, self._outbox_rows(singles))
            )
            await session.execute(update(n).where(single).values(status="queued"))

    async def _digest(self, session: AsyncSession, day: date, guardian_ids: list[int]) -> None:
        """One digest per guardian for their pending notices; the members point at it."""
        n, o = _NOTICES, _OUTBOX
        now = literal(self.clock.now(), type_=m.UtcDateTime())
        run_day = literal(day, type_=Date())
        pending = and_(n.c.status == "pending", n.c.guardian_id.in_(guardian_ids))
        members = (
            func.json_agg(aggregate_order_by(n.c.id, n.c.id))
            if self.is_pg
            else func.json_group_array(n.c.id)
        )
        first = func.min(n.c.id)
        digests = (
            select(
                func.min(n.c.invoice_id),
                n.c.guardian_id,
                literal(DIGEST_TEMPLATE),
                literal(f"billing-digest:{day.isoformat()}:") + sql_cast(first, String),
                func.min(n.c.to_address),
                self._message_id(),
                self._json_object("notice_ids", members),
                literal("queued"),
                now,
                run_day,
            )
            .where(pending)
            .group_by(n.c.guardian_id)
        )
        await session.execute(n.insert().from_select(_NOTICE_COLUMNS, digests))
        digest = n.alias("digest")
        digest_of = (
            select(func.max(digest.c.id))
            .where(
                digest.c.status == "queued",
                digest.c.guardian_id == n.c.guardian_id,
                digest.c.template == DIGEST_TEMPLATE,
                digest.c.run_day == run_day,
            )
            .scalar_subquery()
        )
        await session.execute(update(n).where(pending).values(status=DIGESTED, digest_id=digest_of))
        fresh = (
            select(n.c.id)
            .where(
                n.c.status == "queued",
                n.c.guardian_id.in_(guardian_ids),
                n.c.template == DIGEST_TEMPLATE,
                n.c.run_day == run_day,
                ~exists().where(o.c.dedupe_key == literal("notice:") + sql_cast(n.c.id, String)),
            )
            .subquery()
        )
        await session.execute(o.insert().from_select(_OUTBOX_COLUMNS, self._outbox_rows(fresh)))

    def _message_id(self) -> Any:
        """A fresh random Message-ID, made by the database for INSERT … SELECT."""
        if self.is_pg:
            random_hex: Any = func.replace(sql_cast(func.gen_random_uuid(), String), "-", "")
        else:
            random_hex = func.lower(func.hex(func.randomblob(16)))
        return literal("<") + random_hex + literal(f"@{self.mail_domain}>")

    def _json_object(self, key: str, value: Any) -> Any:
        if self.is_pg:
            return func.json_build_object(key, value)
        return func.json_object(key, value)

    def _outbox_rows(self, notices: Any) -> Any:
        """SELECT of an email outbox row for each notice id in `notices` (a subquery)."""
        now = literal(self.clock.now(), type_=m.UtcDateTime())
        return select(
            literal(NOTICE_KIND),
            literal("notice:") + sql_cast(notices.c.id, String),
            self._json_object("notice_id", notices.c.id),
            literal("pending"),
            literal(0),
            now,
            now,
        )

    # --- finishing ----------------------------------------------------------------------------

    async def _finish(self, window: RunWindow, *, paused: bool) -> RunTotals:
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            totals = await run_totals(session, window, paused=paused)
            run = await session.get(m.BillingRun, window.day)
            assert run is not None
            run.status, run.paused, run.finished_at = "completed", paused, now
            run.summary = totals_payload(totals)
            if not paused:
                # One digest per day in Slack; a rerun updates the stored summary only.
                posted = (
                    await session.execute(
                        select(m.OutboxMessage.id).where(
                            m.OutboxMessage.dedupe_key == f"billing-run:{window.day.isoformat()}"
                        )
                    )
                ).first()
                if posted is None:
                    session.add(
                        new_message(
                            SLACK_RUN_KIND,
                            f"billing-run:{window.day.isoformat()}",
                            totals_payload(totals),
                            now,
                        )
                    )
        log.info("billing run for %s: %s", window.day, _describe(totals))
        return totals

    # --- the dry run --------------------------------------------------------------------------

    async def _preview(self, day: date) -> RunResult:
        async with self.sessions() as session:
            settings, pauses, last = await self._state(session, day)
            window = run_window(day, last)
            if pauses.is_paused(day):
                return RunResult(
                    day,
                    ran=False,
                    dry_run=True,
                    message="Billing is paused that day; nothing would happen.",
                )
            flt = candidate_filter(settings, window)
            planned: list[PlannedStep] = []
            per_guardian: Counter[int] = Counter()
            after_id = 0
            steps: Counter[str] = Counter()
            not_emailed = 0
            plan_after_id = 0
            while True:
                rows = await self._candidates(session, flt, after_id, lock=False)
                if rows:
                    after_id = rows[-1].id
                    decided = self._decide(rows, settings, window, pauses)
                else:
                    rows = await self._plan_candidates(session, plan_after_id, lock=False)
                    if not rows:
                        break
                    plan_after_id = rows[-1].id
                    plans = await plans_of(session, [r.id for r in rows])
                    decided = self._decide_plans(rows, plans, settings, window, pauses)
                taken_keys = await _already_taken(session, [a for _r, a in decided])
                guardians = await _guardians_of(
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


# --- queries shared by the run and the reports -------------------------------------------------


async def _guardians_of(
    session: AsyncSession, student_ids: Sequence[int]
) -> dict[int, list[tuple[int, str]]]:
    """student id -> [(guardian id, address)] for guardians who can be emailed."""
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    wanted = sorted(set(student_ids))
    if not wanted:
        return found
    stmt = (
        select(m.Guardianship.student_id, m.Guardian.id, m.Guardian.email)
        .join(m.Guardian, m.Guardian.id == m.Guardianship.guardian_id)
        .where(m.Guardianship.student_id.in_(wanted), reachable(m.Guardian))
        .order_by(m.Guardianship.student_id, m.Guardian.id)
    )
    for student_id, guardian_id, email in (await session.execute(stmt)).all():
        if email:
            found[student_id].append((guardian_id, email))
    return found


async def _already_taken(session: AsyncSession, actions: Sequence[Action]) -> set[str]:
    if not actions:
        return set()
    s = m.BillingStep
    rows = (
        await session.execute(
            select(s.invoice_id, s.step, s.due_date, s.epoch).where(
                s.invoice_id.in_(sorted({a.invoice_id for a in actions}))
            )
        )
    ).all()
    return {step_key(r.invoice_id, r.step, r.due_date, r.epoch) for r in rows}


async def run_totals(session: AsyncSession, window: RunWindow, *, paused: bool) -> RunTotals:
    """The day's figures, counted from what is stored (so a rerun after a crash adds up)."""
    day = window.day
    steps = (
        await session.execute(
            select(m.BillingStep.step, func.count())
            .where(m.BillingStep.run_day == day)
            .group_by(m.BillingStep.step)
        )
    ).all()
    reminders, advanced, cancelled = summarise_steps([(s, n) for s, n in steps])
    not_emailed = (
        await session.execute(
            select(func.count()).where(
                m.BillingStep.run_day == day,
                m.BillingStep.recipients == 0,
                m.BillingStep.step.not_in([Step.COLLECTIONS.value, Step.AUTO_CANCEL.value]),
            )
        )
    ).scalar_one()
    emails = (
        await session.execute(
            select(m.Notice.template, func.count())
            .where(m.Notice.run_day == day, m.Notice.status != "digested")
            .group_by(m.Notice.template)
        )
    ).all()
    by_template = dict(emails)
    since = datetime.combine(window.covered_since, datetime.min.time()).replace(
        tzinfo=ZoneInfo("UTC")
    ) - timedelta(days=1)
    failed = (
        await session.execute(
            select(func.count()).where(m.Notice.status == "failed", m.Notice.created_at >= since)
        )
    ).scalar_one()
    failures: list[str] = []
    if failed:
        failures.append(f"{failed} email(s) could not be delivered since the last run")
    if not_emailed:
        failures.append(f"{not_emailed} invoice(s) had no guardian email address that works")
    return RunTotals(
        day=day,
        covered_since=window.covered_since,
        paused=paused,
        reminders_by_step=reminders,
        advanced=advanced,
        auto_cancelled=cancelled,
        emails_queued=sum(by_template.values()),
        digests=by_template.get(DIGEST_TEMPLATE, 0),
        not_emailed=not_emailed,
        failures=tuple(failures),
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


def _candidate_columns() -> list[Any]:
    inv = m.Invoice
    return [
        inv.id,
        inv.number,
        inv.student_id,
        inv.status,
        inv.due_date,
        inv.created_at,
        inv.total_cents,
        inv.paid_cents,
        inv.waived_cents,
        inv.automation_enabled,
        inv.automation_epoch,
        inv.final_notice_on,
        _reachable_count(inv.student_id).label("recipients"),
        _issued_notice(inv.id, m.Notice.sent_at).label("notice_sent_at"),
        _issued_notice(inv.id, m.Notice.created_at).label("notice_queued_at"),
    ]


def _issued_notice(invoice_id: Any, column: Any) -> Any:
    """The latest time (sent, or queued) of the invoice's own notice to the family."""
    n = m.Notice
    return (
        select(func.max(column))
        .where(n.invoice_id == invoice_id, n.template == NoticeTemplate.INVOICE_ISSUED.value)
        .scalar_subquery()
    )


def _on_plan(invoice_id: Any) -> Any:
    return exists().where(m.Installment.invoice_id == invoice_id)


def _reachable_count(student_id: Any) -> Any:
    gs, g = _GUARDIANSHIPS, _GUARDIANS
    return (
        select(func.count())
        .select_from(gs.join(g, g.c.id == gs.c.guardian_id))
        .where(gs.c.student_id == student_id, reachable(g.c))
        .scalar_subquery()
    )


def _advance_invoices(step_ids: Sequence[int], day: date, now: datetime) -> Any:
    """UPDATE … FROM the claimed steps: new status, final-notice day, cancellation, counts."""
    inv, st = _INVOICES, _STEPS
    at = literal(now, type_=m.UtcDateTime())
    emailed = st.c.recipients > 0
    cancelling = st.c.step == Step.AUTO_CANCEL.value
    return (
        update(inv)
        .where(
            inv.c.id == st.c.invoice_id,
            st.c.id.in_(step_ids),
            inv.c.status == st.c.from_status,
        )
        .values(
            status=func.coalesce(st.c.to_status, inv.c.status),
            final_notice_on=case(
                (st.c.step == Step.FINAL.value, literal(day, type_=Date())),
                else_=inv.c.final_notice_on,
            ),
            auto_cancelled=case((cancelling, true()), else_=inv.c.auto_cancelled),
            cancelled_at=case((cancelling, at), else_=inv.c.cancelled_at),
            reminder_count=inv.c.reminder_count + case((emailed, 1), else_=0),
            last_reminder_at=case((emailed, at), else_=inv.c.last_reminder_at),
        )
    )


def _activity_row(row: Any, action: Action, day: date, now: datetime) -> dict[str, Any]:
    assert action.new_status is not None
    cancelled = action.step is Step.AUTO_CANCEL
    return {
        "at": now,
        "actor_staff_id": None,
        "actor_label": AUTOMATION_LABEL,
        "entity_type": "invoice",
        "entity_id": action.invoice_id,
        "action": "auto_cancelled" if cancelled else "status_advanced",
        "before": {"status": row.status},
        "after": {"status": action.new_status.value, "step": action.step_name},
        "comment": cancel_comment(day, action.days_overdue or 0) if cancelled else None,
    }


def _describe(t: RunTotals) -> str:
    if t.paused:
        return f"{t.day}: paused."
    advanced = sum(n for _s, n in t.advanced)
    return (
        f"{t.day}: {t.reminders} reminder step(s), {advanced} status change(s), "
        f"{t.auto_cancelled} auto-cancelled, {t.emails_queued} email(s) queued "
        f"({t.digests} digest(s))."
    )
