"""Money reports for the business office: invoices, balances by student and by family, overdue
and partially paid, the end-of-year cleanup list, damage recovery, and cancelled invoices.

Every figure is aggregated in SQL; listings return only the rows their CSV holds. Row values
follow the report's headers: money in int cents (the `money` headers), days as dates, instants
as aware datetimes, flags as "yes"/"no", rates as floats or None (blank).

Where billed money went follows workflows.ledger.split_money: billed = collected (paid less
refunded) + covered (insurance) + waived + refunded + outstanding + cancelled (what was still
owed when the invoice was cancelled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    case,
    cast,
    false,
    func,
    literal,
    select,
    true,
    union_all,
)

from storage import models as m
from storage.billing_reports import cancelled_invoices, student_name
from storage.notices import reachable
from storage.report_base import ReportQuery, report
from workflows.i18n import N_, _, ngettext
from workflows.invoices import OPEN_STATUSES, InvoiceKind, InvoiceStatus
from workflows.money import format_cents
from workflows.reports import Audience, ReportResult, ReportSpec
from workflows.reports_money import (
    CARRY_OVER,
    CLEANUP_ORDER,
    NO_BUILDING,
    NO_DEVICE,
    NO_FAMILY,
    NO_GRADE,
    SMALL_BALANCE_CENTS,
    CleanupReason,
    recovery_rate,
)

inv = m.Invoice
_OPEN = sorted(s.value for s in OPEN_STATUSES)
_CANCELLED = InvoiceStatus.CANCELLED.value
_PAID = InvoiceStatus.PAID.value

# --- the specs (README "Money reports" documents each one's columns) -----------------------

# The first seven columns of every invoice listing (see _listing).
_LISTING_HEADERS = ("invoice_number", "student", "family", "building", "grade", "kind", "status")

INVOICES = ReportSpec(
    name="invoices",
    title=N_("Outstanding and Paid Invoices"),
    description=N_(
        "Every invoice issued in the range, with what was billed, covered, paid, "
        "waived and refunded, and what is still owed."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        *_LISTING_HEADERS,
        "issued_on",
        "due_on",
        "billed",
        "covered",
        "paid",
        "waived",
        "refunded",
        "balance",
    ),
    money=frozenset({"billed", "covered", "paid", "waived", "refunded", "balance"}),
    range_means="issued",
)

_BALANCE_MONEY = frozenset({"billed", "covered", "collected", "waived", "balance"})
_BALANCE_FIGURES = ("invoices", "billed", "covered", "collected", "waived", "balance")

BALANCES_BY_STUDENT = ReportSpec(
    name="balances-by-student",
    title=N_("Balances by Student"),
    description=N_(
        "Per student, over invoices issued in the range that aren't cancelled: "
        "billed, covered, collected, waived and the balance, largest balance first."
    ),
    audience=Audience.FINANCIAL,
    headers=("student", "family", "building", "grade", *_BALANCE_FIGURES),
    money=_BALANCE_MONEY,
    range_means="issued",
)

BALANCES_BY_FAMILY = ReportSpec(
    name="balances-by-family",
    title=N_("Balances by Family"),
    description=N_(
        "Per family (household), over invoices issued in the range that aren't "
        "cancelled: the students billed, billed, covered, collected, waived and the balance."
    ),
    audience=Audience.FINANCIAL,
    headers=("family", "students", *_BALANCE_FIGURES),
    money=_BALANCE_MONEY,
    range_means="issued",
)

OVERDUE = ReportSpec(
    name="overdue",
    title=N_("Overdue and Partially Paid Invoices"),
    description=N_(
        "Open invoices issued in the range that are past due or partly paid, most overdue first."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        *_LISTING_HEADERS,
        "due_on",
        "days_overdue",
        "billed",
        "covered",
        "paid",
        "balance",
        "partially_paid",
        "reminder_count",
        "last_reminder_at",
    ),
    money=frozenset({"billed", "covered", "paid", "balance"}),
    range_means="issued",
)

CLEANUP = ReportSpec(
    name="cleanup",
    title=N_("End-of-Year Cleanup"),
    description=N_(
        "Open invoices issued in the range, each with what needs doing before the year closes."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        *_LISTING_HEADERS,
        "issued_on",
        "due_on",
        "balance",
        "suggestion",
        "reasons",
    ),
    money=frozenset({"balance"}),
    range_means="issued",
)

_PARTS = ("billed", "covered", "collected", "waived", "refunded", "outstanding", "cancelled")

RECOVERY = ReportSpec(
    name="recovery",
    title=N_("Damage Recovery"),
    description=N_(
        "Damage and loss invoices issued in the range by building, grade and device "
        "model: where the billed money went and the share families paid."
    ),
    audience=Audience.FINANCIAL,
    headers=("dimension", "value", "invoices", *_PARTS, "recovery_rate"),
    money=frozenset(_PARTS),
    range_means="issued",
)

CANCELLED = ReportSpec(
    name="cancelled",
    title=N_("Cancelled Invoices"),
    description=N_(
        "Invoices cancelled in the range: who and why, Auto-Cancelled marked, totals "
        "auto against manual."
    ),
    audience=Audience.FINANCIAL,
    # The same columns as `devicecare report cancelled --csv`.
    headers=(
        "invoice_number",
        "student",
        "amount",
        "cancelled_at",
        "auto_cancelled",
        "cancelled_by",
        "reason",
    ),
    money=frozenset({"amount"}),
    range_means="cancelled",
)


# --- shared pieces -------------------------------------------------------------------------


def _issued(q: ReportQuery) -> list[ColumnElement[bool]]:
    """Invoices issued in the range (district days) within the building/grade/model scope."""
    return [*q.at_in_range(inv.created_at), *q.scope(inv.student_id, inv.device_id)]


def _is_open() -> ColumnElement[bool]:
    return inv.status.in_(_OPEN)


def _sum(expr: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(expr), 0)


def _collected() -> ColumnElement[Any]:
    return inv.paid_cents - inv.refunded_cents


def _outstanding() -> ColumnElement[Any]:
    """What is still owed; a cancelled invoice owes nothing."""
    return case((inv.status == _CANCELLED, 0), else_=m.invoice_balance())


def _cancelled_part() -> ColumnElement[Any]:
    return case((inv.status == _CANCELLED, m.invoice_balance()), else_=0)


def _student_name() -> ColumnElement[str]:
    return func.trim(
        func.coalesce(m.Student.first_name, "") + " " + func.coalesce(m.Student.last_name, "")
    )


def _status_label() -> ColumnElement[str]:
    """The status as people read it (Auto-Cancelled marked), worked out in SQL so a long
    listing comes back ready to write."""
    auto = (inv.status == _CANCELLED) & (inv.auto_cancelled == true())
    return case(
        (auto, "Auto-Cancelled"),
        *[(inv.status == s.value, s.label) for s in InvoiceStatus],
        else_=inv.status,
    )


def _listing(*columns: Any) -> Select[Any]:
    """Invoice rows starting with number, student, family, building, grade, kind and status
    (the first seven columns of the listings), then `columns`."""
    return (
        select(
            inv.number,
            _student_name(),
            func.coalesce(m.Household.name, ""),
            func.coalesce(m.Building.name, ""),
            func.coalesce(m.Student.grade, ""),
            inv.kind,
            _status_label(),
            *columns,
        )
        .join(m.Student, m.Student.id == inv.student_id)
        .outerjoin(m.Household, m.Household.id == m.Student.household_id)
        .outerjoin(m.Building, m.Building.id == m.Student.building_id)
    )


async def _fetch(q: ReportQuery, stmt: Select[Any]) -> Sequence[Any]:
    """A long listing's rows, read on the session's connection: plain rows, without the ORM
    result machinery, which costs more than the query on hundreds of thousands of rows."""
    connection = await q.session.connection()
    return (await connection.execute(stmt)).all()


def _issued_on(q: ReportQuery) -> tuple[Any, Callable[[Any], date]]:
    """The district day an invoice was issued, and how to read it from a row.

    PostgreSQL converts with the zone's rules. SQLite has no zones, so the instant comes back
    and is converted here, keeping the day exact across daylight-saving changes.
    """
    if q.is_pg:
        zone = getattr(q.tz, "key", None) or "UTC"
        return cast(func.timezone(zone, inv.created_at), Date), _same
    tz = q.tz
    return inv.created_at, lambda at: at.astimezone(tz).date()


def _same(value: Any) -> Any:
    return value


def _days_before_today(q: ReportQuery, day: Any) -> ColumnElement[Any]:
    """Whole district days from `day` (a date column) to the report's today."""
    if q.is_pg:
        return cast(literal(q.today, Date) - day, Integer)
    return cast(func.julianday(literal(q.today.isoformat())) - func.julianday(day), Integer)


