"""Reading notices: what rendering one needs, and their delivery state on an invoice.

Everything here reads, except `update_notices`, which writes the sender's changes.
`load_notices` fetches a whole batch in a fixed number of queries (the notices joined with
their guardian, invoice, student and device; the invoices' lines; a digest's members; payments
when a notice names one), so the outbox worker's cost per notice doesn't grow with the batch.
It reads with SQLAlchemy Core into `Record`s, plain objects with the model's columns and
properties as attributes, which cost a fraction of ORM objects to make.

A billing digest (template "billing_digest") is one email standing for several of a guardian's
billing-run notices, its "members": each member has status "digested" and `digest_id` set, and
the digest's context lists them as `notice_ids`. Members are looked up by those ids (primary
keys), never by `digest_id`, which has no index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.billing_run_queries import DIGEST_TEMPLATE, DIGESTED
from storage.card_refresh import note_notices_changed
from storage.session_of import Db, session_of
from workflows.district_facts import COLUMNS as FACT_COLUMNS
from workflows.district_facts import DistrictFacts, facts_from
from workflows.i18n import N_, _

DEFAULT_DISTRICT_NAME = ""  # not set: templates leave out what needs a name
# A billing reminder whose invoice was paid or cancelled before it went out is not sent.
WITHDRAWN = "withdrawn"
CLOSED_INVOICE_STATUSES = frozenset({"paid", "cancelled"})


class Record:
    """A row read with SQLAlchemy Core: its columns as attributes, as on the model's objects.

    Subclasses made by `_record_type` carry the model's Python properties too (`full_name`,
    `balance_cents`), which read only columns. Records are never written back: changes go
    through explicit UPDATE statements.
    """

    def __init__(self, values: Mapping[Any, Any]) -> None:
        self.__dict__.update(values)

    def attach(self, name: str, value: Any) -> None:
        """Add what the row itself doesn't hold (an invoice's lines)."""
        self.__dict__[name] = value

    def __getattr__(self, name: str) -> Any:  # only called for a name that isn't there
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.__dict__.get('id')!r})"


def _record_type(model: type[m.Base]) -> type[Record]:
    """A Record subclass with the model's properties (they only read the row's columns)."""
    properties = {k: v for k, v in vars(model).items() if isinstance(v, property)}
    return type(f"{model.__name__}Record", (Record,), properties)


def _table(model: type[m.Base]) -> Table:
    return m.Base.metadata.tables[model.__tablename__]


@dataclass(frozen=True)
class _Part:
    """One table's share of the joined batch query: its columns and the records they make."""

    table: Table
    record: type[Record]
    names: tuple[str, ...]


def _part(model: type[m.Base]) -> _Part:
    table = _table(model)
    return _Part(table, _record_type(model), tuple(column.key for column in table.columns))


NOTICE, GUARDIAN, INVOICE, STUDENT, DEVICE = (
    _part(model) for model in (m.Notice, m.Guardian, m.Invoice, m.Student, m.Device)
)
LINES, PAYMENTS, PENDINGS = (_table(m.InvoiceLine), _table(m.Payment), _table(m.PendingPayment))
_JOINED = (NOTICE, GUARDIAN, INVOICE, STUDENT, DEVICE)
_SETTINGS = _table(m.DistrictSettings)


@dataclass(frozen=True)
class DigestItem:
    """One member notice of a digest, with the rows its part of the email is built from."""

    notice: m.Notice | Record
    invoice: m.Invoice | Record
    student: m.Student | Record | None
    device: m.Device | Record | None


@dataclass
class NoticeData:
    """A notice with the rows its template is built from (None where the row is gone).

    `load_notices` fills it with `Record`s; tests and previews may use model objects."""

    notice: m.Notice | Record
    district_name: str
    guardian: m.Guardian | Record | None
    invoice: m.Invoice | Record | None
    student: m.Student | Record | None
    device: m.Device | Record | None
    payment: m.Payment | Record | None
    pending: m.PendingPayment | Record | None
    # A digest's members whose invoice is still open, oldest first (empty for other notices).
    digest_items: tuple[DigestItem, ...] = ()
    # What families are told about the district (name, check address, office contact).
    district: DistrictFacts | None = None

    @property
    def facts(self) -> DistrictFacts:
        """The district's facts; a NoticeData made with only a name has just that."""
        return self.district if self.district is not None else DistrictFacts(self.district_name)


