"""Use cases for damage incidents: open, move through statuses, notes, photos, badges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from workflows.devices import existing_device
from workflows.errors import NotFound, ValidationError
from workflows.i18n import _
from workflows.incident_status import IncidentStatus, check_transition
from workflows.insurance import CoverageBadge, coverage_badge, invoice_claim_key
from workflows.offenders import (
    DEFAULT_RULES,
    OffenderRule,
    newly_tripped,
    parse_flags,
    window_start,
)
from workflows.permissions import Actor, Permission, require
from workflows.ports import (
    Context,
    IncidentRecord,
    NewIncident,
    NewStudentFlag,
    SettingsRecord,
    StoredPhoto,
)

MAX_DESCRIPTION = 4000
MAX_NOTE = 4000
# Districts log old damage found at collection time, but not from another decade.
MAX_BACKDATE = timedelta(days=5 * 366)


def end_of_local_day(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz) - timedelta(
        microseconds=1
    )


@dataclass(frozen=True)
class OpenIncident:
    device_id: int
    occurred_on: date
    flags: tuple[str, ...]
    description: str = ""
    student_id: int | None = None
    ticket_ref: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class OpenedIncident:
    incident: IncidentRecord
    created: bool
    new_offender_flags: tuple[str, ...] = field(default=())


def offender_rules(settings: SettingsRecord) -> tuple[OffenderRule, ...]:
    if not settings.offender_rules:
        return DEFAULT_RULES
    return tuple(OffenderRule(**rule) for rule in settings.offender_rules)


def restricted_statuses(settings: SettingsRecord) -> frozenset[str]:
    return frozenset(settings.restricted_statuses)


async def existing_incident(
    ctx: Context, incident_id: int, *, lock: bool = False
) -> IncidentRecord:
    """The incident (locked for the change when `lock`), or NotFound."""
    incident = await ctx.store.incidents.get(incident_id, lock=lock)
    if incident is None:
        raise NotFound(_("Incident #{incident_id} doesn't exist.", incident_id=incident_id))
    return incident


async def check_new_incident(ctx: Context, actor: Actor, cmd: OpenIncident) -> None:
    """The rules `open_incident` applies, checked without writing: a form can show a broken
    rule next to its field, then open the incident after it has answered."""
    require(actor, Permission.MANAGE_INCIDENTS)
    await existing_device(ctx, cmd.device_id)
    _checked_fields(ctx, cmd)
    if cmd.student_id is not None and await ctx.store.people.student(cmd.student_id) is None:
        raise NotFound(_("That student isn't in DeviceCare."), field="student")


def _checked_fields(ctx: Context, cmd: OpenIncident) -> tuple[tuple[str, ...], str]:
    """(flags, description) once the form's own rules hold."""
    flags = parse_flags(cmd.flags)
    if not flags:
        raise ValidationError(_("Pick at least one incident type."), field="flags")
    today = ctx.today()
    if cmd.occurred_on > today:
        raise ValidationError(_("The incident date can't be in the future."), field="occurred_on")
    if today - cmd.occurred_on > MAX_BACKDATE:
        raise ValidationError(_("The incident date is too far in the past."), field="occurred_on")
    description = cmd.description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            _("The description is too long (at most {max} characters).", max=MAX_DESCRIPTION),
            field="description",
        )
    return flags, description


async def open_incident(ctx: Context, actor: Actor, cmd: OpenIncident) -> OpenedIncident:
    require(actor, Permission.MANAGE_INCIDENTS)
    store = ctx.store
    # Locking the device first serialises a redelivered request behind the original, so the
    # idempotency check below sees it once it has committed.
    device = await existing_device(ctx, cmd.device_id, lock=True)
    if cmd.idempotency_key:
        existing = await store.incidents.by_key(cmd.idempotency_key)
        if existing is not None:
            return OpenedIncident(existing, created=False)
    flags, description = _checked_fields(ctx, cmd)
    student_id = cmd.student_id
    if student_id is None:
        # Whoever had the device on the day it happened, not whoever holds it now.
        student_id = await store.devices.holder_at(
            device.id, end_of_local_day(cmd.occurred_on, ctx.tz)
        )
    elif await store.people.student(student_id) is None:
        raise NotFound(_("That student isn't in DeviceCare."), field="student")

    incident = await store.incidents.add(
        NewIncident(
            device_id=device.id,
            student_id=student_id,
            reported_by_id=actor.staff_id,
            occurred_on=cmd.occurred_on,
            description=description,
            flags=flags,
            ticket_ref=cmd.ticket_ref,
            idempotency_key=cmd.idempotency_key,
        )
    )
    await store.activity.log(
        actor,
        "incident",
        incident.id,
        "opened",
        after={
            "device_id": device.id,
            "student_id": student_id,
            "flags": list(flags),
            "occurred_on": cmd.occurred_on.isoformat(),
            "status": incident.status,
        },
    )
    tripped: tuple[str, ...] = ()
    if student_id is not None:
        tripped = await _flag_repeat_offender(ctx, actor, incident, student_id, flags)
    return OpenedIncident(incident, created=True, new_offender_flags=tripped)