# --- invoices ------------------------------------------------------------------------------


@report(INVOICES)
async def invoices(q: ReportQuery) -> ReportResult:
    where = _issued(q)
    is_open = _is_open()
    figures = (
        await q.session.execute(
            select(
                func.count(inv.id),
                _sum(case((is_open, 1), else_=0)),
                _sum(case((is_open, m.invoice_balance()), else_=0)),
                _sum(case((inv.status == _PAID, 1), else_=0)),
                _sum(case((inv.status == _CANCELLED, 1), else_=0)),
                _sum(inv.subtotal_cents),
            ).where(*where)
        )
    ).one()
    total, open_n, open_cents, paid_n, cancelled_n, billed = (int(x) for x in figures)
    issued_on, read_day = _issued_on(q)
    listing = (
        _listing(
            issued_on,
            inv.due_date,
            inv.subtotal_cents,
            inv.insurance_cents,
            inv.paid_cents,
            inv.waived_cents,
            inv.refunded_cents,
            _outstanding(),
        )
        .where(*where)
        .order_by(inv.created_at, inv.id)
    )
    rows = [(*r[:7], read_day(r[7]), *r[8:]) for r in await _fetch(q, listing)]
    return q.result(
        rows,
        [
            ngettext(
                "{n} invoice issued ({filters}), {billed} billed.",
                "{n} invoices issued ({filters}), {billed} billed.",
                total,
                filters=q.filters.describe(),
                billed=format_cents(billed),
            ),
            _(
                "Outstanding: {open} with {owed} still owed. Paid: {paid}. Cancelled: {cancelled}.",
                open=open_n,
                owed=format_cents(open_cents),
                paid=paid_n,
                cancelled=cancelled_n,
            ),
        ],
        totals={
            "invoices": total,
            "billed": billed,
            "outstanding": open_n,
            "outstanding_cents": open_cents,
            "paid": paid_n,
            "cancelled": cancelled_n,
        },
    )


