"""A family's data: finding it, exporting it, and erasing it (workflows.privacy has the rules).

A family is found by a guardian's email: that guardian (every guardian row with the address),
the students they are guardian of, and any other guardian whose students are all among those
(a second parent of the same children), so nobody still linked to another student is touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    String,
    Table,
    Text,
    and_,
    cast,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.activity import activity_entry
from storage.blobs import BlobStore
from storage.session_of import Db, session_of
from workflows.clock import Clock
from workflows.errors import NotFound
from workflows.i18n import _
from workflows.invoices import OPEN_STATUSES
from workflows.permissions import Actor, Permission, require
from workflows.privacy import (
    ERASED_MAIL_DOMAIN,
    ERASED_TEXT,
    PersonalData,
    Replacement,
    Scrubber,
    check_open_balance,
    family_link_pattern,
    guardian_replacement,
    household_name,
    id_tokens,
    identifying_strings,
    name_words,
    pseudonym,
    student_replacement,
)

EXPORT_FORMAT = "devicecare-family-export/1"
# Never rewritten by an erasure: the audit trail's who, when, what (and the erasure records).
_FIXED_ACTIVITY = {
    "id",
    "at",
    "actor_staff_id",
    "actor_label",
    "entity_type",
    "entity_id",
    "action",
}
_SKIPPED_TABLES = {"privacy_erasures"}
# Which staff member wrote something is attribution, not the family's data: a technician named
# Lee keeps their name when the Lee family is erased.
_STAFF_LABELS = {"notes": {"author_label"}}


@dataclass
class Family:
    guardians: list[m.Guardian]  # the guardians with the email first, then a second parent
    students: list[m.Student]
    household_ids: list[int] = field(default_factory=list)
    invoice_ids: list[int] = field(default_factory=list)
    incident_ids: list[int] = field(default_factory=list)
    requester_ids: list[int] = field(default_factory=list)  # the guardians with the email

    @property
    def guardian_ids(self) -> list[int]:
        return [g.id for g in self.guardians]

    @property
    def student_ids(self) -> list[int]:
        return [s.id for s in self.students]


def _no_match() -> ColumnElement[bool]:
    return false()


def _in(column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    return column.in_(ids) if ids else _no_match()


async def _row_ids(
    session: AsyncSession, id_column: Any, column: Any, ids: Sequence[int]
) -> list[int]:
    """The ids (`id_column`) of the rows whose `column` is one of `ids`, in order."""
    stmt = select(id_column).where(_in(column, ids)).order_by(id_column)
    return list((await session.execute(stmt)).scalars())


async def find_family(db: Db, email: str) -> Family:
    """The family of the guardian with this email; NotFound (changing nothing) otherwise."""
    session = session_of(db)
    address = email.strip().lower()
    guardians = list(
        (
            await session.execute(
                select(m.Guardian)
                .where(func.lower(m.Guardian.email) == address, m.Guardian.erased_at.is_(None))
                .order_by(m.Guardian.id)
            )
        ).scalars()
    )
    if not address or not guardians:
        raise NotFound(
            _("No guardian has the email {email}.", email=repr(email.strip())), field="guardian"
        )
    ids = {g.id for g in guardians}
    links = (
        await session.execute(
            select(m.Guardianship.guardian_id, m.Guardianship.student_id).where(
                m.Guardianship.guardian_id.in_(ids)
            )
        )
    ).all()
    student_ids = {s for _, s in links}
    others = (
        await session.execute(
            select(m.Guardianship.guardian_id, m.Guardianship.student_id).where(
                m.Guardianship.guardian_id.in_(
                    select(m.Guardianship.guardian_id).where(
                        _in(m.Guardianship.student_id, sorted(student_ids))
                    )
                ),
                m.Guardianship.guardian_id.not_in(ids),
            )
        )
    ).all()
    by_guardian: dict[int, set[int]] = {}
    for guardian_id, student_id in others:
        by_guardian.setdefault(guardian_id, set()).add(student_id)
    co_guardians = sorted(g for g, students in by_guardian.items() if students <= student_ids)
    if co_guardians:
        guardians += list(
            (
                await session.execute(
                    select(m.Guardian)
                    .where(m.Guardian.id.in_(co_guardians), m.Guardian.erased_at.is_(None))
                    .order_by(m.Guardian.id)
                )
            ).scalars()
        )
    students = list(
        (
            await session.execute(
                select(m.Student)
                .where(_in(m.Student.id, sorted(student_ids)))
                .order_by(m.Student.id)
            )
        ).scalars()
    )
    family = Family(guardians, students, requester_ids=sorted(ids))
    family.invoice_ids = await _row_ids(
        session, m.Invoice.id, m.Invoice.student_id, family.student_ids
    )
    family.incident_ids = await _row_ids(
        session, m.Incident.id, m.Incident.student_id, family.student_ids
    )
    family.household_ids = await _own_households(session, family)
    return family


async def _own_households(session: AsyncSession, family: Family) -> list[int]:
    """Households whose every member is in the family (a shared one keeps its name)."""
    candidates = {g.household_id for g in family.guardians} | {
        s.household_id for s in family.students
    }
    own: list[int] = []
    for household_id in sorted(h for h in candidates if h is not None):
        members_g = set(
            (
                await session.execute(
                    select(m.Guardian.id).where(m.Guardian.household_id == household_id)
                )
            ).scalars()
        )
        members_s = set(
            (
                await session.execute(
                    select(m.Student.id).where(m.Student.household_id == household_id)
                )
            ).scalars()
        )
        if members_g <= set(family.guardian_ids) and members_s <= set(family.student_ids):
            own.append(household_id)
    return own


def _sections(
    family: Family, *, export: bool = False
) -> dict[str, tuple[Table, ColumnElement[bool]]]:
    """Every table holding something about the family, with the condition that picks it.

    An export is for the guardian who asked: another guardian of the same children (a parent
    who may live apart, perhaps under a court order) is left out, with the mail to and from
    them. An erasure reaches every guardian of the family."""
    g, s, inv, inc = (
        family.requester_ids if export else family.guardian_ids,
        family.student_ids,
        family.invoice_ids,
        family.incident_ids,
    )
    t = m.Base.metadata.tables
    pending = select(m.PendingPayment.id).where(_in(m.PendingPayment.invoice_id, inv))
    about = {
        "guardian": g,
        "student": s,
        "household": family.household_ids,
        "invoice": inv,
        "incident": inc,
    }
    activity = or_(
        *(
            and_(m.ActivityEntry.entity_type == kind, m.ActivityEntry.entity_id.in_(ids))
            for kind, ids in about.items()
            if ids
        ),
        and_(
            m.ActivityEntry.entity_type == "pending_payment",
            m.ActivityEntry.entity_id.in_(pending),
        ),
        and_(
            m.ActivityEntry.entity_type == "insurance_enrollment",
            m.ActivityEntry.entity_id.in_(
                select(m.InsuranceEnrollment.id).where(_in(m.InsuranceEnrollment.student_id, s))
            ),
        ),
        and_(
            m.ActivityEntry.entity_type == "invoice_adjustment",
            m.ActivityEntry.entity_id.in_(
                select(m.InvoiceAdjustment.id).where(_in(m.InvoiceAdjustment.invoice_id, inv))
            ),
        ),
        and_(
            m.ActivityEntry.entity_type == "cap_override",
            m.ActivityEntry.entity_id.in_(
                select(m.CapOverrideRequest.id).where(_in(m.CapOverrideRequest.incident_id, inc))
            ),
        ),
    )
    return {
        "guardians": (t["guardians"], _in(m.Guardian.id, g)),
        "students": (t["students"], _in(m.Student.id, s)),
        "households": (t["households"], _in(m.Household.id, family.household_ids)),
        "guardianships": (
            t["guardianships"],
            _in(m.Guardianship.guardian_id, g) if export else _in(m.Guardianship.student_id, s),
        ),
        "device_assignments": (t["device_assignments"], _in(m.DeviceAssignment.student_id, s)),
        "devices": (
            t["devices"],
            m.Device.id.in_(
                select(m.DeviceAssignment.device_id).where(_in(m.DeviceAssignment.student_id, s))
            ),
        ),
        "incidents": (t["incidents"], _in(m.Incident.id, inc)),
        "notes": (t["notes"], _in(m.Note.incident_id, inc)),
        "photos": (t["photos"], _in(m.Photo.incident_id, inc)),
        "student_flags": (t["student_flags"], _in(m.StudentFlag.student_id, s)),
        "insurance_enrollments": (
            t["insurance_enrollments"],
            _in(m.InsuranceEnrollment.student_id, s),
        ),
        "cap_override_requests": (
            t["cap_override_requests"],
            or_(
                _in(m.CapOverrideRequest.incident_id, inc),
                _in(m.CapOverrideRequest.invoice_id, inv),
            ),
        ),
        "device_collections": (t["device_collections"], _in(m.DeviceCollection.student_id, s)),
        "invoices": (t["invoices"], _in(m.Invoice.id, inv)),
        "invoice_lines": (t["invoice_lines"], _in(m.InvoiceLine.invoice_id, inv)),
        "payments": (t["payments"], _in(m.Payment.invoice_id, inv)),
        "installments": (t["installments"], _in(m.Installment.invoice_id, inv)),
        "waivers_and_refunds": (
            t["invoice_adjustments"],
            _in(m.InvoiceAdjustment.invoice_id, inv),
        ),
        "online_checkouts": (t["online_checkouts"], _in(m.OnlineCheckout.invoice_id, inv)),
        "payment_events": (t["payment_events"], _in(m.PaymentEvent.invoice_id, inv)),
        "reported_payments": (t["pending_payments"], _in(m.PendingPayment.invoice_id, inv)),
        "reported_payment_parts": (
            t["pending_payment_parts"],
            m.PendingPaymentPart.pending_payment_id.in_(pending),
        ),
        "notices_sent": (
            t["notices"],
            _in(m.Notice.guardian_id, g)
            if export
            else or_(_in(m.Notice.guardian_id, g), _in(m.Notice.invoice_id, inv)),
        ),
        "mail_received": (
            t["inbound_messages"],
            _in(m.InboundMessage.guardian_id, g)
            if export
            else or_(_in(m.InboundMessage.guardian_id, g), _in(m.InboundMessage.invoice_id, inv)),
        ),
        "activity_log": (t["activity_log"], activity),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    path: Path
    counts: dict[str, int]
    photos: int


_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


async def read_family(session: AsyncSession, family: Family) -> dict[str, list[dict[str, Any]]]:
    """Every row about the family, table by table, as JSON-ready dictionaries."""
    data: dict[str, list[dict[str, Any]]] = {}
    for name, (table, condition) in _sections(family, export=True).items():
        rows = (
            await session.execute(select(table).where(condition).order_by(*table.primary_key))
        ).mappings()
        data[name] = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    return data


async def export_family(
    db: Db,
    blobs: BlobStore,
    family: Family,
    folder: Path,
    *,
    now: datetime,
    actor: Actor,
) -> ExportResult:
    """Write family.json, the photos and the received mail into `folder` (created new)."""
    session = session_of(db)
    data = await read_family(session, family)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)  # personal data: readable by whoever ran the export only
    photos = 0
    for photo in data["photos"]:
        try:
            content = await blobs.get(photo["blob_key"])
        except (FileNotFoundError, ValueError):
            photo["file"] = None  # the row survives a lost file; say so instead of failing
            continue
        name = f"photos/photo-{photo['id']}{_EXTENSIONS.get(photo['content_type'], '.bin')}"
        (folder / "photos").mkdir(mode=0o700, exist_ok=True)
        (folder / name).write_bytes(content)
        photo["file"] = name
        photos += 1
    for message in data["mail_received"]:
        try:
            raw = await blobs.get(message["raw_blob_key"])
        except (FileNotFoundError, ValueError):
            message["file"] = None
            continue
        name = f"mail/message-{message['id']}.eml"
        (folder / "mail").mkdir(mode=0o700, exist_ok=True)
        (folder / name).write_bytes(raw)
        message["file"] = name
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": now.isoformat(),
        "exported_by": actor.name,
        "requested_for": [g.email for g in family.guardians[:1]],
        **data,
    }
    (folder / "family.json").write_text(
        json.dumps(document, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    counts = {name: len(rows) for name, rows in data.items()}
    session.add(
        activity_entry(
            actor,
            now,
            "guardian",
            family.guardians[0].id,
            "data_exported",
            after={"rows": sum(counts.values()), "photos": photos},
            comment="A copy of everything held about the family was exported.",
        )
    )
    await session.flush()
    return ExportResult(folder, counts, photos)


def zip_folder(folder: Path) -> Path:
    """The folder as a .zip beside it; the folder is removed."""
    archive = Path(shutil.make_archive(str(folder), "zip", root_dir=folder))
    os.chmod(archive, 0o600)
    shutil.rmtree(folder)
    return archive


# --- erase ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureResult:
    pseudonym: str
    guardians: int
    students: int
    invoices: int
    rows_rewritten: int
    open_balance_cents: int
    # Raw mail files nobody else refers to, removed once the erasure is committed.
    blobs_to_delete: list[str]


def _person(p: m.Guardian | m.Student) -> PersonalData:
    return PersonalData(
        first_name=p.first_name,
        last_name=p.last_name,
        email=p.email,
        phone=getattr(p, "phone", None),
        sis_id=p.sis_id,
    )


def _text_columns(table: Table) -> list[str]:
    skip = _FIXED_ACTIVITY if table.name == "activity_log" else _STAFF_LABELS.get(table.name, set())
    return [
        c.name
        for c in table.columns
        if isinstance(c.type, String | JSON) or isinstance(getattr(c.type, "impl", None), JSON)
        if c.name not in skip
    ]


# Printable ASCII without the quote and backslash, which JSON escapes.
_PLAIN_RUN = re.compile(r"[ !#-\[\]-~]{3,}")


def search_fragments(needles: Iterable[str]) -> list[str] | None:
    """For each needle, its longest plain ASCII run: a row without any of them can't hold a
    needle, whichever case it is in and even inside JSON (which escapes other characters).
    None when some needle has no such run (then every row has to be read)."""
    fragments: set[str] = set()
    for needle in needles:
        runs = _PLAIN_RUN.findall(needle)
        if not runs:
            return None
        fragments.add(max(runs, key=len))
    return sorted(fragments)


async def _scrub(
    session: AsyncSession,
    table: Table,
    scrubber: Scrubber,
    condition: ColumnElement[bool] | None = None,
    fragments: list[str] | None = None,
) -> int:
    """Rewrite personal strings in every text and JSON column of the chosen rows.

    With `fragments`, the database first narrows the rows to those containing one (ignoring
    ASCII case), so a large activity log isn't read whole into memory."""
    columns = _text_columns(table)
    if not columns:
        return 0
    keys = list(table.primary_key.columns)
    query = select(*keys, *(table.c[c] for c in columns))
    if condition is not None:
        query = query.where(condition)
    if fragments is not None:
        if not fragments:
            return 0
        query = query.where(
            or_(
                *(
                    cast(table.c[c], Text).icontains(f, autoescape=True)
                    for c in columns
                    for f in fragments
                )
            )
        )
    changed = 0
    for row in (await session.execute(query)).all():
        values = dict(zip(columns, row[len(keys) :], strict=True))
        new = {}
        for column, value in values.items():
            if value is None:
                continue
            scrubbed = scrubber.value(value)
            if scrubbed != value:
                new[column] = scrubbed
        if new:
            where = and_(*(k == row[i] for i, k in enumerate(keys)))
            await session.execute(update(table).where(where).values(**new))
            changed += 1
    return changed