async def _flag_repeat_offender(
    ctx: Context, actor: Actor, incident: IncidentRecord, student_id: int, flags: tuple[str, ...]
) -> tuple[str, ...]:
    """Badge the student the moment an incident takes a flag's count over its threshold."""
    store = ctx.store
    settings = await store.settings.get()
    year = {
        "year_start_month": settings.school_year_start_month,
        "year_start_day": settings.school_year_start_day,
    }
    today = max(ctx.today(), incident.occurred_on)
    tripped: list[str] = []
    for rule in offender_rules(settings):
        if rule.flag not in flags:
            continue
        start = window_start(rule, today, **year)
        if incident.occurred_on < start:
            continue
        after = len(await store.student_flags.incident_dates(student_id, rule.flag, start, today))
        if not newly_tripped(rule, after - 1, after):
            continue
        if await store.student_flags.has(student_id, rule.flag, start):
            continue
        await store.student_flags.add(
            NewStudentFlag(
                student_id=student_id,
                flag=rule.flag,
                window_start=start,
                incident_count=after,
                incident_id=incident.id,
            )
        )
        await store.activity.log(
            actor,
            "student",
            student_id,
            "repeat_offender_flagged",
            after={"flag": rule.flag, "count": after, "threshold": rule.threshold},
        )
        tripped.append(rule.flag)
    return tuple(tripped)


async def change_incident_status(
    ctx: Context, actor: Actor, incident_id: int, target: IncidentStatus
) -> IncidentRecord:
    store = ctx.store
    restricted = restricted_statuses(await store.settings.get())
    # A restricted status granted to a role (Insurance Claim for billing) is that role's to
    # set even without Manage Incidents; everything else needs the permission.
    if target.value not in restricted or target.value not in actor.allowed_statuses:
        require(actor, Permission.MANAGE_INCIDENTS)
    incident = await existing_incident(ctx, incident_id, lock=True)
    check_transition(actor, IncidentStatus(incident.status), target, restricted)
    before = incident.status
    incident.status = target.value
    if target is IncidentStatus.CLOSED:
        incident.closed_at = ctx.now()
    elif before == IncidentStatus.CLOSED.value:
        incident.closed_at = None
    await store.activity.log(
        actor,
        "incident",
        incident.id,
        "status_changed",
        before={"status": before},
        after={"status": incident.status},
    )
    return incident


def check_note(body: str) -> str:
    """The note as stored, or a ValidationError for the form's field."""
    text = body.strip()
    if not text:
        raise ValidationError(_("The note is empty."), field="note")
    if len(text) > MAX_NOTE:
        raise ValidationError(
            _("Notes are limited to {max} characters.", max=MAX_NOTE), field="note"
        )
    return text


async def add_incident_note(ctx: Context, actor: Actor, incident_id: int, body: str) -> int:
    require(actor, Permission.MANAGE_INCIDENTS)
    incident = await existing_incident(ctx, incident_id)
    text = check_note(body)
    return await ctx.store.incidents.add_note(
        device_id=incident.device_id, incident_id=incident.id, actor=actor, body=text
    )


async def attach_photo(ctx: Context, actor: Actor, incident_id: int, photo: StoredPhoto) -> int:
    """Link a photo to the incident and, for life, to the incident's device."""
    require(actor, Permission.MANAGE_INCIDENTS)
    incident = await existing_incident(ctx, incident_id)
    photo_id = await ctx.store.incidents.add_photo(
        device_id=incident.device_id, incident_id=incident.id, actor=actor, photo=photo
    )
    await ctx.store.activity.log(
        actor,
        "incident",
        incident.id,
        "photo_added",
        after={"photo_id": photo_id, "sha256": photo.sha256},
    )
    return photo_id


async def incident_coverage_badge(ctx: Context, incident_id: int) -> CoverageBadge:
    """The coverage badge as of the incident's date, not today."""
    store = ctx.store
    incident = await existing_incident(ctx, incident_id)
    if incident.student_id is None:
        return coverage_badge(None, 0)
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id
    )
    if coverage is None:
        return coverage_badge(None, 0)
    used = await store.insurance.count_claims(coverage.claim_key)
    own = None
    for invoice in await store.invoices.for_incident(incident.id):
        if invoice.status != "cancelled" and invoice_claim_key(invoice) == coverage.claim_key:
            own = (invoice.insurance_snapshot or {}).get("claim_number")
    return coverage_badge(coverage, used, own_claim_number=own)