def is_digest(notice: m.Notice | Record) -> bool:
    return notice.template == DIGEST_TEMPLATE


def member_ids(notice: m.Notice | Record) -> list[int]:
    """The member notice ids a digest's context names (none for any other notice)."""
    if not is_digest(notice):
        return []
    raw = (notice.context or {}).get("notice_ids")
    if not isinstance(raw, list):
        return []
    return sorted(i for i in raw if isinstance(i, int) and not isinstance(i, bool))


def _context_id(notice: m.Notice | Record, key: str) -> int | None:
    value = (notice.context or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


async def _by_id(session: AsyncSession, model: Any, ids: Iterable[int | None]) -> dict[int, Any]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = (await session.execute(select(model).where(model.id.in_(wanted)))).scalars()
    return {row.id: row for row in rows}


async def district_name(session: AsyncSession) -> str:
    settings = await session.get(m.DistrictSettings, 1)
    return settings.district_name if settings is not None else DEFAULT_DISTRICT_NAME


async def district_facts(session: AsyncSession) -> DistrictFacts:
    settings = await session.get(m.DistrictSettings, 1)
    return facts_from(settings) if settings is not None else DistrictFacts()


@dataclass(frozen=True)
class _Loaded:
    """A notice as the joined query returns it, with the rows joined to it."""

    notice: Record
    guardian: Record | None
    invoice: Record | None
    student: Record | None
    device: Record | None


def _joined_query(ids: Sequence[int]) -> Select[Any]:
    """The notices with their guardian, invoice, the invoice's student and device, and the
    district's facts (the last columns): one row each."""
    n, g, i = NOTICE.table, GUARDIAN.table, INVOICE.table
    st, d = STUDENT.table, DEVICE.table
    facts = [
        select(_SETTINGS.c[column]).where(_SETTINGS.c.id == 1).scalar_subquery()
        for column in FACT_COLUMNS.values()
    ]
    columns = [column for part in _JOINED for column in part.table.columns]
    return (
        select(*columns, *facts)
        .select_from(n)
        .outerjoin(g, g.c.id == n.c.guardian_id)
        .outerjoin(i, i.c.id == n.c.invoice_id)
        .outerjoin(st, st.c.id == i.c.student_id)
        .outerjoin(d, d.c.id == i.c.device_id)
        .where(n.c.id.in_(sorted(set(ids))))
    )


def _split(row: Sequence[Any]) -> _Loaded:
    """One joined row -> a record per table (None for a table the outer join found nothing in)."""
    records: list[Record | None] = []
    start = 0
    for part in _JOINED:
        found = dict(zip(part.names, row[start : start + len(part.names)], strict=True))
        start += len(part.names)
        records.append(part.record(found) if found["id"] is not None else None)
    notice, guardian, invoice, student, device = records
    assert notice is not None
    return _Loaded(notice, guardian, invoice, student, device)


async def _load_joined(
    session: AsyncSession, ids: Sequence[int]
) -> tuple[dict[int, _Loaded], DistrictFacts]:
    """The notices by id with their rows, and the district's facts."""
    if not ids:
        return {}, DistrictFacts()
    rows = (await session.execute(_joined_query(ids))).all()
    loaded = {}
    facts = DistrictFacts()
    width = len(FACT_COLUMNS)
    for row in rows:
        found = _split(row)
        loaded[found.notice.id] = found
        facts = DistrictFacts(*(str(value or "") for value in row[-width:]))
    return loaded, facts


async def _attach_lines(session: AsyncSession, invoices: Iterable[Record]) -> None:
    """Each invoice record's `lines`, in position order, from one query."""
    lines: dict[int, list[Record]] = {}
    for invoice in invoices:  # notices about the same invoice each have a record of it
        invoice.attach("lines", lines.setdefault(invoice.id, []))
    if not lines:
        return
    stmt = (
        select(LINES)
        .where(LINES.c.invoice_id.in_(sorted(lines)))
        .order_by(LINES.c.invoice_id, LINES.c.position, LINES.c.id)
    )
    for row in (await session.execute(stmt)).mappings():
        lines[row["invoice_id"]].append(Record(row))


async def _records_by_id(
    session: AsyncSession, table: Table, ids: Iterable[int | None]
) -> dict[int, Record]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = (await session.execute(select(table).where(table.c.id.in_(wanted)))).mappings()
    return {row["id"]: Record(row) for row in rows}


def _digest_items(notice: Record, members: Mapping[int, _Loaded]) -> tuple[DigestItem, ...]:
    """A digest's members that still point at it and whose invoice is still open, in order."""
    items: list[DigestItem] = []
    for member_id in member_ids(notice):
        member = members.get(member_id)
        # Only a member that still points here is the digest's (a later change may have
        # taken it back out); one whose invoice is gone has nothing left to say.
        if member is None or member.notice.digest_id != notice.id or member.invoice is None:
            continue
        if member.invoice.status in CLOSED_INVOICE_STATUSES:
            continue
        items.append(DigestItem(member.notice, member.invoice, member.student, member.device))
    return tuple(items)


def _own(found: Record | None, notice: Record) -> Record | None:
    """A payment or pending payment belongs to the notice only if it is the invoice's."""
    if found is None or found.invoice_id != notice.invoice_id:
        return None
    return found


async def load_notices(db: Db, notice_ids: Sequence[int]) -> dict[int, NoticeData]:
    """The notices (by id) with their guardian, invoice and lines, student, device, payment,
    and for a digest its members with theirs."""
    session = session_of(db)
    loaded, facts = await _load_joined(session, notice_ids)
    if not loaded:
        return {}
    notices = [found.notice for found in loaded.values()]
    members, _ = await _load_joined(session, sorted({i for n in notices for i in member_ids(n)}))
    invoices = [f.invoice for f in [*loaded.values(), *members.values()] if f.invoice is not None]
    await _attach_lines(session, invoices)
    payments = await _records_by_id(
        session, PAYMENTS, (_context_id(n, "payment_id") for n in notices)
    )
    pendings = await _records_by_id(
        session, PENDINGS, (_context_id(n, "pending_payment_id") for n in notices)
    )
    return {
        notice_id: NoticeData(
            notice=found.notice,
            district_name=facts.name,
            guardian=found.guardian,
            invoice=found.invoice,
            student=found.student,
            device=found.device,
            payment=_own(payments.get(_context_id(found.notice, "payment_id") or 0), found.notice),
            pending=_own(
                pendings.get(_context_id(found.notice, "pending_payment_id") or 0), found.notice
            ),
            digest_items=_digest_items(found.notice, members),
            district=facts,
        )
        for notice_id, found in loaded.items()
    }


async def load_notice(db: Db, notice_id: int) -> NoticeData | None:
    return (await load_notices(db, [notice_id])).get(notice_id)


async def update_notices(db: Db, changes: Mapping[int, Mapping[str, Any]]) -> None:
    """Set columns on notices: {notice id: {column: value}}, in the session's transaction.

    Notices with the same columns to set go in one executemany UPDATE (after a batch sent
    without trouble, that is every notice); only the given columns are written.
    """
    session = session_of(db)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for notice_id, columns in changes.items():
        params = {f"new_{name}": value for name, value in columns.items()}
        groups[tuple(sorted(columns))].append({"notice_id": notice_id, **params})
    table = NOTICE.table
    for names, params_list in groups.items():
        stmt = (
            update(table)
            .where(table.c.id == bindparam("notice_id"))
            .values({name: bindparam(f"new_{name}") for name in names})
        )
        await session.execute(stmt, params_list)
    await note_notices_changed(session, list(changes))


# --- delivery state -------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeDelivery:
    """Where one notice stands: queued, sent, failed or bounced, and when the family opened
    the invoice page from it (`viewed_at`, first time).

    For a member of a billing digest, the delivery fields are the digest's, `digest_id` names
    it, and `digest_with` lists the other invoices the same email covered.
    """

    id: int
    template: str
    to_address: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    bounced_at: datetime | None
    last_error: str | None
    attempts: int
    digest_id: int | None = None
    digest_with: tuple[str, ...] = ()
    viewed_at: datetime | None = None


async def _digest_invoices(
    session: AsyncSession, digests: Iterable[m.Notice]
) -> dict[int, list[tuple[int, str]]]:
    """digest id -> [(invoice id, number)] of the members still in it, oldest member first."""
    wanted = sorted({i for d in digests for i in member_ids(d)})
    if not wanted:
        return {}
    rows = await session.execute(
        select(m.Notice.digest_id, m.Invoice.id, m.Invoice.number)
        .join(m.Invoice, m.Invoice.id == m.Notice.invoice_id)
        .where(m.Notice.id.in_(wanted))
        .order_by(m.Notice.id)
    )
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for digest_id, invoice_id, number in rows.all():
        if digest_id is not None and (invoice_id, number) not in found[digest_id]:
            found[digest_id].append((invoice_id, number))
    return found


async def notices_for_invoice(session: AsyncSession, invoice_id: int) -> list[NoticeDelivery]:
    """Every notice about the invoice, oldest first, with its outbox attempts.

    A "digested" member shows its digest's state, resolved here when read: the sender, the
    worker and bounce handling change only the digest's row, and members keep "digested" so
    that the billing run's counts (`storage.billing_run_queries.run_totals`) stay right. The digest
    itself is not listed again beside a member of this invoice.
    """
    stmt = (
        select(m.Notice)
        .where(m.Notice.invoice_id == invoice_id)
        .order_by(m.Notice.created_at, m.Notice.id)
    )
    notices = list((await session.execute(stmt)).scalars())
    own = {n.id: n for n in notices}
    wanted = {n.digest_id for n in notices if n.status == DIGESTED and n.digest_id is not None}
    wanted |= {n.id for n in notices if is_digest(n)}
    digests: dict[int, m.Notice] = {i: own[i] for i in wanted if i in own}
    digests.update(await _by_id(session, m.Notice, wanted - own.keys()))
    covered = await _digest_invoices(session, digests.values())
    keys = sorted({f"notice:{n.id}" for n in [*notices, *digests.values()]})
    attempts: dict[str, int] = {}
    if keys:
        rows = await session.execute(
            select(m.OutboxMessage.dedupe_key, m.OutboxMessage.attempts).where(
                m.OutboxMessage.dedupe_key.in_(keys)
            )
        )
        attempts = {key: count for key, count in rows.all()}

    shown_through_members = {
        n.digest_id for n in notices if n.status == DIGESTED and n.digest_id in digests
    }
    found: list[NoticeDelivery] = []
    for n in notices:
        if n.id in shown_through_members:
            continue
        state, digest_id = n, None
        if n.status == DIGESTED and n.digest_id is not None and n.digest_id in digests:
            state = digests[n.digest_id]
            digest_id = state.id
        elif is_digest(n):
            digest_id = n.id
        others = () if digest_id is None else covered.get(digest_id, ())
        found.append(
            NoticeDelivery(
                id=n.id,
                template=n.template,
                to_address=state.to_address,
                status=state.status,
                created_at=n.created_at,
                sent_at=state.sent_at,
                bounced_at=state.bounced_at,
                last_error=state.last_error,
                attempts=attempts.get(f"notice:{state.id}", 0),
                digest_id=digest_id,
                digest_with=tuple(number for inv, number in others if inv != invoice_id),
                viewed_at=state.viewed_at,
            )
        )
    return found


# Translated where shown (`template_label`).
TEMPLATE_LABELS = {
    "invoice_issued": N_("Invoice"),
    "due_reminder": N_("Reminder"),
    "overdue_first": N_("1st overdue"),
    "overdue_second": N_("2nd overdue"),
    "overdue_final": N_("Final notice"),
    "payment_receipt": N_("Receipt"),
    "pending_payment_ack": N_("Payment ack"),
    "payment_plan_confirmation": N_("Plan"),
    "invoice_updated": N_("Update"),
    DIGEST_TEMPLATE: N_("Digest"),
}


def template_label(template: str) -> str:
    """A notice template as staff read it: "Reminder", else the name in words."""
    if template in TEMPLATE_LABELS:
        return _(TEMPLATE_LABELS[template])
    return template.replace("_", " ").capitalize()


_ERROR_SHOWN = 60


def redact_address(address: str) -> str:
    """maria.rivera@example.org -> maria.rivera@… (enough for staff to tell guardians apart)."""
    local, at, _domain = address.partition("@")
    return f"{local}@…" if at else address


def _short_error(error: str | None) -> str:
    text = " ".join((error or _("unknown error")).split())
    return text if len(text) <= _ERROR_SHOWN else text[: _ERROR_SHOWN - 1] + "…"


def _day(at: datetime, tz: tzinfo | None) -> str:
    local = at.astimezone(tz) if tz is not None else at
    return f"{local:%b} {local.day}"


def delivery_summary(
    notices: Sequence[NoticeDelivery], tz: tzinfo | None = None, *, paid_at: datetime | None = None
) -> str:
    """One line for the invoice card, e.g.
    "Invoice emailed to maria@… Mar 3, viewed Mar 4 · Invoice to sam@… failed (mailbox
    unavailable) · Reminder emailed to maria@… Mar 18 (in a digest with INV-000002) ·
    Paid in full Mar 20". `paid_at` is when the invoice was paid in full, if it was.

    Plain text: escape it for Slack mrkdwn (&, <, >) where it is shown.
    """
    paid = [] if paid_at is None else [_("Paid in full {day}", day=_day(paid_at, tz))]
    if not notices:
        return " · ".join([_("No email notices yet."), *paid])
    parts: list[str] = []
    for n in notices:
        label = template_label(n.template)
        who = redact_address(n.to_address)
        if n.status == DIGESTED:
            # Still "digested" after resolving: the digest it went into was deleted.
            parts.append(
                _("{label} to {who} not sent (its digest was removed)", label=label, who=who)
            )
            continue
        # Suffixes: each starts with its own separator, so an absent one leaves nothing.
        if n.digest_id is None:
            note = ""
        elif n.digest_with:
            note = _(" (in a digest with {numbers})", numbers=", ".join(n.digest_with))
        else:
            note = _(" (in a digest)")
        viewed = "" if n.viewed_at is None else _(", viewed {day}", day=_day(n.viewed_at, tz))
        said = {"label": label, "who": who, "note": note}
        if n.status == "sent" and n.sent_at is not None:
            parts.append(
                _(
                    "{label} emailed to {who} {day}{viewed}{note}",
                    day=_day(n.sent_at, tz),
                    viewed=viewed,
                    **said,
                )
            )
        elif n.status == "bounced":
            when = f" {_day(n.bounced_at, tz)}" if n.bounced_at is not None else ""
            parts.append(_("{label} to {who} bounced{when}{note}", when=when, **said))
        elif n.status == "failed":
            error = _short_error(n.last_error)
            parts.append(_("{label} to {who} failed ({error}){note}", error=error, **said))
        elif n.status == WITHDRAWN:
            parts.append(
                _("{label} to {who} not sent: the invoice was settled first{note}", **said)
            )
        elif n.status == "held":
            parts.append(_("{label} to {who} held until the pending decision{note}", **said))
        elif n.last_error:
            error = _short_error(n.last_error)
            parts.append(_("{label} to {who} retrying ({error}){note}", error=error, **said))
        else:
            parts.append(_("{label} to {who} queued{note}", **said))
    return " · ".join([*parts, *paid])


async def invoice_delivery_line(db: Db, invoice_id: int, tz: tzinfo | None = None) -> str:
    """`delivery_summary` of the invoice's notices, ending with when it was paid in full."""
    session = session_of(db)
    invoice = (
        await session.execute(
            select(m.Invoice.status, m.Invoice.paid_at).where(m.Invoice.id == invoice_id)
        )
    ).first()
    paid_at = None
    if invoice is not None and invoice.status == "paid":
        paid_at = invoice.paid_at
    return delivery_summary(await notices_for_invoice(session, invoice_id), tz, paid_at=paid_at)