# --- balances by student and by family -----------------------------------------------------


def _balance_figures() -> list[ColumnElement[Any]]:
    return [
        func.count(inv.id).label("invoices"),
        _sum(inv.subtotal_cents).label("billed"),
        _sum(inv.insurance_cents).label("covered"),
        _sum(_collected()).label("collected"),
        _sum(inv.waived_cents).label("waived"),
        _sum(m.invoice_balance()).label("balance"),
    ]


def _not_cancelled(q: ReportQuery) -> list[ColumnElement[bool]]:
    return [*_issued(q), inv.status != _CANCELLED]


def _figures_of(r: Any) -> tuple[int, ...]:
    return tuple(int(getattr(r, name)) for name in _BALANCE_FIGURES)


async def _balance_totals(q: ReportQuery) -> dict[str, int]:
    row = (await q.session.execute(select(*_balance_figures()).where(*_not_cancelled(q)))).one()
    return dict(zip(_BALANCE_FIGURES, _figures_of(row), strict=True))


def _balance_summary(q: ReportQuery, who: str, count: int, totals: dict[str, int]) -> list[str]:
    billed = (
        ngettext("{n} student", "{n} students", count)
        if who == "students"
        else ngettext("{n} family", "{n} families", count)
    )
    return [
        _(
            "{who} billed on {invoices} ({filters}); cancelled invoices left out.",
            who=billed,
            invoices=ngettext("{n} invoice", "{n} invoices", totals["invoices"]),
            filters=q.filters.describe(),
        ),
        _(
            "Billed {billed}: covered {covered}, collected {collected}, waived {waived}, "
            "still owed {balance}.",
            billed=format_cents(totals["billed"]),
            covered=format_cents(totals["covered"]),
            collected=format_cents(totals["collected"]),
            waived=format_cents(totals["waived"]),
            balance=format_cents(totals["balance"]),
        ),
    ]


