"""What the use cases need from the outside world, as protocols.

`storage` implements `UnitOfWork` and its repositories over SQLAlchemy; the records they return
are its ORM rows, which satisfy the record protocols below structurally, so the domain never
imports the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypedDict, Unpack
from zoneinfo import ZoneInfo

from workflows.clock import Clock, local_date
from workflows.insurance import ClaimKey, CoverageContext
from workflows.permissions import Actor


class DeviceRecord(Protocol):
    id: int
    serial: str
    asset_tag: str | None
    model: str
    status: str
    building_id: int | None
    replaced_by_id: int | None


class StudentRecord(Protocol):
    id: int
    first_name: str
    last_name: str
    grade: str | None
    building_id: int | None
    household_id: int | None


class IncidentRecord(Protocol):
    id: int
    device_id: int
    student_id: int | None
    reported_by_id: int | None
    occurred_on: date
    description: str
    status: str
    ticket_ref: str | None
    opened_at: datetime
    closed_at: datetime | None

    @property
    def flag_names(self) -> list[str]: ...


class FeeItemRecord(Protocol):
    id: int
    code: str
    name: str
    kind: str
    price_cents: int
    device_model: str | None
    incident_flag: str | None
    active: bool


class InvoiceRecord(Protocol):
    id: int
    number: str
    student_id: int
    incident_id: int | None
    status: str
    subtotal_cents: int
    insurance_cents: int
    total_cents: int
    paid_cents: int
    waived_cents: int
    refunded_cents: int
    kind: str
    device_id: int | None
    annual_fee_id: int | None
    collection_id: int | None
    premium_enrollment_id: int | None
    due_date: date | None
    automation_enabled: bool
    auto_cancelled: bool
    claim_enrollment_id: int | None
    claim_device_coverage_id: int | None
    cap_reached: bool
    override_applied: bool
    override_approved_by_id: int | None
    insurance_snapshot: dict[str, Any] | None
    paid_at: datetime | None
    cancelled_at: datetime | None
    automation_epoch: int
    final_notice_on: date | None
    notice_hold: str | None


class PaymentRecord(Protocol):
    id: int
    invoice_id: int
    amount_cents: int
    method: str
    reference: str | None
    received_on: date
    idempotency_key: str


class AdjustmentRecord(Protocol):
    id: int
    invoice_id: int
    kind: str
    amount_cents: int
    reason: str
    status: str
    payment_id: int | None
    requested_by_id: int | None
    requested_at: datetime
    decided_by_id: int | None
    decided_at: datetime | None
    decision_comment: str | None


class OverrideRequestRecord(Protocol):
    id: int
    incident_id: int
    enrollment_id: int | None
    invoice_id: int | None
    requested_by_id: int | None
    status: str
    decided_by_id: int | None
    decided_at: datetime | None
    reason: str | None


class RoleRecord(Protocol):
    id: int
    name: str
    permissions: list[str]
    allowed_statuses: list[str]
    is_superadmin: bool


class SettingsRecord(Protocol):
    district_name: str
    default_due_days: int
    automation_default: bool
    invoice_prefix: str
    school_year_start_month: int
    school_year_start_day: int
    restricted_statuses: list[str]
    offender_rules: list[Any]
    # billing automation (see workflows.billing_settings)
    pre_due_enabled: bool
    pre_due_days: list[int]
    overdue_enabled: bool
    overdue_days: list[int]
    auto_cancel_enabled: bool
    auto_cancel_days: int
    stop_reminders_on_partial_payment: bool
    daily_run_time: str
    waiver_approval_cents: int  # waivers above this wait for an approver (workflows.waivers)
    # what families are told (workflows.district_facts); "" = not set
    check_payable_to: str
    check_mailing_address: str
    office_phone: str
    office_hours: str
    office_email: str
    it_contact_name: str  # whom a Slack user DeviceCare doesn't know is told to ask
    it_contact: str


class PauseRecord(Protocol):
    id: int
    starts_on: date
    ends_on: date
    reason: str
    created_by_id: int | None
    created_at: datetime


class PolicyRecord(Protocol):
    id: int
    name: str
    active: bool
    term_label: str | None
    term_start: date | None
    term_end: date | None
    premium_cents: int
    enroll_opens_on: date | None
    enroll_closes_on: date | None
    coverage_starts: str
    expiry_reminder_days: int | None
    device_plan: str | None


class EnrollmentRecord(Protocol):
    id: int
    student_id: int
    policy_id: int
    term_label: str
    term_start: date
    term_end: date
    status: str
    premium_waiver_reason: str | None
    premium_waived_by_id: int | None
    activated_at: datetime | None
    enrolled_by_id: int | None
    source: str
    expiry_reminded_on: date | None


@dataclass(frozen=True)
class InvoiceLineSpec:
    description: str
    kind: str
    unit_cents: int
    quantity: int = 1
    fee_item_id: int | None = None

    @property
    def amount_cents(self) -> int:
        return self.unit_cents * self.quantity


@dataclass(frozen=True, kw_only=True)
class NewIncident:
    """An incident to add; the store opens it (status "open", opened now)."""

    device_id: int
    student_id: int | None
    reported_by_id: int | None
    occurred_on: date
    description: str
    flags: Sequence[str]
    ticket_ref: str | None
    idempotency_key: str | None


@dataclass(frozen=True, kw_only=True)
class NewInvoice:
    """An invoice to add, with its lines; the store sets its total and nothing paid yet.

    The incident and insurance fields default to none: an annual fee, a collection or a
    premium is billed without either."""

    number: str
    student_id: int
    device_id: int | None
    lines: Sequence[InvoiceLineSpec]
    subtotal_cents: int
    due_date: date | None
    automation_enabled: bool
    status: str
    created_by_id: int | None
    idempotency_key: str | None
    kind: str = "incident"
    incident_id: int | None = None
    insurance_cents: int = 0
    claim_enrollment_id: int | None = None
    claim_device_coverage_id: int | None = None
    cap_reached: bool = False
    override_applied: bool = False
    override_approved_by_id: int | None = None
    insurance_snapshot: dict[str, Any] | None = None
    annual_fee_id: int | None = None
    collection_id: int | None = None
    premium_enrollment_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class NewPayment:
    """A payment to record; the store stamps when it was recorded."""

    invoice_id: int
    amount_cents: int
    method: str
    reference: str | None
    received_on: date
    recorded_by_id: int | None
    idempotency_key: str
    reference_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class NewAdjustment:
    """A waiver or refund to record against an invoice; the store stamps when it was asked."""

    invoice_id: int
    kind: str
    amount_cents: int
    reason: str
    status: str
    requested_by_id: int | None
    payment_id: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class NewEnrollment:
    """An enrollment to add; the store stamps when it was made."""

    student_id: int
    policy_id: int
    term_label: str
    term_start: date
    term_end: date
    status: str
    enrolled_by_id: int | None
    source: str
    premium_waiver_reason: str | None


@dataclass(frozen=True, kw_only=True)
class NewStudentFlag:
    """A repeat-offender badge to give; the store stamps when it was given."""

    student_id: int
    flag: str
    window_start: date
    incident_count: int
    incident_id: int


@dataclass(frozen=True, kw_only=True)
class NewOverrideRequest:
    """A request to bill past the claim cap; the store files it as pending, asked now."""

    incident_id: int
    enrollment_id: int | None
    invoice_id: int | None
    requested_by_id: int | None
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class NewPause:
    """A billing pause to add; the store stamps when it was made."""

    starts_on: date
    ends_on: date
    reason: str
    created_by_id: int | None


@dataclass(frozen=True)
class StoredPhoto:
    """A photo already checked and written to the blob store."""

    blob_key: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    original_filename: str | None = None
    source: str = "slack"
    source_ref: str | None = None
    source_url: str | None = None  # a Slack file's permalink


class SettingsRepository(Protocol):
    async def get(self) -> SettingsRecord: ...


class PeopleRepository(Protocol):
    async def student(self, student_id: int) -> StudentRecord | None: ...
    async def staff_name(self, staff_id: int) -> str | None: ...
    async def role(self, name: str) -> RoleRecord | None: ...


class DeviceRepository(Protocol):
    async def get(self, device_id: int, *, lock: bool = False) -> DeviceRecord | None: ...
    async def by_serial(self, serial: str, *, lock: bool = False) -> DeviceRecord | None: ...
    async def by_asset_tag(self, asset_tag: str) -> DeviceRecord | None: ...
    async def add(
        self, *, serial: str, model: str, kind: str, building_id: int | None, asset_tag: str | None
    ) -> DeviceRecord: ...
    async def current_holder(self, device_id: int) -> int | None: ...
    async def holder_at(self, device_id: int, at: datetime) -> int | None: ...
    async def assign(self, device_id: int, student_id: int, *, reason: str) -> None: ...
    async def unassign(self, device_id: int, *, reason: str) -> None: ...


class IncidentRepository(Protocol):
    async def get(self, incident_id: int, *, lock: bool = False) -> IncidentRecord | None: ...
    async def by_key(self, key: str) -> IncidentRecord | None: ...
    async def add(self, incident: NewIncident) -> IncidentRecord: ...
    async def add_note(
        self, *, device_id: int, incident_id: int | None, actor: Actor, body: str
    ) -> int: ...
    async def add_photo(
        self, *, device_id: int, incident_id: int | None, actor: Actor, photo: StoredPhoto
    ) -> int: ...


class StudentFlagRepository(Protocol):
    """Repeat-offender badges (workflows.offenders)."""

    async def incident_dates(
        self, student_id: int, flag: str, since: date, until: date
    ) -> list[date]: ...
    async def has(self, student_id: int, flag: str, window_start: date) -> bool: ...
    async def add(self, flag: NewStudentFlag) -> None: ...


class InsuranceRepository(Protocol):
    async def coverage_on(
        self, student_id: int, on: date, *, device_id: int | None = None, lock: bool = False
    ) -> CoverageContext | None: ...
    async def count_claims(self, key: ClaimKey) -> int: ...
    async def add_override_request(self, request: NewOverrideRequest) -> OverrideRequestRecord: ...
    async def override_request(
        self, request_id: int, *, lock: bool = False
    ) -> OverrideRequestRecord | None: ...
    async def pending_override_for(
        self, incident_id: int, *, lock: bool = False
    ) -> OverrideRequestRecord | None: ...
    async def approved_override_for(self, incident_id: int) -> OverrideRequestRecord | None: ...


class EnrollmentRepository(Protocol):
    """Insurance enrollment: policies, enrollments, their premium invoices."""

    async def policy(self, policy_id: int, *, lock: bool = False) -> PolicyRecord | None: ...
    async def policy_by_name(self, name: str, *, lock: bool = False) -> PolicyRecord | None: ...
    async def add_policy(self, name: str) -> PolicyRecord: ...
    async def lock_student(self, student_id: int) -> StudentRecord | None: ...
    async def live(
        self, student_id: int, policy_id: int, term_end: date
    ) -> EnrollmentRecord | None: ...
    async def get(self, enrollment_id: int, *, lock: bool = False) -> EnrollmentRecord | None: ...
    async def add(self, enrollment: NewEnrollment) -> EnrollmentRecord: ...
    async def premium_invoice(self, enrollment_id: int) -> InvoiceRecord | None: ...
    async def expiring(self, day: date) -> Sequence[EnrollmentRecord]: ...


class FeeItemRepository(Protocol):
    async def by_ids(self, ids: Sequence[int]) -> Sequence[FeeItemRecord]: ...
    async def active(self) -> Sequence[FeeItemRecord]: ...


class InvoiceRepository(Protocol):
    async def next_number(self, prefix: str) -> str: ...
    async def get(self, invoice_id: int, *, lock: bool = False) -> InvoiceRecord | None: ...
    async def by_key(self, key: str) -> InvoiceRecord | None: ...
    async def for_incident(self, incident_id: int) -> Sequence[InvoiceRecord]: ...
    async def add(self, invoice: NewInvoice) -> InvoiceRecord: ...


class PaymentRepository(Protocol):
    """Payments and the adjustments (waivers, refunds) made to invoices."""

    async def by_key(self, key: str) -> PaymentRecord | None: ...
    async def by_reference(self, invoice_id: int, reference_key: str) -> PaymentRecord | None: ...
    async def get(self, payment_id: int, *, lock: bool = False) -> PaymentRecord | None: ...
    async def add(self, payment: NewPayment) -> PaymentRecord: ...
    async def add_adjustment(self, adjustment: NewAdjustment) -> AdjustmentRecord: ...
    async def adjustment(
        self, adjustment_id: int, *, lock: bool = False
    ) -> AdjustmentRecord | None: ...
    async def adjustment_by_key(self, key: str) -> AdjustmentRecord | None: ...
    async def adjustments_for(self, invoice_id: int) -> Sequence[AdjustmentRecord]: ...
    async def refunded_on(self, payment_id: int) -> int: ...


class ActivityChange(TypedDict, total=False):
    """What an activity entry records besides who did what to which record (all optional)."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    comment: str | None