async def open_balance_cents(session: AsyncSession, family: Family) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(m.invoice_balance()), 0)).where(
                _in(m.Invoice.id, family.invoice_ids), m.Invoice.status.in_(OPEN_STATUSES)
            )
        )
    ).scalar_one()
    return int(total)


async def erase_family(
    db: Db,
    clock: Clock,
    blobs: BlobStore,
    actor: Actor,
    family: Family,
    *,
    force: bool,
) -> ErasureResult:
    """Pseudonymise the family in one transaction (the caller commits)."""
    session = session_of(db)
    require(actor, Permission.MANAGE_FAMILY_DATA)
    balance = await open_balance_cents(session, family)
    check_open_balance(balance, force=force)
    now = clock.now()
    erasure = m.PrivacyErasure(
        pseudonym=f"pending-{secrets.token_hex(8)}",  # named once its id is known
        erased_by_id=actor.staff_id,
        erased_by_label=actor.name,
        started_at=now,
    )
    session.add(erasure)
    await session.flush()  # from here on the activity log accepts this erasure's rewrites
    tag = pseudonym(erasure.id)
    erasure.pseudonym = tag

    phrases: dict[str, str] = {}
    words: dict[str, str] = {}
    ids: dict[str, str] = {}
    stand_ins: list[tuple[m.Guardian | m.Student, Replacement]] = []
    for n, guardian in enumerate(family.guardians, start=1):
        stand_ins.append((guardian, guardian_replacement(tag, n)))
    for n, student in enumerate(family.students, start=1):
        stand_ins.append((student, student_replacement(tag, n)))
    for person, stand_in in stand_ins:
        phrases.update(identifying_strings(_person(person), stand_in))
        words.update(name_words(_person(person), stand_in))
        ids.update(id_tokens(_person(person), stand_in))
    households = (
        await session.execute(select(m.Household).where(_in(m.Household.id, family.household_ids)))
    ).scalars()
    for household in households:
        if len(household.name.strip()) >= 2:
            phrases[household.name.strip()] = household_name(tag)
        household.name = household_name(tag)
    links = [family_link_pattern(g) for g in family.guardian_ids]
    everywhere = Scrubber(phrases, patterns=links, ids=ids)
    about_them = Scrubber(phrases, words, patterns=links, ids=ids)
    link_starts = [f"g{g}n" for g in family.guardian_ids]
    phrase_fragments = search_fragments([*phrases, *ids])
    if phrase_fragments is not None:
        phrase_fragments += link_starts

    for person, stand_in in stand_ins:
        person.first_name = stand_in.first_name
        person.last_name = stand_in.last_name
        person.sis_id = stand_in.sis_id
        person.email = None
        person.erased_at = now
        if isinstance(person, m.Guardian):
            person.phone = None
            person.email_bouncing_since = None
    blobs_to_delete = await _erase_mail(session, blobs, family, tag)
    for person, stand_in in stand_ins:
        if isinstance(person, m.Guardian):
            await session.execute(
                update(m.Notice)
                .where(m.Notice.guardian_id == person.id)
                .values(to_address=stand_in.email)
            )
    await session.execute(
        update(m.Photo)
        .where(_in(m.Photo.incident_id, family.incident_ids))
        .values(original_filename=None, source_url=None)  # a permalink names the file
    )
    await session.flush()

    rewritten = 0
    sections = _sections(family)
    for name, (table, condition) in sections.items():
        if name in {"guardians", "students"}:
            continue
        rewritten += await _scrub(session, table, about_them, condition)
    pending_outbox = await _withdraw_outbox(session, everywhere)
    pending_outbox += await _withdraw_notices(session, family)
    for table in m.Base.metadata.sorted_tables:
        if table.name in _SKIPPED_TABLES:
            continue
        # People erased (now or before) hold only stand-ins, which no needle may touch again.
        unerased = table.c.erased_at.is_(None) if "erased_at" in table.c else None
        rewritten += await _scrub(session, table, everywhere, unerased, fragments=phrase_fragments)

    summary = {
        "guardians": len(family.guardians),
        "students": len(family.students),
        "invoices": len(family.invoice_ids),
        "rows_rewritten": rewritten,
        "mail_withdrawn": pending_outbox,
        "forced": force and balance > 0,
        "open_balance_cents": balance,
    }
    erasure.finished_at = now
    erasure.summary = summary
    session.add(
        activity_entry(
            actor,
            now,
            "privacy_erasure",
            erasure.id,
            "family_erased",
            after={"pseudonym": tag, **summary},
            comment=f"Personal data of a departed family replaced by {tag}.",
        )
    )
    await session.flush()
    return ErasureResult(
        pseudonym=tag,
        guardians=len(family.guardians),
        students=len(family.students),
        invoices=len(family.invoice_ids),
        rows_rewritten=rewritten,
        open_balance_cents=balance,
        blobs_to_delete=blobs_to_delete,
    )