async def _balance_result(q: ReportQuery, rows: list[tuple[Any, ...]], who: str) -> ReportResult:
    """The result of a balances report listing `rows` of who ("students" or "families") was
    billed."""
    totals = await _balance_totals(q)
    totals[who] = len(rows)
    return q.result(rows, _balance_summary(q, who, len(rows), totals), totals=totals)


@report(BALANCES_BY_STUDENT)
async def balances_by_student(q: ReportQuery) -> ReportResult:
    st = m.Student
    balance = _sum(m.invoice_balance())
    stmt = (
        select(
            st.id,
            st.first_name,
            st.last_name,
            m.Household.name.label("family"),
            m.Building.name.label("building"),
            st.grade,
            *_balance_figures(),
        )
        .select_from(inv)
        .join(st, st.id == inv.student_id)
        .outerjoin(m.Household, m.Household.id == st.household_id)
        .outerjoin(m.Building, m.Building.id == st.building_id)
        .where(*_not_cancelled(q))
        .group_by(st.id, st.first_name, st.last_name, m.Household.name, m.Building.name, st.grade)
        .order_by(balance.desc(), st.last_name, st.first_name, st.id)
    )
    rows = [
        (
            student_name(r.first_name, r.last_name),
            r.family or "",
            r.building or "",
            r.grade or "",
            *_figures_of(r),
        )
        for r in (await q.session.execute(stmt)).all()
    ]
    return await _balance_result(q, rows, "students")


def _family_key() -> ColumnElement[Any]:
    """A household, or the student alone when they have none (never lumped together)."""
    return case((m.Student.household_id.is_not(None), -m.Student.household_id), else_=m.Student.id)


@report(BALANCES_BY_FAMILY)
async def balances_by_family(q: ReportQuery) -> ReportResult:
    st = m.Student
    key = _family_key().label("family_key")
    balance = _sum(m.invoice_balance())
    family = func.max(m.Household.name).label("family")
    solo = func.max(st.first_name + literal(" ") + st.last_name).label("solo")
    base = (
        select(key)
        .select_from(inv)
        .join(st, st.id == inv.student_id)
        .outerjoin(m.Household, m.Household.id == st.household_id)
        .where(*_not_cancelled(q))
    )
    stmt = (
        base.add_columns(family, solo, *_balance_figures())
        .group_by(key)
        .order_by(balance.desc(), family, solo, key)
    )
    figures = (await q.session.execute(stmt)).all()
    # The students each family was billed for: one short row per student, names only.
    names = (
        await q.session.execute(
            base.add_columns(st.first_name, st.last_name)
            .distinct()
            .order_by(key, st.first_name, st.last_name)
        )
    ).all()
    students: dict[int, list[str]] = {}
    for n in names:
        students.setdefault(int(n.family_key), []).append(student_name(n.first_name, n.last_name))
    rows = [
        (
            r.family or (r.solo or NO_FAMILY),
            ", ".join(students.get(int(r.family_key), [])),
            *_figures_of(r),
        )
        for r in figures
    ]
    return await _balance_result(q, rows, "families")


# --- overdue and partially paid ------------------------------------------------------------


