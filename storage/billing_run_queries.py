"""The billing run's statements: candidates, claiming steps, queuing notices, digests, totals.

Set-based on purpose: the run (`services.billing_run`) decides each invoice's step with
`workflows.billing`, and these statements write what it decided for a whole batch at once, so
the work per invoice is done by the database rather than by building rows in Python. Every
function works in the caller's transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, String, and_, case, exists, func, literal, or_, select, true, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage import set_sql
from storage.notices import reachable
from storage.outbox import new_message
from workflows.billing import (
    Action,
    CandidateFilter,
    PauseCalendar,
    PauseWindow,
    RunTotals,
    RunWindow,
    Step,
    cancel_comment,
    step_key,
    summarise_steps,
)
from workflows.billing_settings import BillingSettings, billing_settings_from
from workflows.i18n import _
from workflows.invoices import OPEN_STATUSES, InvoiceStatus, NoticeTemplate

DIGEST_TEMPLATE = "billing_digest"
DIGESTED = "digested"  # a member notice, sent inside its digest
SLACK_RUN_KIND = "slack.billing_run"
AUTOMATION_LABEL = "DeviceCare automation"
GUARDIAN_BATCH = 500
_NOTICE_COLUMNS = [
    "invoice_id", "guardian_id", "template", "dedupe_key", "to_address", "message_id",
    "context", "status", "created_at", "run_day",
]  # fmt: skip
_STEP_TEMPLATES = {
    Step.FIRST: NoticeTemplate.OVERDUE_FIRST,
    Step.SECOND: NoticeTemplate.OVERDUE_SECOND,
    Step.FINAL: NoticeTemplate.OVERDUE_FINAL,
}


# --- starting -----------------------------------------------------------------------------------


async def billing_state(
    session: AsyncSession, day: date
) -> tuple[BillingSettings, PauseCalendar, date | None]:
    """The district's billing settings, its pauses, and the last day the run covered."""
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


async def mark_run_started(session: AsyncSession, window: RunWindow, now: datetime) -> None:
    """The day's run row says "running" (a rerun starts it again)."""
    run = await session.get(m.BillingRun, window.day)
    if run is None:
        session.add(
            m.BillingRun(
                day=window.day,
                covered_since=window.covered_since,
                status="running",
                paused=False,
                started_at=now,
            )
        )
    else:
        run.status, run.started_at, run.finished_at = "running", now, None
        run.covered_since = window.covered_since


# --- candidates ---------------------------------------------------------------------------------


async def candidates(
    session: AsyncSession, flt: CandidateFilter, after_id: int, *, limit: int, lock: bool
) -> list[Any]:
    """The next invoices after `after_id` the date filter can't rule out, off a plan."""
    inv = m.Invoice
    cases: list[Any] = [
        and_(inv.due_date > low, inv.due_date <= high) for low, high in flt.pre_due_ranges
    ]
    cases += [
        and_(inv.status == status, inv.due_date <= limit_day)
        for status, limit_day in flt.overdue_before.items()
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
        # Invoices on a payment plan follow their installments (`plan_candidates`).
        ~_on_plan(inv.id),
        # The family hasn't been told yet: a decision on the amount is pending.
        inv.notice_hold.is_(None),
    ]
    if flt.stop_on_partial:
        conditions.append(inv.paid_cents == 0)
    stmt = select(*_candidate_columns()).where(*conditions).order_by(inv.id).limit(limit)
    if lock and set_sql.is_postgres(session):
        stmt = stmt.with_for_update(of=inv)
    return list((await session.execute(stmt)).all())


async def plan_candidates(
    session: AsyncSession, after_id: int, *, limit: int, lock: bool
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
        .limit(limit)
    )
    if lock and set_sql.is_postgres(session):
        stmt = stmt.with_for_update(of=inv)
    return list((await session.execute(stmt)).all())


# --- taking steps -------------------------------------------------------------------------------


async def take_steps(
    session: AsyncSession,
    decided: Sequence[tuple[Any, Action]],
    day: date,
    now: datetime,
    *,
    mail_domain: str,
) -> dict[int, int]:
    """Claim each decided step once and write what the claimed ones do: their notices and the
    invoices' new status. invoice id -> step id, for the claimed ones."""
    if not decided:
        return {}
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
    is_pg = set_sql.is_postgres(session)
    insert = set_sql.dialect_insert(is_pg)
    claim = (
        insert(set_sql.STEPS)
        .on_conflict_do_nothing(index_elements=["invoice_id", "step", "due_date", "epoch"])
        .returning(set_sql.STEPS.c.id, set_sql.STEPS.c.invoice_id)
    )
    claimed = {
        invoice_id: step_id
        for step_id, invoice_id in (await session.execute(claim, step_rows)).all()
    }
    if not claimed:
        return {}
    step_ids = sorted(claimed.values())
    # The claimed steps drive the rest in set-based statements.
    await session.execute(_queue_notices(step_ids, day, now, is_pg=is_pg, mail_domain=mail_domain))
    await session.execute(_advance_invoices(step_ids, day, now))
    return claimed


async def log_steps(
    session: AsyncSession,
    decided: Sequence[tuple[Any, Action]],
    claimed: dict[int, int],
    day: date,
    now: datetime,
) -> None:
    """The activity log's entry for each claimed step that changed an invoice's status."""
    activity = [
        _activity_row(row, action, day, now)
        for row, action in decided
        if action.invoice_id in claimed and action.new_status is not None
    ]
    if activity:
        await session.execute(set_sql.ACTIVITY.insert(), activity)