async def _erase_mail(
    session: AsyncSession, blobs: BlobStore, family: Family, tag: str
) -> list[str]:
    """Received mail keeps its row (routing, payments reported) but loses its words and file."""
    condition = or_(
        _in(m.InboundMessage.guardian_id, family.guardian_ids),
        _in(m.InboundMessage.invoice_id, family.invoice_ids),
    )
    messages = list((await session.execute(select(m.InboundMessage).where(condition))).scalars())
    if not messages:
        return []
    placeholder = await blobs.put(f"{ERASED_TEXT}\n".encode(), "message/rfc822")
    old_keys = {msg.raw_blob_key for msg in messages} - {placeholder}
    for msg in messages:
        msg.from_address = f"{tag.lower()}@{ERASED_MAIL_DOMAIN}"
        msg.subject = ERASED_TEXT
        msg.body_text = ERASED_TEXT
        msg.raw_blob_key = placeholder
    await session.flush()
    still_used = set(
        (
            await session.execute(
                select(m.InboundMessage.raw_blob_key).where(
                    m.InboundMessage.raw_blob_key.in_(old_keys)
                )
            )
        ).scalars()
    )
    return sorted(old_keys - still_used)


async def _withdraw_outbox(session: AsyncSession, scrubber: Scrubber) -> int:
    """Mail still waiting to go to the family is withdrawn: its address is no longer theirs."""
    rows = (
        await session.execute(
            select(m.OutboxMessage.id, m.OutboxMessage.payload).where(
                m.OutboxMessage.status == "pending"
            )
        )
    ).all()
    withdrawn = 0
    for row_id, payload in rows:
        if scrubber.value(payload) != payload:
            await session.execute(
                update(m.OutboxMessage)
                .where(m.OutboxMessage.id == row_id)
                .values(status="failed", last_error="withdrawn: the family's data was erased")
            )
            withdrawn += 1
    return withdrawn


_NOTICE_DONE = ("sent", "bounced", "digested", "withdrawn")


async def _withdraw_notices(session: AsyncSession, family: Family) -> int:
    """Notices not yet sent to the family won't be: the worker skips a withdrawn notice."""
    result = await session.execute(
        update(m.Notice)
        .where(_in(m.Notice.guardian_id, family.guardian_ids), m.Notice.status.not_in(_NOTICE_DONE))
        .values(status="withdrawn", last_error="withdrawn: the family's data was erased")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_blobs(blobs: BlobStore, keys: Sequence[str]) -> None:
    for key in keys:
        await blobs.delete(key)