@report(OVERDUE)
async def overdue(q: ReportQuery) -> ReportResult:
    balance = m.invoice_balance()
    is_overdue = inv.due_date < q.today
    partly = (inv.paid_cents > 0) & (balance > 0)
    where = [*_issued(q), _is_open(), is_overdue | partly]
    figures = (
        await q.session.execute(
            select(
                func.count(inv.id),
                _sum(balance),
                _sum(case((is_overdue, 1), else_=0)),
                _sum(case((is_overdue, balance), else_=0)),
                _sum(case((partly, 1), else_=0)),
                _sum(case((partly, balance), else_=0)),
            ).where(*where)
        )
    ).one()
    total, owed, overdue_n, overdue_cents, partly_n, partly_cents = (int(x) for x in figures)
    days = case((is_overdue, _days_before_today(q, inv.due_date)), else_=0)
    listing = (
        _listing(
            inv.due_date,
            days,
            inv.subtotal_cents,
            inv.insurance_cents,
            inv.paid_cents,
            balance,
            case((partly, "yes"), else_="no"),
            inv.reminder_count,
            inv.last_reminder_at,
        )
        .where(*where)
        # Most overdue first; invoices that are only partly paid after them, by due date.
        .order_by(inv.due_date.is_(None), inv.due_date, inv.id)
    )
    rows = [tuple(r) for r in await _fetch(q, listing)]
    return q.result(
        rows,
        [
            ngettext(
                "{n} open invoice overdue or partly paid ({filters}), {owed} still owed.",
                "{n} open invoices overdue or partly paid ({filters}), {owed} still owed.",
                total,
                filters=q.filters.describe(),
                owed=format_cents(owed),
            ),
            _(
                "Overdue: {overdue} ({overdue_amount}). Partly paid: {partly} ({partly_amount}).",
                overdue=overdue_n,
                overdue_amount=format_cents(overdue_cents),
                partly=partly_n,
                partly_amount=format_cents(partly_cents),
            ),
        ],
        totals={
            "invoices": total,
            "balance": owed,
            "overdue": overdue_n,
            "overdue_cents": overdue_cents,
            "partially_paid": partly_n,
            "partially_paid_cents": partly_cents,
        },
    )


# --- end-of-year cleanup -------------------------------------------------------------------