class ActivityRepository(Protocol):
    async def log(
        self,
        actor: Actor,
        entity_type: str,
        entity_id: int | None,
        action: str,
        **change: Unpack[ActivityChange],
    ) -> None: ...
    async def log_refusal(self, actor: Actor, what: str, reason: str) -> None: ...


class OutboxRepository(Protocol):
    async def enqueue(
        self, kind: str, dedupe_key: str, payload: dict[str, Any], *, fresh_key: bool = False
    ) -> bool: ...
    async def queue_notice(
        self,
        template: str,
        invoice_id: int,
        dedupe_key: str,
        context: dict[str, Any] | None = None,
        *,
        held: bool = False,
    ) -> int: ...
    # Held notices (workflows.invoice_updates): written but not sent until released.
    async def family_told(self, invoice_id: int) -> bool: ...
    async def hold_unsent(self, invoice_id: int, template: str) -> int: ...
    async def release_held(self, invoice_id: int) -> int: ...
    async def withdraw_held(self, invoice_id: int, reason: str) -> int: ...


class PauseRepository(Protocol):
    """Billing pauses (workflows.billing_pauses)."""

    async def windows(self, *, ending_on_or_after: date | None = None) -> Sequence[PauseRecord]: ...
    async def overlapping(
        self, starts_on: date, ends_on: date, *, lock: bool = False
    ) -> Sequence[PauseRecord]: ...
    async def add(self, pause: NewPause) -> PauseRecord: ...
    async def get(self, pause_id: int, *, lock: bool = False) -> PauseRecord | None: ...
    async def remove(self, pause_id: int) -> None: ...


class UnitOfWork(Protocol):
    """One transaction: everything done through its repositories is kept by `commit()`, and
    what isn't committed is rolled back when the unit of work ends."""

    @property
    def settings(self) -> SettingsRepository: ...
    @property
    def people(self) -> PeopleRepository: ...
    @property
    def devices(self) -> DeviceRepository: ...
    @property
    def incidents(self) -> IncidentRepository: ...
    @property
    def student_flags(self) -> StudentFlagRepository: ...
    @property
    def insurance(self) -> InsuranceRepository: ...
    @property
    def enrollments(self) -> EnrollmentRepository: ...
    @property
    def fee_items(self) -> FeeItemRepository: ...
    @property
    def invoices(self) -> InvoiceRepository: ...
    @property
    def payments(self) -> PaymentRepository: ...
    @property
    def activity(self) -> ActivityRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def pauses(self) -> PauseRepository: ...

    async def commit(self) -> None: ...
    async def flush(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """What every use case runs with: the unit of work, the clock and the district's zone."""

    store: UnitOfWork
    clock: Clock
    tz: ZoneInfo

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return local_date(self.clock.now(), self.tz)