async def reloaded_invoice(session: AsyncSession, invoice_id: int) -> m.Invoice | None:
    """The invoice as the statements above left it (they bypass the session's objects)."""
    return await session.get(m.Invoice, invoice_id, populate_existing=True)


async def note_installment(
    session: AsyncSession, key: str, day: date, context: dict[str, Any]
) -> None:
    """A pending notice of the run (by its dedupe key) gets the context it is sent with."""
    await session.execute(
        update(set_sql.NOTICES)
        .where(
            set_sql.NOTICES.c.dedupe_key == key,
            set_sql.NOTICES.c.run_day == day,
            set_sql.NOTICES.c.status == "pending",
        )
        .values(context=context)
    )


def _queue_notices(
    step_ids: Sequence[int], day: date, now: datetime, *, is_pg: bool, mail_domain: str
) -> Any:
    """INSERT … SELECT: a pending notice per reachable guardian for each emailing step."""
    st, n = set_sql.STEPS, set_sql.NOTICES
    inv, gs, g = set_sql.INVOICES, set_sql.GUARDIANSHIPS, set_sql.GUARDIANS
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
            set_sql.message_id(is_pg, mail_domain),
            set_sql.json_object(is_pg, "step", st.c.step),
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


# --- digests: one email per guardian per day ----------------------------------------------------


async def release_single_notices(session: AsyncSession, now: datetime) -> None:
    """Guardians with one pending notice get it queued: one UPDATE, one INSERT … SELECT."""
    n = set_sql.NOTICES
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
    rows = set_sql.outbox_rows(singles, now, is_pg=set_sql.is_postgres(session))
    await session.execute(set_sql.OUTBOX.insert().from_select(set_sql.OUTBOX_COLUMNS, rows))
    await session.execute(update(n).where(single).values(status="queued"))


async def guardians_with_several_pending(
    session: AsyncSession, after: int, *, limit: int = GUARDIAN_BATCH
) -> list[int]:
    """The next guardians (by id, after `after`) with more than one pending notice."""
    # guardian_id > after leaves out NULLs, released as singles.
    found = (
        await session.execute(
            select(m.Notice.guardian_id)
            .where(m.Notice.status == "pending", m.Notice.guardian_id > after)
            .group_by(m.Notice.guardian_id)
            .having(func.count() > 1)
            .order_by(m.Notice.guardian_id)
            .limit(limit)
        )
    ).scalars()
    return [g for g in found if g is not None]


async def queue_digests(
    session: AsyncSession,
    day: date,
    guardian_ids: list[int],
    now_at: datetime,
    *,
    mail_domain: str,
) -> None:
    """One digest per guardian for their pending notices; the members point at it."""
    is_pg = set_sql.is_postgres(session)
    n, o = set_sql.NOTICES, set_sql.OUTBOX
    now = literal(now_at, type_=m.UtcDateTime())
    run_day = literal(day, type_=Date())
    pending = and_(n.c.status == "pending", n.c.guardian_id.in_(guardian_ids))
    members = (
        func.json_agg(aggregate_order_by(n.c.id, n.c.id))
        if is_pg
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
            set_sql.message_id(is_pg, mail_domain),
            set_sql.json_object(is_pg, "notice_ids", members),
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
    await session.execute(
        o.insert().from_select(
            set_sql.OUTBOX_COLUMNS, set_sql.outbox_rows(fresh, now_at, is_pg=is_pg)
        )
    )


# --- finishing ----------------------------------------------------------------------------------


async def mark_run_completed(
    session: AsyncSession,
    day: date,
    now: datetime,
    *,
    paused: bool,
    summary: dict[str, Any],
    post_to_slack: bool,
) -> None:
    """The day's run row completed with its summary; with `post_to_slack`, the day's Slack
    digest is queued once (a rerun updates the stored summary only)."""
    run = await session.get(m.BillingRun, day)
    assert run is not None
    run.status, run.paused, run.finished_at = "completed", paused, now
    run.summary = summary
    if not post_to_slack:
        return
    key = f"billing-run:{day.isoformat()}"
    posted = (
        await session.execute(select(m.OutboxMessage.id).where(m.OutboxMessage.dedupe_key == key))
    ).first()
    if posted is None:
        session.add(new_message(SLACK_RUN_KIND, key, summary, now))


# --- queries shared by the run, its dry run and the reports -------------------------------------


async def guardians_of(
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


async def already_taken(session: AsyncSession, actions: Sequence[Action]) -> set[str]:
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
        failures.append(
            _("{count} email(s) could not be delivered since the last run", count=failed)
        )
    if not_emailed:
        failures.append(
            _("{count} invoice(s) had no guardian email address that works", count=not_emailed)
        )
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
    gs, g = set_sql.GUARDIANSHIPS, set_sql.GUARDIANS
    return (
        select(func.count())
        .select_from(gs.join(g, g.c.id == gs.c.guardian_id))
        .where(gs.c.student_id == student_id, reachable(g.c))
        .scalar_subquery()
    )


def _advance_invoices(step_ids: Sequence[int], day: date, now: datetime) -> Any:
    """UPDATE … FROM the claimed steps: new status, final-notice day, cancellation, counts."""
    inv, st = set_sql.INVOICES, set_sql.STEPS
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