class _CleanupSources:
    """What the reasons need besides the invoice and its student: invoices with a payment
    awaiting confirmation, and students with a guardian who can be emailed. Joined once per
    row (hash joins), so each reason is a plain column test however many times it is used."""

    def __init__(self) -> None:
        pp, part = m.PendingPayment, m.PendingPaymentPart
        # A reported payment awaits confirmation on its invoice and on each invoice of its split.
        on_invoice = select(pp.invoice_id.label("invoice_id")).where(pp.status == "pending")
        in_split = (
            select(part.invoice_id.label("invoice_id"))
            .join(pp, pp.id == part.pending_payment_id)
            .where(pp.status == "pending")
        )
        either = union_all(on_invoice, in_split).subquery("awaiting")
        self.pending = select(either.c.invoice_id).group_by(either.c.invoice_id).subquery("pending")
        ship = m.Guardianship
        self.reachable = (
            select(ship.student_id)
            .join(m.Guardian, m.Guardian.id == ship.guardian_id)
            .where(reachable(m.Guardian))
            .group_by(ship.student_id)
            .subquery("reachable")
        )

    def join(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.outerjoin(self.pending, self.pending.c.invoice_id == inv.id).outerjoin(
            self.reachable, self.reachable.c.student_id == inv.student_id
        )

    def conditions(self) -> dict[CleanupReason, ColumnElement[bool]]:
        """Each reason as a condition on a joined open invoice row."""
        balance = m.invoice_balance()
        return {
            CleanupReason.PENDING_PAYMENT: self.pending.c.invoice_id.is_not(None),
            CleanupReason.STUDENT_INACTIVE: m.Student.active == false(),
            CleanupReason.NO_GUARDIAN: self.reachable.c.student_id.is_(None),
            CleanupReason.IN_COLLECTIONS: inv.status == InvoiceStatus.COLLECTIONS.value,
            CleanupReason.SMALL_BALANCE: (balance > 0) & (balance < SMALL_BALANCE_CENTS),
            CleanupReason.AUTOMATION_OFF: inv.automation_enabled == false(),
        }


def _suggestion(conditions: dict[CleanupReason, ColumnElement[bool]]) -> ColumnElement[str]:
    """The first reason that applies, in CLEANUP_ORDER (its value), or CARRY_OVER."""
    return case(
        *[(conditions[r], literal(r.value)) for r in CLEANUP_ORDER], else_=literal(CARRY_OVER)
    )


def _suggestion_words(conditions: dict[CleanupReason, ColumnElement[bool]]) -> ColumnElement[str]:
    """The same choice as `_suggestion`, as the words the CSV shows."""
    return case(
        *[(conditions[r], literal(r.suggestion)) for r in CLEANUP_ORDER],
        else_=literal(CARRY_OVER),
    )


def _reason_words(conditions: dict[CleanupReason, ColumnElement[bool]]) -> ColumnElement[str]:
    """Every reason that applies, in CLEANUP_ORDER, joined by "; "."""
    joined: ColumnElement[str] = literal("")
    for r in CLEANUP_ORDER:
        joined = joined + case((conditions[r], literal("; " + r.label)), else_=literal(""))
    return func.substr(joined, 3)


def _suggestion_text(code: str) -> str:
    return CARRY_OVER if code == CARRY_OVER else CleanupReason(code).suggestion


@report(CLEANUP)
async def cleanup(q: ReportQuery) -> ReportResult:
    sources = _CleanupSources()
    conditions = sources.conditions()
    suggestion = _suggestion(conditions).label("suggestion")
    where = [*_issued(q), _is_open()]
    joined = sources.join(select(inv.id).join(m.Student, m.Student.id == inv.student_id))
    per_suggestion = (
        await q.session.execute(
            joined.with_only_columns(suggestion, func.count(inv.id), _sum(m.invoice_balance()))
            .where(*where)
            .group_by(suggestion)
        )
    ).all()
    counts = {str(code): (int(n), int(cents)) for code, n, cents in per_suggestion}
    issued_on, read_day = _issued_on(q)
    listing = (
        sources.join(
            _listing(
                issued_on,
                inv.due_date,
                m.invoice_balance(),
                _suggestion_words(conditions),
                _reason_words(conditions),
            )
        )
        .where(*where)
        .order_by(m.Student.last_name, m.Student.first_name, inv.student_id, inv.created_at, inv.id)
    )
    rows = [(*r[:7], read_day(r[7]), *r[8:]) for r in await _fetch(q, listing)]
    order = [r.value for r in CLEANUP_ORDER] + [CARRY_OVER]
    total = sum(n for n, _c in counts.values())
    owed = sum(c for _n, c in counts.values())
    parts = [f"{_(_suggestion_text(code))} {counts[code][0]}" for code in order if code in counts]
    return q.result(
        rows,
        [
            ngettext(
                "{n} open invoice ({filters}), {owed} still owed.",
                "{n} open invoices ({filters}), {owed} still owed.",
                total,
                filters=q.filters.describe(),
                owed=format_cents(owed),
            ),
            _("To do: {parts}.", parts=", ".join(parts)) if parts else _("Nothing left open."),
        ],
        totals={"invoices": total, "balance": owed}
        | {code: counts.get(code, (0, 0))[0] for code in order},
    )


# --- damage recovery -----------------------------------------------------------------------


def _recovery_sums() -> list[ColumnElement[Any]]:
    return [
        func.count(inv.id).label("invoices"),
        _sum(inv.subtotal_cents).label("billed"),
        _sum(inv.insurance_cents).label("covered"),
        _sum(_collected()).label("collected"),
        _sum(inv.waived_cents).label("waived"),
        _sum(inv.refunded_cents).label("refunded"),
        _sum(_outstanding()).label("outstanding"),
        _sum(_cancelled_part()).label("cancelled"),
    ]


def _recovery_row(dimension: str, value: str, r: Any) -> tuple[Any, ...]:
    parts = {name: int(getattr(r, name)) for name in _PARTS}
    rate = recovery_rate(parts["collected"], parts["billed"], parts["covered"], parts["cancelled"])
    return (dimension, value, int(r.invoices), *(parts[p] for p in _PARTS), rate)


@report(RECOVERY)
async def recovery(q: ReportQuery) -> ReportResult:
    where = [*_issued(q), inv.kind == InvoiceKind.INCIDENT.value]
    base = (
        select(inv.id)
        .join(m.Student, m.Student.id == inv.student_id)
        .outerjoin(m.Building, m.Building.id == m.Student.building_id)
        .outerjoin(m.Device, m.Device.id == inv.device_id)
        .where(*where)
    )
    dimensions: Sequence[tuple[str, ColumnElement[Any]]] = (
        ("building", func.coalesce(m.Building.name, NO_BUILDING)),
        ("grade", func.coalesce(m.Student.grade, NO_GRADE)),
        ("model", func.coalesce(m.Device.model, NO_DEVICE)),
    )
    rows: list[tuple[Any, ...]] = []
    for dimension, column in dimensions:
        value = column.label("value")
        billed = _sum(inv.subtotal_cents)
        grouped = (
            await q.session.execute(
                base.with_only_columns(value, *_recovery_sums())
                .group_by(value)
                .order_by(billed.desc(), value)
            )
        ).all()
        rows += [_recovery_row(dimension, str(r.value), r) for r in grouped]
    total = (await q.session.execute(base.with_only_columns(*_recovery_sums()))).one()
    total_row = _recovery_row("total", "", total)
    rows.append(total_row)
    t = dict(zip(("invoices", *_PARTS), (int(x) for x in total_row[2:-1]), strict=True))
    rate = total_row[-1]
    return q.result(
        rows,
        [
            ngettext(
                "{n} damage or loss invoice issued ({filters}), {billed} billed.",
                "{n} damage or loss invoices issued ({filters}), {billed} billed.",
                t["invoices"],
                filters=q.filters.describe(),
                billed=format_cents(t["billed"]),
            ),
            _(
                "Collected {collected}, covered by insurance {covered}, waived {waived}, "
                "refunded {refunded}, outstanding {outstanding}, cancelled {cancelled}.",
                collected=format_cents(t["collected"]),
                covered=format_cents(t["covered"]),
                waived=format_cents(t["waived"]),
                refunded=format_cents(t["refunded"]),
                outstanding=format_cents(t["outstanding"]),
                cancelled=format_cents(t["cancelled"]),
            ),
            _(
                "Recovery rate: {rate} (collected of billed less insurance and cancellations).",
                rate=_("n/a") if rate is None else f"{rate}%",
            ),
        ],
        totals=t,
    )


# --- cancelled invoices --------------------------------------------------------------------


@report(CANCELLED)
async def cancelled(q: ReportQuery) -> ReportResult:
    """The cancelled invoices (storage.billing_reports.cancelled_invoices), with the building,
    grade and model scope every report takes."""
    by_kind, found = await cancelled_invoices(
        q.session, [*q.at_in_range(inv.cancelled_at), *q.scope(inv.student_id, inv.device_id)]
    )
    rows = [c.values() for c in found]
    auto_n, auto_cents = by_kind.get(True, (0, 0))
    manual_n, manual_cents = by_kind.get(False, (0, 0))
    return q.result(
        rows,
        [
            ngettext(
                "{n} invoice cancelled ({filters}), {amount}.",
                "{n} invoices cancelled ({filters}), {amount}.",
                auto_n + manual_n,
                filters=q.filters.describe(),
                amount=format_cents(auto_cents + manual_cents),
            ),
            _(
                "Auto-Cancelled: {auto} ({auto_amount}). "
                "Cancelled by staff: {manual} ({manual_amount}).",
                auto=auto_n,
                auto_amount=format_cents(auto_cents),
                manual=manual_n,
                manual_amount=format_cents(manual_cents),
            ),
        ],
        totals={
            "invoices": auto_n + manual_n,
            "amount": auto_cents + manual_cents,
            "auto_cancelled": auto_n,
            "auto_cancelled_cents": auto_cents,
            "manual": manual_n,
            "manual_cents": manual_cents,
        },
    )
