"""`SqlStore`: the unit of work the use cases run in, over one SQLAlchemy session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import lazyload

from storage import models as m
from storage import notices as notice_rows
from storage.card_refresh import CLOCK
from storage.device_search import DeviceMatch, search_devices
from storage.enrollment_store import EnrollmentStore
from storage.notices import queue_notice
from storage.outbox import new_message
from workflows.clock import Clock
from workflows.errors import ConflictError, NotFound
from workflows.insurance import ClaimKey, CoverageContext, PolicyTerms
from workflows.permissions import Actor, Permission
from workflows.ports import InvoiceLineSpec

# Message-IDs need a domain; the runtime passes the district's (from SMTP_FROM).
DEFAULT_MAIL_DOMAIN = "devicecare.invalid"
# A permission name left in the store by an older release is ignored, not fatal.
KNOWN_PERMISSIONS = frozenset(p.value for p in Permission)


class SqlStore(EnrollmentStore):
    """Commits on a clean exit, rolls back on an exception."""

    def __init__(
        self, session: AsyncSession, clock: Clock, *, mail_domain: str = DEFAULT_MAIL_DOMAIN
    ) -> None:
        self.session = session
        self.clock = clock
        self.session.info.setdefault(CLOCK, clock)  # storage.card_refresh dates its rows
        self.mail_domain = mail_domain
        self._for_update = session.bind is not None and session.bind.dialect.name != "sqlite"

    @classmethod
    def factory(cls, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> StoreFactory:
        return StoreFactory(sessions, clock)

    async def __aenter__(self) -> SqlStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.session.commit()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def flush(self) -> None:
        await self.session.flush()

    def _now(self) -> datetime:
        return self.clock.now()

    async def _get(self, model: type[Any], ident: int, lock: bool) -> Any:
        stmt = select(model).where(model.id == ident)
        if lock:
            stmt = self.locking(stmt)
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    def locking(self, stmt: Select[Any]) -> Select[Any]:
        """`stmt` as a read that locks its rows for this transaction and returns them as they
        are once the lock is held.

        SQLite takes the database write lock at BEGIN IMMEDIATE; FOR UPDATE is PostgreSQL's
        way. Either way the rows must be read again after the lock: an object this session
        loaded earlier (say by number, before locking) would otherwise keep its old values, and
        a balance checked against them lets a racing payment through twice and loses an update.
        """
        if self._for_update:
            stmt = stmt.with_for_update()
        return stmt.execution_options(populate_existing=True)

    # --- settings and people ----------------------------------------------------------------

    async def settings(self) -> m.DistrictSettings:
        row = await self.session.get(m.DistrictSettings, 1)
        if row is None:
            raise NotFound("District settings are missing; run `devicecare db upgrade`.")
        return row

    async def get_student(self, student_id: int) -> m.Student | None:
        return await self.session.get(m.Student, student_id)

    async def staff_name(self, staff_id: int) -> str | None:
        staff = await self.session.get(m.Staff, staff_id)
        return None if staff is None else staff.display_name

    async def get_role(self, name: str) -> m.Role | None:
        stmt = select(m.Role).where(func.lower(m.Role.name) == name.strip().lower())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def actor_for_staff(self, staff: m.Staff) -> Actor:
        role = staff.role
        return Actor(
            staff_id=staff.id,
            name=staff.display_name,
            role=role.name,
            permissions=frozenset(
                Permission(p) for p in role.permissions if p in KNOWN_PERMISSIONS
            ),
            allowed_statuses=frozenset(role.allowed_statuses),
            is_superadmin=role.is_superadmin,
        )

    async def actor_by_email(self, email: str) -> Actor | None:
        staff = (
            await self.session.execute(
                select(m.Staff).where(func.lower(m.Staff.email) == email.strip().lower())
            )
        ).scalar_one_or_none()
        if staff is None or not staff.active:
            return None
        return await self.actor_for_staff(staff)

    async def actor_by_slack_id(self, slack_user_id: str) -> Actor | None:
        found = await self.slack_contact(slack_user_id)
        return None if found is None else found[0]

    async def slack_contact(self, slack_user_id: str) -> tuple[Actor, datetime | None] | None:
        """The active staff member behind a Slack user, and when their Slack name was checked."""
        staff = (
            await self.session.execute(
                select(m.Staff).where(m.Staff.slack_user_id == slack_user_id)
            )
        ).scalar_one_or_none()
        if staff is None or not staff.active:
            return None
        return await self.actor_for_staff(staff), staff.slack_name_at

    async def set_slack_name(self, slack_user_id: str, slack_name: str) -> bool:
        """Slack told us the person's profile name (first contact, a check, or `user_change`).

        Returns whether a staff member's shown name changed; the change is kept in the log."""
        staff = (
            await self.session.execute(
                select(m.Staff).where(m.Staff.slack_user_id == slack_user_id)
            )
        ).scalar_one_or_none()
        if staff is None:
            return False
        staff.slack_name_at = self._now()
        slack_name = slack_name.strip()[:200]
        if not slack_name or slack_name == staff.slack_name:
            return False
        before = staff.display_name
        staff.slack_name = slack_name
        if staff.display_name == before:
            return False  # the same name as on file: nothing a person would notice
        await self.log(
            await self.actor_for_staff(staff),
            "staff",
            staff.id,
            "slack_name_changed",
            before={"name": before},
            after={"name": slack_name},
        )
        return True

    async def link_slack_user(
        self, email: str, slack_user_id: str, slack_name: str | None = None
    ) -> Actor | None:
        """First contact from Slack: find the staff member by email and remember their id
        (and their Slack profile name, so they are shown by it from the start)."""
        staff = (
            await self.session.execute(
                select(m.Staff).where(func.lower(m.Staff.email) == email.strip().lower())
            )
        ).scalar_one_or_none()
        if staff is None or not staff.active:
            return None
        if staff.slack_user_id is not None and staff.slack_user_id != slack_user_id:
            return None  # that email belongs to someone already linked to another Slack user
        if staff.slack_user_id is None:
            staff.slack_user_id = slack_user_id
            after: dict[str, Any] = {"slack_user_id": slack_user_id}
            if slack_name and slack_name.strip():
                # The name comes with the link, so the log has one entry for first contact.
                staff.slack_name = after["name"] = slack_name.strip()[:200]
                staff.slack_name_at = self._now()
            actor = await self.actor_for_staff(staff)
            await self.log(actor, "staff", staff.id, "slack_linked", after=after)
        elif slack_name:
            await self.set_slack_name(slack_user_id, slack_name)
        return await self.actor_for_staff(staff)

    # --- slack messages ---------------------------------------------------------------------

    async def slack_post(self, kind: str, entity_id: int) -> m.SlackPost | None:
        stmt = select(m.SlackPost).where(
            m.SlackPost.kind == kind, m.SlackPost.entity_id == entity_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def move_slack_post(self, kind: str, entity_id: int, channel: str, ts: str) -> None:
        """The record's message is somewhere else now (posted again after a deletion)."""
        await self.session.execute(
            update(m.SlackPost)
            .where(m.SlackPost.kind == kind, m.SlackPost.entity_id == entity_id)
            .values(channel=channel, ts=ts)
        )

    async def save_slack_post(self, kind: str, entity_id: int, channel: str, ts: str) -> None:
        self.session.add(
            m.SlackPost(
                kind=kind, entity_id=entity_id, channel=channel, ts=ts, created_at=self._now()
            )
        )
        await self.session.flush()

    async def slack_post_at(self, channel: str, ts: str) -> m.SlackPost | None:
        """The record whose message is at (channel, ts), e.g. the incident a thread belongs to."""
        stmt = select(m.SlackPost).where(m.SlackPost.channel == channel, m.SlackPost.ts == ts)
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    # --- devices ----------------------------------------------------------------------------

    async def get_device(self, device_id: int, *, lock: bool = False) -> m.Device | None:
        return await self._get(m.Device, device_id, lock)

    async def get_device_by_serial(self, serial: str, *, lock: bool = False) -> m.Device | None:
        stmt = select(m.Device).where(m.Device.serial == m.normalize_serial(serial))
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_device(
        self,
        *,
        serial: str,
        model: str,
        kind: str,
        building_id: int | None,
        asset_tag: str | None,
    ) -> m.Device:
        if asset_tag is not None:
            # Checked here so a reused tag is a message to the user, not an IntegrityError.
            stmt = select(m.Device).where(func.lower(m.Device.asset_tag) == asset_tag.lower())
            holder = (await self.session.execute(stmt.limit(1))).scalar_one_or_none()
            if holder is not None:
                raise ConflictError(
                    f"Asset tag {holder.asset_tag} is already on device {holder.serial}.",
                    field="asset_tag",
                )
        device = m.Device(
            serial=m.normalize_serial(serial),
            model=model,
            kind=kind,
            building_id=building_id,
            asset_tag=asset_tag,
            status="in_service",
            created_at=self._now(),
        )
        self.session.add(device)
        await self.session.flush()
        return device

    async def current_holder(self, device_id: int) -> int | None:
        stmt = select(m.DeviceAssignment.student_id).where(
            m.DeviceAssignment.device_id == device_id, m.DeviceAssignment.returned_at.is_(None)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def holder_at(self, device_id: int, at: datetime) -> int | None:
        """Who had the device at that moment (the assignment history, not today's holder)."""
        stmt = (
            select(m.DeviceAssignment.student_id)
            .where(
                m.DeviceAssignment.device_id == device_id,
                m.DeviceAssignment.assigned_at <= at,
                (m.DeviceAssignment.returned_at.is_(None)) | (m.DeviceAssignment.returned_at > at),
            )
            .order_by(m.DeviceAssignment.assigned_at.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def assign_device(self, device_id: int, student_id: int, *, reason: str) -> None:
        self.session.add(
            m.DeviceAssignment(
                device_id=device_id,
                student_id=student_id,
                assigned_at=self._now(),
                reason=reason,
            )
        )
        await self.session.flush()

    async def return_device(self, device_id: int, *, reason: str) -> None:
        await self.session.execute(
            update(m.DeviceAssignment)
            .where(
                m.DeviceAssignment.device_id == device_id,
                m.DeviceAssignment.returned_at.is_(None),
            )
            .values(returned_at=self._now(), return_reason=reason)
        )

    # --- incidents --------------------------------------------------------------------------

    async def get_incident(self, incident_id: int, *, lock: bool = False) -> m.Incident | None:
        return await self._get(m.Incident, incident_id, lock)

    async def find_incident_by_key(self, key: str) -> m.Incident | None:
        stmt = select(m.Incident).where(m.Incident.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_incident(
        self,
        *,
        device_id: int,
        student_id: int | None,
        reported_by_id: int | None,
        occurred_on: date,
        description: str,
        flags: Sequence[str],
        ticket_ref: str | None,
        idempotency_key: str | None,
    ) -> m.Incident:
        incident = m.Incident(
            device_id=device_id,
            student_id=student_id,
            reported_by_id=reported_by_id,
            occurred_on=occurred_on,
            description=description,
            status="open",
            ticket_ref=ticket_ref,
            opened_at=self._now(),
            idempotency_key=idempotency_key,
            flags=[m.IncidentFlag(flag=f) for f in flags],
        )
        self.session.add(incident)
        await self.session.flush()
        return incident

    async def add_note(
        self, *, device_id: int, incident_id: int | None, actor: Actor, body: str
    ) -> int:
        note = m.Note(
            device_id=device_id,
            incident_id=incident_id,
            author_staff_id=actor.staff_id,
            author_label=actor.name,
            body=body,
            created_at=self._now(),
        )
        self.session.add(note)
        await self.session.flush()
        return note.id

    async def add_photo(
        self,
        *,
        device_id: int,
        incident_id: int | None,
        actor: Actor,
        blob_key: str,
        content_type: str,
        size_bytes: int,
        sha256: str,
        width: int | None,
        height: int | None,
        original_filename: str | None,
        source: str,
        source_ref: str | None,
        source_url: str | None = None,
    ) -> int:
        photo = m.Photo(
            device_id=device_id,
            incident_id=incident_id,
            uploaded_by_id=actor.staff_id,
            blob_key=blob_key,
            content_type=content_type,
            size_bytes=size_bytes,
            sha256=sha256,
            width=width,
            height=height,
            original_filename=original_filename,
            source=source,
            source_ref=source_ref,
            source_url=source_url,
            created_at=self._now(),
        )
        self.session.add(photo)
        await self.session.flush()
        return photo.id

    async def flag_dates(self, student_id: int, flag: str, since: date, until: date) -> list[date]:
        stmt = (
            select(m.Incident.occurred_on)
            .join(m.IncidentFlag, m.IncidentFlag.incident_id == m.Incident.id)
            .where(
                m.Incident.student_id == student_id,
                m.IncidentFlag.flag == flag,
                m.Incident.occurred_on >= since,
                m.Incident.occurred_on <= until,
            )
        )
        return list((await self.session.execute(stmt)).scalars())

    async def has_student_flag(self, student_id: int, flag: str, window_start: date) -> bool:
        stmt = select(m.StudentFlag.id).where(
            m.StudentFlag.student_id == student_id,
            m.StudentFlag.flag == flag,
            m.StudentFlag.window_start == window_start,
        )
        return (await self.session.execute(stmt)).first() is not None

    async def add_student_flag(
        self,
        *,
        student_id: int,
        flag: str,
        window_start: date,
        incident_count: int,
        incident_id: int,
    ) -> None:
        self.session.add(
            m.StudentFlag(
                student_id=student_id,
                flag=flag,
                window_start=window_start,
                incident_count=incident_count,
                incident_id=incident_id,
                flagged_at=self._now(),
            )
        )
        await self.session.flush()

    # --- insurance --------------------------------------------------------------------------

    async def coverage_on(
        self, student_id: int, on: date, *, device_id: int | None = None, lock: bool = False
    ) -> CoverageContext | None:
        """The coverage on `on`: the damaged device's own plan when a policy insures it (it
        goes with the device, whoever holds it), else the student's enrollment."""
        if device_id is not None:
            device = await self._device_coverage_on(device_id, on, lock=lock)
            if device is not None:
                return device
        stmt = (
            select(m.InsuranceEnrollment)
            .where(
                m.InsuranceEnrollment.student_id == student_id,
                m.InsuranceEnrollment.status == "active",
                m.InsuranceEnrollment.term_start <= on,
                m.InsuranceEnrollment.term_end >= on,
            )
            .order_by(m.InsuranceEnrollment.term_start.desc(), m.InsuranceEnrollment.id.desc())
            .limit(1)
        )
        if lock and self._for_update:
            stmt = stmt.with_for_update(of=m.InsuranceEnrollment)
        enrollment = (await self.session.execute(stmt)).unique().scalar_one_or_none()
        if enrollment is None:
            return None
        return _coverage_context(
            enrollment.policy,
            term_label=enrollment.term_label,
            term_start=enrollment.term_start,
            term_end=enrollment.term_end,
            enrollment_id=enrollment.id,
        )

    async def _device_coverage_on(
        self, device_id: int, on: date, *, lock: bool
    ) -> CoverageContext | None:
        dc, policy = m.DeviceCoverage, m.InsurancePolicy
        stmt = (
            select(dc, policy)
            .join(
                policy,
                (policy.device_plan.is_not(None))
                & (policy.active.is_(True))
                & (func.lower(dc.plan).startswith(func.lower(policy.device_plan))),
            )
            .where(dc.device_id == device_id, dc.coverage_start <= on, dc.coverage_end >= on)
            .order_by(dc.coverage_start.desc(), dc.id.desc(), policy.id)
            .limit(1)
        )
        if lock and self._for_update:
            # The coverage row is what claims count against: locking it serialises them.
            stmt = stmt.with_for_update(of=dc)
        found = (await self.session.execute(stmt)).first()
        if found is None:
            return None
        coverage, insurer = found
        return _coverage_context(
            insurer,
            term_label=f"{coverage.plan}, {coverage.coverage_start:%Y-%m-%d} to "
            f"{coverage.coverage_end:%Y-%m-%d}",
            term_start=coverage.coverage_start,
            term_end=coverage.coverage_end,
            device_coverage_id=coverage.id,
        )

    async def count_claims(self, key: ClaimKey) -> int:
        inv = m.Invoice
        column = (
            inv.claim_device_coverage_id
            if key.device_coverage_id is not None
            else inv.claim_enrollment_id
        )
        value = key.device_coverage_id if key.device_coverage_id is not None else key.enrollment_id
        stmt = select(func.count(inv.id)).where(column == value, inv.status != "cancelled")
        return int((await self.session.execute(stmt)).scalar_one())

    async def add_override_request(
        self,
        *,
        incident_id: int,
        enrollment_id: int | None,
        invoice_id: int | None,
        requested_by_id: int | None,
        reason: str | None,
    ) -> m.CapOverrideRequest:
        request = m.CapOverrideRequest(
            incident_id=incident_id,
            enrollment_id=enrollment_id,
            invoice_id=invoice_id,
            requested_by_id=requested_by_id,
            requested_at=self._now(),
            status="pending",
            reason=reason,
        )
        self.session.add(request)
        await self.session.flush()
        return request

    async def get_override_request(
        self, request_id: int, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        return await self._get(m.CapOverrideRequest, request_id, lock)

    async def _override_for(
        self, incident_id: int, status: str, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        stmt = select(m.CapOverrideRequest).where(
            m.CapOverrideRequest.incident_id == incident_id,
            m.CapOverrideRequest.status == status,
        )
        if status == "approved":
            stmt = stmt.where(m.CapOverrideRequest.invoice_id.is_(None))
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def pending_override_for(
        self, incident_id: int, *, lock: bool = False
    ) -> m.CapOverrideRequest | None:
        """The incident's waiting request; `lock` takes it as a decision would (first)."""
        return await self._override_for(incident_id, "pending", lock=lock)

    async def approved_override_for(self, incident_id: int) -> m.CapOverrideRequest | None:
        return await self._override_for(incident_id, "approved")

    # --- invoices and payments --------------------------------------------------------------

    async def fee_items(self, ids: Sequence[int]) -> list[m.FeeItem]:
        if not ids:
            return []
        stmt = select(m.FeeItem).where(m.FeeItem.id.in_(set(ids)))
        return list((await self.session.execute(stmt)).scalars())

    async def active_fee_items(self) -> list[m.FeeItem]:
        stmt = select(m.FeeItem).where(m.FeeItem.active.is_(True)).order_by(m.FeeItem.name)
        return list((await self.session.execute(stmt)).scalars())

    async def next_invoice_number(self, prefix: str) -> str:
        stmt = (
            update(m.Counter)
            .where(m.Counter.name == "invoice")
            .values(value=m.Counter.value + 1)
            .returning(m.Counter.value)
        )
        value = (await self.session.execute(stmt)).scalar_one_or_none()
        if value is None:
            self.session.add(m.Counter(name="invoice", value=1))
            await self.session.flush()
            value = 1
        return f"{prefix}-{value:06d}"

    async def get_invoice(self, invoice_id: int, *, lock: bool = False) -> m.Invoice | None:
        if lock:
            return await self.lock_invoice(invoice_id)
        return await self._get(m.Invoice, invoice_id, lock)

    async def lock_invoice(self, invoice_id: int, *, lines: bool = True) -> m.Invoice | None:
        """The invoice, locked and read fresh: every path that writes money on an invoice
        (payments, replies confirmed, portal rows, Stripe, plans, waivers, refunds) takes this
        lock before it reads the balance, so they queue on one another. Without `lines`, its
        lines are left unloaded (the webhook path doesn't need them)."""
        stmt = select(m.Invoice).where(m.Invoice.id == invoice_id)
        if not lines:
            stmt = stmt.options(lazyload(m.Invoice.lines))
        return (await self.session.execute(self.locking(stmt))).scalar_one_or_none()

    async def get_invoice_by_number(self, number: str) -> m.Invoice | None:
        stmt = select(m.Invoice).where(func.upper(m.Invoice.number) == number.strip().upper())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def find_invoice_by_key(self, key: str) -> m.Invoice | None:
        stmt = select(m.Invoice).where(m.Invoice.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def invoices_for_incident(self, incident_id: int) -> list[m.Invoice]:
        stmt = select(m.Invoice).where(m.Invoice.incident_id == incident_id).order_by(m.Invoice.id)
        return list((await self.session.execute(stmt)).scalars())

    async def add_invoice(
        self,
        *,
        number: str,
        student_id: int,
        incident_id: int | None,
        device_id: int | None,
        lines: Sequence[InvoiceLineSpec],
        subtotal_cents: int,
        insurance_cents: int,
        due_date: date | None,
        automation_enabled: bool,
        status: str,
        claim_enrollment_id: int | None,
        cap_reached: bool,
        override_applied: bool,
        override_approved_by_id: int | None,
        insurance_snapshot: dict[str, Any] | None,
        created_by_id: int | None,
        idempotency_key: str | None,
        claim_device_coverage_id: int | None = None,
        kind: str = "incident",
        annual_fee_id: int | None = None,
        collection_id: int | None = None,
        premium_enrollment_id: int | None = None,
    ) -> m.Invoice:
        invoice = m.Invoice(
            kind=kind,
            annual_fee_id=annual_fee_id,
            collection_id=collection_id,
            premium_enrollment_id=premium_enrollment_id,
            waived_cents=0,
            refunded_cents=0,
            number=number,
            student_id=student_id,
            incident_id=incident_id,
            device_id=device_id,
            status=str(status),
            subtotal_cents=subtotal_cents,
            insurance_cents=insurance_cents,
            total_cents=subtotal_cents - insurance_cents,
            paid_cents=0,
            due_date=due_date,
            automation_enabled=automation_enabled,
            auto_cancelled=False,
            claim_enrollment_id=claim_enrollment_id,
            claim_device_coverage_id=claim_device_coverage_id,
            cap_reached=cap_reached,
            override_applied=override_applied,
            override_approved_by_id=override_approved_by_id,
            insurance_snapshot=insurance_snapshot,
            created_by_id=created_by_id,
            created_at=self._now(),
            idempotency_key=idempotency_key,
            lines=[
                m.InvoiceLine(
                    position=i,
                    description=line.description,
                    kind=line.kind,
                    fee_item_id=line.fee_item_id,
                    quantity=line.quantity,
                    unit_cents=line.unit_cents,
                    amount_cents=line.amount_cents,
                )
                for i, line in enumerate(lines, start=1)
            ],
        )
        self.session.add(invoice)
        await self.session.flush()
        return invoice

    async def find_payment_by_key(self, key: str) -> m.Payment | None:
        stmt = select(m.Payment).where(m.Payment.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def find_payment_by_reference(
        self, invoice_id: int, reference_key: str
    ) -> m.Payment | None:
        stmt = select(m.Payment).where(
            m.Payment.invoice_id == invoice_id, m.Payment.reference_key == reference_key
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_payment(
        self,
        *,
        invoice_id: int,
        amount_cents: int,
        method: str,
        reference: str | None,
        received_on: date,
        recorded_by_id: int | None,
        idempotency_key: str,
        reference_key: str | None = None,
    ) -> m.Payment:
        payment = m.Payment(
            invoice_id=invoice_id,
            amount_cents=amount_cents,
            method=method,
            reference=reference,
            received_on=received_on,
            recorded_by_id=recorded_by_id,
            recorded_at=self._now(),
            idempotency_key=idempotency_key,
            reference_key=reference_key,
        )
        self.session.add(payment)
        await self.session.flush()
        return payment

    async def get_payment(self, payment_id: int, *, lock: bool = False) -> m.Payment | None:
        return await self._get(m.Payment, payment_id, lock)

    async def add_adjustment(
        self,
        *,
        invoice_id: int,
        kind: str,
        amount_cents: int,
        reason: str,
        status: str,
        requested_by_id: int | None,
        payment_id: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.InvoiceAdjustment:
        adjustment = m.InvoiceAdjustment(
            invoice_id=invoice_id,
            kind=kind,
            amount_cents=amount_cents,
            reason=reason,
            status=status,
            payment_id=payment_id,
            requested_by_id=requested_by_id,
            requested_at=self._now(),
            idempotency_key=idempotency_key,
        )
        self.session.add(adjustment)
        await self.session.flush()
        return adjustment

    async def get_adjustment(
        self, adjustment_id: int, *, lock: bool = False
    ) -> m.InvoiceAdjustment | None:
        return await self._get(m.InvoiceAdjustment, adjustment_id, lock)

    async def find_adjustment_by_key(self, key: str) -> m.InvoiceAdjustment | None:
        stmt = select(m.InvoiceAdjustment).where(m.InvoiceAdjustment.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def adjustments_for(self, invoice_id: int) -> list[m.InvoiceAdjustment]:
        stmt = (
            select(m.InvoiceAdjustment)
            .where(m.InvoiceAdjustment.invoice_id == invoice_id)
            .order_by(m.InvoiceAdjustment.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def refunded_on_payment(self, payment_id: int) -> int:
        """Cents already refunded from one payment (applied refunds only)."""
        stmt = select(func.coalesce(func.sum(m.InvoiceAdjustment.amount_cents), 0)).where(
            m.InvoiceAdjustment.payment_id == payment_id,
            m.InvoiceAdjustment.kind == "refund",
            m.InvoiceAdjustment.status == "applied",
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def payments_for_invoice(self, invoice_id: int) -> list[m.Payment]:
        stmt = select(m.Payment).where(m.Payment.invoice_id == invoice_id).order_by(m.Payment.id)
        return list((await self.session.execute(stmt)).scalars())

    # --- balances ---------------------------------------------------------------------------

    async def balance_by_student(self) -> dict[int, int]:
        """Open balance per student, summed in SQL."""
        stmt = (
            select(m.Invoice.student_id, func.sum(m.invoice_balance()))
            .where(m.Invoice.status != "cancelled")
            .group_by(m.Invoice.student_id)
        )
        return {sid: int(total) for sid, total in (await self.session.execute(stmt)).all()}

    async def balance_by_household(self) -> dict[int, int]:
        stmt = (
            select(m.Student.household_id, func.sum(m.invoice_balance()))
            .join(m.Student, m.Student.id == m.Invoice.student_id)
            .where(m.Invoice.status != "cancelled", m.Student.household_id.is_not(None))
            .group_by(m.Student.household_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return {hid: int(total) for hid, total in rows if hid is not None}

    # --- audit and outbox -------------------------------------------------------------------

    async def log(
        self,
        actor: Actor,
        entity_type: str,
        entity_id: int | None,
        action: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        comment: str | None = None,
    ) -> None:
        self.session.add(
            m.ActivityEntry(
                at=self._now(),
                actor_staff_id=actor.staff_id,
                actor_label=actor.name,
                entity_type=entity_type,
                entity_id=entity_id,
                action=action,
                before=before,
                after=after,
                comment=comment,
            )
        )

    async def log_refusal(self, actor: Actor, what: str, reason: str) -> None:
        """A refused action, kept for audit under the actor's own security record."""
        await self.log(actor, "security", actor.staff_id, "refused", comment=f"{what}: {reason}")

    async def enqueue(
        self, kind: str, dedupe_key: str, payload: dict[str, Any], *, fresh_key: bool = False
    ) -> bool:
        """Queue a side effect with the current change; False when the key was queued before.

        `fresh_key`: the key was just made unique (a random part), so the lookup is skipped.
        """
        if fresh_key:
            self.session.add(new_message(kind, dedupe_key, payload, self._now()))
            return True
        exists = (
            await self.session.execute(
                select(m.OutboxMessage.id).where(m.OutboxMessage.dedupe_key == dedupe_key)
            )
        ).first()
        if exists is not None:
            return False
        self.session.add(new_message(kind, dedupe_key, payload, self._now()))
        await self.session.flush()
        return True

    async def queue_notice(
        self,
        template: str,
        invoice_id: int,
        dedupe_key: str,
        context: dict[str, Any] | None = None,
        *,
        held: bool = False,
    ) -> int:
        """Email the invoice's guardians (one notice each); returns how many were queued.

        `held`: written but not sent until `release_held_notices`."""
        notices = await queue_notice(
            self.session,
            self._now(),
            template=template,
            invoice_id=invoice_id,
            dedupe_key=dedupe_key,
            context=context or {},
            mail_domain=self.mail_domain,
            held=held,
        )
        return len(notices)

    async def family_told(self, invoice_id: int) -> bool:
        return await notice_rows.family_told(self.session, invoice_id)

    async def hold_unsent_notices(self, invoice_id: int, template: str) -> int:
        return await notice_rows.hold_unsent(self.session, invoice_id, template)

    async def release_held_notices(self, invoice_id: int) -> int:
        return await notice_rows.release_held(self.session, self._now(), invoice_id)

    async def withdraw_held_notices(self, invoice_id: int, reason: str) -> int:
        return await notice_rows.withdraw_held(self.session, invoice_id, reason)

    async def activity_for(self, entity_type: str, entity_id: int) -> list[m.ActivityEntry]:
        stmt = (
            select(m.ActivityEntry)
            .where(
                m.ActivityEntry.entity_type == entity_type, m.ActivityEntry.entity_id == entity_id
            )
            .order_by(m.ActivityEntry.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    # --- slack money and device queries -----------------------------------------------------

    async def staff_slack_id(self, staff_id: int) -> str | None:
        """The Slack user a staff member is linked to, for mentions."""
        stmt = select(m.Staff.slack_user_id).where(m.Staff.id == staff_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_building(self, building_id: int) -> m.Building | None:
        return await self.session.get(m.Building, building_id)

    async def get_device_by_asset_tag(self, asset_tag: str) -> m.Device | None:
        stmt = select(m.Device).where(func.lower(m.Device.asset_tag) == asset_tag.strip().lower())
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def device_history(
        self, device_id: int, *, recent_notes: int = 5
    ) -> DeviceHistory | None:
        """A device's lifetime record: holders, replacements, incidents with their invoices,
        latest notes and how many photos it has."""
        device = await self.get_device(device_id)
        if device is None:
            return None
        building = (
            None if device.building_id is None else await self.get_building(device.building_id)
        )
        assignments = [
            (row, student)
            for row, student in (
                await self.session.execute(
                    select(m.DeviceAssignment, m.Student)
                    .join(m.Student, m.Student.id == m.DeviceAssignment.student_id)
                    .where(m.DeviceAssignment.device_id == device_id)
                    .order_by(m.DeviceAssignment.assigned_at, m.DeviceAssignment.id)
                )
            ).all()
        ]
        holder = next((s for a, s in assignments if a.returned_at is None), None)
        incidents = list(
            (
                await self.session.execute(
                    select(m.Incident)
                    .where(m.Incident.device_id == device_id)
                    .order_by(m.Incident.occurred_on.desc(), m.Incident.id.desc())
                )
            ).scalars()
        )
        invoices: dict[int, list[m.Invoice]] = {i.id: [] for i in incidents}
        if incidents:
            stmt = (
                select(m.Invoice)
                .where(m.Invoice.incident_id.in_(list(invoices)))
                .order_by(m.Invoice.id)
            )
            for invoice in (await self.session.execute(stmt)).scalars():
                if invoice.incident_id is not None:
                    invoices[invoice.incident_id].append(invoice)
        note_count = int(
            (
                await self.session.execute(
                    select(func.count(m.Note.id)).where(m.Note.device_id == device_id)
                )
            ).scalar_one()
        )
        notes = list(
            (
                await self.session.execute(
                    select(m.Note)
                    .where(m.Note.device_id == device_id)
                    .order_by(m.Note.created_at.desc(), m.Note.id.desc())
                    .limit(recent_notes)
                )
            ).scalars()
        )
        photo_count = int(
            (
                await self.session.execute(
                    select(func.count(m.Photo.id)).where(m.Photo.device_id == device_id)
                )
            ).scalar_one()
        )
        replaced_by = (
            None if device.replaced_by_id is None else await self.get_device(device.replaced_by_id)
        )
        replaces = list(
            (
                await self.session.execute(
                    select(m.Device)
                    .where(m.Device.replaced_by_id == device_id)
                    .order_by(m.Device.id)
                )
            ).scalars()
        )
        return DeviceHistory(
            device=device,
            building=building,
            holder=holder,
            assignments=assignments,
            incidents=[(i, invoices[i.id]) for i in incidents],
            notes=notes,
            note_count=note_count,
            photo_count=photo_count,
            replaced_by=replaced_by,
            replaces=replaces,
        )

    # --- slack incidents queries ------------------------------------------------------------

    async def search_devices(self, text: str, *, limit: int) -> list[DeviceMatch]:
        """The one device search (the type-ahead and `/device`); see storage.device_search."""
        return await search_devices(self.session, text, limit=limit)

    async def photo_by_source_ref(self, incident_id: int, source_ref: str) -> m.Photo | None:
        """A photo already attached to the incident from that source (e.g. a Slack file id)."""
        stmt = select(m.Photo).where(
            m.Photo.incident_id == incident_id, m.Photo.source_ref == source_ref
        )
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def incident_photo_count(self, incident_id: int) -> int:
        stmt = select(func.count(m.Photo.id)).where(m.Photo.incident_id == incident_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def incident_note_count(self, incident_id: int) -> int:
        stmt = select(func.count(m.Note.id)).where(m.Note.incident_id == incident_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def student_flags(self, student_id: int) -> list[m.StudentFlag]:
        """The student's repeat-offender badges, newest counting window first."""
        stmt = (
            select(m.StudentFlag)
            .where(m.StudentFlag.student_id == student_id)
            .order_by(m.StudentFlag.window_start.desc(), m.StudentFlag.flag)
        )
        return list((await self.session.execute(stmt)).scalars())

    # --- billing pauses and runs ------------------------------------------------------------

    async def billing_pauses(
        self, *, ending_on_or_after: date | None = None
    ) -> list[m.BillingPause]:
        """The pause windows, earliest first; past ones left out when `ending_on_or_after`."""
        stmt = select(m.BillingPause).order_by(m.BillingPause.starts_on, m.BillingPause.id)
        if ending_on_or_after is not None:
            stmt = stmt.where(m.BillingPause.ends_on >= ending_on_or_after)
        return list((await self.session.execute(stmt)).scalars())

    async def overlapping_pauses(
        self, starts_on: date, ends_on: date, *, lock: bool = False
    ) -> list[m.BillingPause]:
        """Windows sharing a day with [starts_on, ends_on].

        With `lock`, pause changes are serialised first (the settings row is locked on
        PostgreSQL; SQLite's BEGIN IMMEDIATE already does it), so two overlapping windows added
        at the same moment can't both pass this check.
        """
        if lock:
            await self._get(m.DistrictSettings, 1, lock=True)
        stmt = (
            select(m.BillingPause)
            .where(m.BillingPause.starts_on <= ends_on, m.BillingPause.ends_on >= starts_on)
            .order_by(m.BillingPause.starts_on, m.BillingPause.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def add_billing_pause(
        self, *, starts_on: date, ends_on: date, reason: str, created_by_id: int | None
    ) -> m.BillingPause:
        pause = m.BillingPause(
            starts_on=starts_on,
            ends_on=ends_on,
            reason=reason,
            created_by_id=created_by_id,
            created_at=self._now(),
        )
        self.session.add(pause)
        await self.session.flush()
        return pause

    async def get_billing_pause(
        self, pause_id: int, *, lock: bool = False
    ) -> m.BillingPause | None:
        pause: m.BillingPause | None = await self._get(m.BillingPause, pause_id, lock)
        return pause

    async def remove_billing_pause(self, pause_id: int) -> None:
        pause = await self.session.get(m.BillingPause, pause_id)
        if pause is not None:
            await self.session.delete(pause)
            await self.session.flush()

    async def billing_run(self, day: date) -> m.BillingRun | None:
        """The billing run recorded for `day` (running or completed), if any."""
        return await self.session.get(m.BillingRun, day)

    async def count_outbox(self, kind: str, dedupe_prefix: str) -> int:
        """Outbox rows of `kind` whose dedupe key starts with `dedupe_prefix`, in any state."""
        stmt = select(func.count(m.OutboxMessage.id)).where(
            m.OutboxMessage.kind == kind,
            m.OutboxMessage.dedupe_key.startswith(dedupe_prefix, autoescape=True),
        )
        return int((await self.session.execute(stmt)).scalar_one())


class StoreFactory:
    """Opens one `SqlStore` (one transaction) per use."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        mail_domain: str = DEFAULT_MAIL_DOMAIN,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.mail_domain = mail_domain

    def __call__(self) -> SqlStore:
        return SqlStore(self.sessions(), self.clock, mail_domain=self.mail_domain)


@dataclass(frozen=True)
class DeviceHistory:
    """Everything `/device` shows about one device, read in one transaction."""

    device: m.Device
    building: m.Building | None
    holder: m.Student | None
    assignments: list[tuple[m.DeviceAssignment, m.Student]]  # oldest first
    incidents: list[tuple[m.Incident, list[m.Invoice]]]  # newest first
    notes: list[m.Note]  # newest first, at most `recent_notes`
    note_count: int
    photo_count: int
    replaced_by: m.Device | None
    replaces: list[m.Device]


def _coverage_context(
    policy: m.InsurancePolicy,
    *,
    term_label: str,
    term_start: date,
    term_end: date,
    enrollment_id: int | None = None,
    device_coverage_id: int | None = None,
) -> CoverageContext:
    return CoverageContext(
        enrollment_id=enrollment_id,
        device_coverage_id=device_coverage_id,
        policy_id=policy.id,
        policy_name=policy.name,
        term_label=term_label,
        term_start=term_start,
        term_end=term_end,
        terms=PolicyTerms(
            copay_cents=policy.copay_cents,
            coverage_percent=policy.coverage_percent,
            cap_cents=policy.cap_cents,
        ),
        max_claims=policy.max_claims,
        allow_override=policy.allow_override,
    )
