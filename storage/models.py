"""The workflow store's tables. The schema itself is created only by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from workflows.fee_kinds import FEE_KINDS, FeeKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

FEE_KINDS_SQL = ", ".join(f"'{kind}'" for kind in FEE_KINDS)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both backends (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; every timestamp must be aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


def pk() -> Mapped[int]:
    return mapped_column(Id, primary_key=True, autoincrement=True)


def unique_where(name: str, *columns: str, where: str) -> Index:
    """A partial unique index: unique among the rows matching `where`, on both backends."""
    return Index(
        name, *columns, unique=True, sqlite_where=text(where), postgresql_where=text(where)
    )


# --- district -------------------------------------------------------------------------------


class DistrictSettings(Base):
    """One row (id 1): the district-wide rules staff with Manage Settings may change."""

    __tablename__ = "district_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What families are told about the district (workflows.district_facts); "" = not set, and
    # the sentence that needs it is left out of emails and the family page.
    district_name: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))
    default_due_days: Mapped[int] = mapped_column(Integer, default=90)
    automation_default: Mapped[bool] = mapped_column(Boolean, default=True)
    invoice_prefix: Mapped[str] = mapped_column(String(12), default="INV")
    school_year_start_month: Mapped[int] = mapped_column(Integer, default=7)
    school_year_start_day: Mapped[int] = mapped_column(Integer, default=1)
    restricted_statuses: Mapped[list[str]] = mapped_column(default=list)
    offender_rules: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Billing automation (workflows.billing_settings). Server defaults filled existing rows
    # when migration 0003 added these columns.
    pre_due_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    pre_due_days: Mapped[list[int]] = mapped_column(
        JSON, default=lambda: [14, 7, 1], server_default=text("'[14, 7, 1]'")
    )
    overdue_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    overdue_days: Mapped[list[int]] = mapped_column(
        JSON, default=lambda: [7, 14, 30], server_default=text("'[7, 14, 30]'")
    )
    auto_cancel_enabled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    auto_cancel_days: Mapped[int] = mapped_column(Integer, default=60, server_default=text("60"))
    stop_reminders_on_partial_payment: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    daily_run_time: Mapped[str] = mapped_column(
        String(5), default="06:00", server_default=text("'06:00'")
    )
    # Waivers larger than this need an admin's approval (workflows.waivers).
    waiver_approval_cents: Mapped[int] = mapped_column(
        Integer, default=10_000, server_default=text("10000")
    )
    # The family invoice page shows photos of the damage only where the district allows it.
    family_page_photos: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    check_payable_to: Mapped[str] = mapped_column(
        String(200), default="", server_default=text("''")
    )
    check_mailing_address: Mapped[str] = mapped_column(
        String(400), default="", server_default=text("''")
    )
    office_phone: Mapped[str] = mapped_column(String(40), default="", server_default=text("''"))
    office_hours: Mapped[str] = mapped_column(String(120), default="", server_default=text("''"))
    office_email: Mapped[str] = mapped_column(String(254), default="", server_default=text("''"))
    # Whom a Slack user DeviceCare doesn't know is told to ask (workflows.district_facts).
    it_contact_name: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    it_contact: Mapped[str] = mapped_column(String(254), default="", server_default=text("''"))
    updated_at: Mapped[datetime | None]


class Counter(Base):
    """Named gap-free sequences (invoice numbers) that work the same on both backends."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Building(Base):
    __tablename__ = "buildings"

    id: Mapped[int] = pk()
    sis_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(40))


# --- people ---------------------------------------------------------------------------------


class Household(Base):
    """A family: the guardians and students billed together."""

    __tablename__ = "households"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(String(200))


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = pk()
    sis_id: Mapped[str] = mapped_column(String(100), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    grade: Mapped[str | None] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(320))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="SET NULL"))
    household_id: Mapped[int | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set by `devicecare privacy erase`: the name and ids are a pseudonym now (0014).
    erased_at: Mapped[datetime | None]

    building: Mapped[Building | None] = relationship(lazy="raise")

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Guardian(Base):
    __tablename__ = "guardians"

    id: Mapped[int] = pk()
    sis_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    preferred_language: Mapped[str] = mapped_column(String(10), default="en")
    household_id: Mapped[int | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), index=True
    )
    # Set when mail to `email` bounced; notices skip the address until someone fixes it.
    email_bouncing_since: Mapped[datetime | None]
    # Set by `devicecare privacy erase`: personal data replaced, family links no longer open.
    erased_at: Mapped[datetime | None]

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Guardianship(Base):
    """Who may act for a student (used to trust a parent's email)."""

    __tablename__ = "guardianships"

    guardian_id: Mapped[int] = mapped_column(
        ForeignKey("guardians.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    relationship_kind: Mapped[str] = mapped_column(String(40), default="guardian")


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(String(60), unique=True)
    permissions: Mapped[list[str]] = mapped_column(default=list)
    allowed_statuses: Mapped[list[str]] = mapped_column(default=list)
    is_superadmin: Mapped[bool] = mapped_column(Boolean, default=False)
    built_in: Mapped[bool] = mapped_column(Boolean, default=False)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    slack_user_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # The person's Slack profile name, and when Slack was last asked for it; shown instead of
    # `name` (which the CLI derives from the email) once known.
    slack_name: Mapped[str | None] = mapped_column(String(200))
    slack_name_at: Mapped[datetime | None]

    role: Mapped[Role] = relationship(lazy="joined")

    @hybrid_property
    def display_name(self) -> str:
        """How staff are shown everywhere: their Slack profile name, else the name on file."""
        return self.slack_name or self.name

    @display_name.inplace.expression
    @classmethod
    def _display_name_sql(cls) -> ColumnElement[str]:
        return func.coalesce(func.nullif(cls.slack_name, ""), cls.name)


# --- devices --------------------------------------------------------------------------------


def normalize_serial(serial: str) -> str:
    """Serials are compared without case or surrounding space, so they are stored that way."""
    return serial.strip().upper()


class Device(Base):
    """`serial` is always stored through `normalize_serial`."""

    __tablename__ = "devices"

    id: Mapped[int] = pk()
    serial: Mapped[str] = mapped_column(String(100), unique=True)
    asset_tag: Mapped[str | None] = mapped_column(String(100), unique=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    # The maker's part number (e.g. Apple's MX2D3LL/A), when a sync reports one (0020).
    part_number: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40), default="chromebook")
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(30), default="in_service")
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime]


class DeviceAssignment(Base):
    """Who had a device and when; the open row (no `returned_at`) is the current holder."""

    __tablename__ = "device_assignments"
    __table_args__ = (
        unique_where("uq_device_assignments_open", "device_id", where="returned_at IS NULL"),
    )

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    assigned_at: Mapped[datetime]
    returned_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(200))
    return_reason: Mapped[str | None] = mapped_column(String(200))


# --- incidents ------------------------------------------------------------------------------


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_student_occurred", "student_id", "occurred_on"),
        # Reports pick incidents by the day they happened or the time they closed (0007).
        Index("ix_incidents_occurred_on", "occurred_on"),
        Index("ix_incidents_closed_at", "closed_at"),
    )

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="RESTRICT"), index=True
    )
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id", ondelete="SET NULL"))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    occurred_on: Mapped[date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="open", index=True)
    ticket_ref: Mapped[str | None] = mapped_column(String(500))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)

    flags: Mapped[list[IncidentFlag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="IncidentFlag.flag"
    )

    @property
    def flag_names(self) -> list[str]:
        return [f.flag for f in self.flags]


class IncidentFlag(Base):
    """One row per flag so reports and repeat-offender counts stay plain SQL."""

    __tablename__ = "incident_flags"
    __table_args__ = (Index("ix_incident_flags_flag", "flag", "incident_id"),)

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    flag: Mapped[str] = mapped_column(String(40), primary_key=True)


class Note(Base):
    """Notes belong to the device, so they outlive the incident they were written on."""

    __tablename__ = "notes"

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    author_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    author_label: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Photo(Base):
    """Photo metadata; the bytes live in the blob store under `blob_key`."""

    __tablename__ = "photos"

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    blob_key: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    original_filename: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(20), default="slack")
    source_ref: Mapped[str | None] = mapped_column(String(200))
    # Where staff can see the original (a Slack file's permalink); None for mail and imports.
    source_url: Mapped[str | None] = mapped_column(String(500))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class StudentFlag(Base):
    """A repeat-offender badge: the student crossed a flag's threshold in a counting window."""

    __tablename__ = "student_flags"
    __table_args__ = (
        UniqueConstraint("student_id", "flag", "window_start"),
        # The repeat-offender report picks flags by when they were raised (0007).
        Index("ix_student_flags_flagged_at", "flagged_at"),
    )

    id: Mapped[int] = pk()
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    flag: Mapped[str] = mapped_column(String(40))
    window_start: Mapped[date] = mapped_column(Date)
    incident_count: Mapped[int] = mapped_column(Integer)
    flagged_at: Mapped[datetime]
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))


# --- fees and insurance ---------------------------------------------------------------------


class FeeItem(Base):
    """A line of the fee schedule. Its kind (workflows.fee_kinds.FeeKind) says which form offers
    it: damage fees the incident invoice, collection fees the collection form."""

    __tablename__ = "fee_items"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint(f"kind IN ({FEE_KINDS_SQL})", name="kind_known"),
    )

    id: Mapped[int] = pk()
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default=FeeKind.DAMAGE.value)
    price_cents: Mapped[int] = mapped_column(Integer)
    device_model: Mapped[str | None] = mapped_column(String(200))
    incident_flag: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class InsurancePolicy(Base):
    __tablename__ = "insurance_policies"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(String(200))
    copay_cents: Mapped[int | None] = mapped_column(Integer)
    coverage_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    cap_cents: Mapped[int | None] = mapped_column(Integer)
    max_claims: Mapped[int | None] = mapped_column(Integer)
    allow_override: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # Enrollment and premiums (workflows.enrollment). A policy without a term is enrolled by
    # hand with explicit dates, as before.
    term_label: Mapped[str | None] = mapped_column(String(60))
    term_start: Mapped[date | None] = mapped_column(Date)
    term_end: Mapped[date | None] = mapped_column(Date)
    premium_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    enroll_opens_on: Mapped[date | None] = mapped_column(Date)
    enroll_closes_on: Mapped[date | None] = mapped_column(Date)
    # "on_payment": coverage starts when the premium is paid; "immediately": at enrollment.
    coverage_starts: Mapped[str] = mapped_column(
        String(20), default="on_payment", server_default=text("'on_payment'")
    )
    # Days before term end to remind the family; None sends no reminder.
    expiry_reminder_days: Mapped[int | None] = mapped_column(Integer)
    # This policy insures devices whose synced or imported coverage plan starts with this text
    # (e.g. "AppleCare+"), whoever holds them (0021).
    device_plan: Mapped[str | None] = mapped_column(String(200))


class InsuranceEnrollment(Base):
    __tablename__ = "insurance_enrollments"
    __table_args__ = (
        CheckConstraint("term_end >= term_start", name="term_order"),
        Index("ix_insurance_enrollments_student_term", "student_id", "term_start", "term_end"),
        # One live enrollment per student, policy and term: an import rerun finds it.
        unique_where(
            "uq_insurance_enrollments_live",
            "student_id",
            "policy_id",
            "term_start",
            where="status != 'cancelled'",
        ),
    )

    id: Mapped[int] = pk()
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    policy_id: Mapped[int] = mapped_column(
        ForeignKey("insurance_policies.id", ondelete="CASCADE"), index=True
    )
    term_label: Mapped[str] = mapped_column(String(60))
    term_start: Mapped[date] = mapped_column(Date)
    term_end: Mapped[date] = mapped_column(Date)
    # pending_payment (premium not yet paid), active, cancelled.
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime]
    premium_waiver_reason: Mapped[str | None] = mapped_column(String(200))
    premium_waived_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL")
    )
    activated_at: Mapped[datetime | None]
    enrolled_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(20), default="staff", server_default=text("'staff'"))
    expiry_reminded_on: Mapped[date | None] = mapped_column(Date)

    policy: Mapped[InsurancePolicy] = relationship(lazy="joined")


class DeviceCoverage(Base):
    """Manufacturer or third-party coverage on one device (e.g. AppleCare+), loaded from CSV."""

    __tablename__ = "device_coverages"
    __table_args__ = (
        UniqueConstraint("device_id", "plan", "coverage_start"),
        CheckConstraint("coverage_end >= coverage_start", name="coverage_order"),
    )

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    plan: Mapped[str] = mapped_column(String(200))
    coverage_start: Mapped[date] = mapped_column(Date)
    coverage_end: Mapped[date] = mapped_column(Date)
    source: Mapped[str | None] = mapped_column(String(300))
    imported_at: Mapped[datetime]


class CapOverrideRequest(Base):
    """A request to apply insurance past the claim cap, and the decision on it."""

    __tablename__ = "cap_override_requests"

    id: Mapped[int] = pk()
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("insurance_enrollments.id", ondelete="SET NULL")
    )
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)


# --- invoices and payments ------------------------------------------------------------------


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("subtotal_cents >= 0", name="subtotal_not_negative"),
        CheckConstraint("insurance_cents >= 0", name="insurance_not_negative"),
        CheckConstraint("total_cents = subtotal_cents - insurance_cents", name="total_adds_up"),
        CheckConstraint("paid_cents >= 0 AND paid_cents <= total_cents", name="paid_in_range"),
        CheckConstraint(
            "waived_cents >= 0 AND paid_cents + waived_cents <= total_cents",
            name="waived_in_range",
        ),
        CheckConstraint(
            "refunded_cents >= 0 AND refunded_cents <= paid_cents", name="refunded_in_range"
        ),
        Index("ix_invoices_status_due", "status", "due_date"),
        Index("ix_invoices_claim_enrollment", "claim_enrollment_id", "status"),
        Index("ix_invoices_claim_device_coverage", "claim_device_coverage_id", "status"),
        # Money reports pick invoices by when they were issued or cancelled (0007).
        Index("ix_invoices_created_at", "created_at"),
        Index("ix_invoices_cancelled_at", "cancelled_at"),
        # A bulk fee bills a student once per fee (and so once per school year).
        UniqueConstraint("annual_fee_id", "student_id"),
    )

    id: Mapped[int] = pk()
    number: Mapped[str] = mapped_column(String(40), unique=True)
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="RESTRICT"), index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="unpaid")
    subtotal_cents: Mapped[int] = mapped_column(Integer)
    insurance_cents: Mapped[int] = mapped_column(Integer, default=0)
    total_cents: Mapped[int] = mapped_column(Integer)
    paid_cents: Mapped[int] = mapped_column(Integer, default=0)
    due_date: Mapped[date | None] = mapped_column(Date)
    automation_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    claim_enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("insurance_enrollments.id", ondelete="SET NULL")
    )
    # A claim on a device's own coverage (AppleCare+) counts against that coverage (0021).
    claim_device_coverage_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_coverages.id", ondelete="SET NULL")
    )
    cap_reached: Mapped[bool] = mapped_column(Boolean, default=False)
    override_applied: Mapped[bool] = mapped_column(Boolean, default=False)
    override_approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL")
    )
    insurance_snapshot: Mapped[dict[str, Any] | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Billing automation: a person setting the status bumps the epoch (re-arming the overdue
    # notices); auto-cancel counts from the final notice.
    automation_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    final_notice_on: Mapped[date | None] = mapped_column(Date)
    reminder_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_reminder_at: Mapped[datetime | None]
    # What the invoice bills: incident (damage or loss), premium, fee, collection.
    kind: Mapped[str] = mapped_column(
        String(20), default="incident", server_default=text("'incident'")
    )
    # Waivers lower what is owed without touching the billed amounts; refunds hand paid money
    # back and credit the charge by the same amount, so the balance stays as it was.
    waived_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    annual_fee_id: Mapped[int | None] = mapped_column(
        ForeignKey("annual_fees.id", ondelete="RESTRICT")
    )
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_collections.id", ondelete="SET NULL")
    )
    # The enrollment a premium invoice pays for (claims use claim_enrollment_id instead).
    premium_enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("insurance_enrollments.id", ondelete="SET NULL"), index=True
    )
    # While a decision that changes the amount is pending (e.g. "cap_override:12"), the family's
    # first notice is held and the billing run leaves the invoice alone (0012).
    notice_hold: Mapped[str | None] = mapped_column(String(60))

    lines: Mapped[list[InvoiceLine]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="InvoiceLine.position"
    )

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents - self.waived_cents


def invoice_balance() -> Any:
    """What is still owed on an invoice, as a SQL expression (see `Invoice.balance_cents`)."""
    return Invoice.total_cents - Invoice.paid_cents - Invoice.waived_cents


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_cents >= 0", name="unit_not_negative"),
    )

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    fee_item_id: Mapped[int | None] = mapped_column(ForeignKey("fee_items.id", ondelete="SET NULL"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_cents: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        # An external reference (check number, portal transaction, Stripe payment) pays an
        # invoice once, whichever way it arrives (`workflows.payments.reference_key`).
        Index("ux_payments_invoice_reference", "invoice_id", "reference_key", unique=True),
    )

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    amount_cents: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(200))
    received_on: Mapped[date] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    recorded_at: Mapped[datetime]
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # The reference reduced to what identifies it ("Check #01043" -> "1043"); NULL without one
    # (and on payments recorded twice under one reference before the rule existed).
    reference_key: Mapped[str | None] = mapped_column(String(200))


class Installment(Base):
    """One part of an invoice's payment plan: reminders follow these instead of the due date.

    Installments are paid in order: the invoice's paid and waived money covers the earliest
    first, so an installment is missed when, after its day, the invoice's covered money is less
    than the sum of installments up to and including it.
    """

    __tablename__ = "installments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        UniqueConstraint("invoice_id", "position"),
        Index("ix_installments_due_on", "due_on"),
    )

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    amount_cents: Mapped[int] = mapped_column(Integer)
    # The day the billing run found it missed (flagged once; cleared if the plan is replaced).
    missed_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


class OnlineCheckout(Base):
    """A checkout a family started from the invoice page (a Stripe Checkout session)."""

    __tablename__ = "online_checkouts"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = pk()
    provider: Mapped[str] = mapped_column(String(20), default="stripe")
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardians.id", ondelete="SET NULL"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open/paid/expired/failed
    url: Mapped[str | None] = mapped_column(Text)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class PaymentEvent(Base):
    """A payment provider's webhook event or a portal file's row, taken at most once.

    `source` is "stripe" or "portal:<name>"; `event_id` the provider's id for it (a Stripe event
    id, a portal transaction id). The row is written in the same transaction as what it causes.
    """

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = pk()
    source: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(80))
    # applied / ignored / unmatched / excess / rejected
    outcome: Mapped[str] = mapped_column(String(20))
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL"), index=True
    )
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    amount_cents: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]


class InvoiceAdjustment(Base):
    """A waiver or refund on an invoice. The billed amounts never change; adjustments explain
    every difference between what was billed and what is owed."""

    __tablename__ = "invoice_adjustments"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # waiver, refund
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    # pending (awaiting an admin's approval), applied, denied.
    status: Mapped[str] = mapped_column(String(20), default="applied")
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    decision_comment: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class AnnualFee(Base):
    """A fee billed in bulk once per school year (e.g. a technology fee), optionally limited to
    grades or buildings (empty lists mean every student)."""

    __tablename__ = "annual_fees"
    __table_args__ = (
        UniqueConstraint("code", "school_year"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: Mapped[int] = pk()
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    school_year: Mapped[str] = mapped_column(String(20))  # "2026-2027"
    amount_cents: Mapped[int] = mapped_column(Integer)
    grades: Mapped[list[str]] = mapped_column(default=list)
    building_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    due_date: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class DeviceCollection(Base):
    """A device checked in (end of year or withdrawal), with what was missing or damaged."""

    __tablename__ = "device_collections"

    id: Mapped[int] = pk()
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="RESTRICT"), index=True
    )
    student_id: Mapped[int | None] = mapped_column(
        ForeignKey("students.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[str] = mapped_column(String(20))  # end_of_year, withdrawal
    # [{"fee_item_id": 3, "code": "charger", "name": "Charger", "unit_cents": 3500}, ...]
    missing: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    collected_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    collected_at: Mapped[datetime]
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)


# --- audit and outbox -----------------------------------------------------------------------


class ActivityEntry(Base):
    """Append-only: triggers in the migration refuse UPDATE and DELETE on this table."""

    __tablename__ = "activity_log"
    __table_args__ = (Index("ix_activity_log_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = pk()
    at: Mapped[datetime]
    actor_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(200))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(60))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    comment: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """Side effects (email, Slack posts) written with the change that causes them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(60))
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class PrivacyErasure(Base):
    """One `devicecare privacy erase`: who ran it and the pseudonym it left, never the data.

    While a row has no `finished_at` (only ever inside the erasing transaction), the activity
    log lets that transaction rewrite personal data inside entries (migration 0014).
    """

    __tablename__ = "privacy_erasures"

    id: Mapped[int] = pk()
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True)
    erased_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    erased_by_label: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any] | None]


# --- slack ----------------------------------------------------------------------------------


class SlackPost(Base):
    """Where a record's Slack message is, so it can be updated in place and its thread found."""

    __tablename__ = "slack_posts"
    __table_args__ = (
        UniqueConstraint("kind", "entity_id"),
        Index("ix_slack_posts_message", "channel", "ts"),
    )

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(40))
    ts: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


# --- email ----------------------------------------------------------------------------------


class Notice(Base):
    """One email to one guardian about an invoice; its delivery state shows on the invoice."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("dedupe_key", "guardian_id"),
        Index("ix_notices_invoice", "invoice_id", "created_at"),
        Index("ix_notices_pending", "status", "guardian_id"),
    )

    id: Mapped[int] = pk()
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardians.id", ondelete="SET NULL"))
    template: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    to_address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    context: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="queued")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    viewed_at: Mapped[datetime | None]
    # Billing-run notices wait as "pending" until the run knows whether the guardian gets one
    # digest for several invoices ("digested" into digest_id) or this email alone.
    run_day: Mapped[date | None] = mapped_column(Date)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"))


class InboundMessage(Base):
    """A message read from the mailbox: kept whole (raw in the blob store) and routed once."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = pk()
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    raw_blob_key: Mapped[str] = mapped_column(String(200))
    from_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500), default="")
    kind: Mapped[str] = mapped_column(String(20))  # reply, auto_reply, bounce
    route: Mapped[str] = mapped_column(String(20))  # token, thread, subject, body, none, forged
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL"), index=True
    )
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"))
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardians.id", ondelete="SET NULL"))
    sender_trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    intent: Mapped[str | None] = mapped_column(String(20))
    body_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # routed, held, flagged, recorded
    received_at: Mapped[datetime]


class PendingPayment(Base):
    """A payment a parent says they made; staff confirm it before any money moves."""

    __tablename__ = "pending_payments"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    inbound_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL"), unique=True
    )
    amount_cents: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(200))
    paid_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    # False: the family said they paid but not how much (amount_cents is then what they owed
    # when the reply came; staff enter or confirm the amount).
    amount_given: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The family's email this answers, so the acknowledgement and receipts thread with it:
    # {"message_id": "<…>", "references": ["<…>", …], "subject": "…"}.
    reply_thread: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PendingPaymentPart(Base):
    """One invoice's share of a reported payment (workflows.reply_split): every invoice the
    reply is about has a row, in split order, 0 for one that gets nothing."""

    __tablename__ = "pending_payment_parts"
    __table_args__ = (
        UniqueConstraint("pending_payment_id", "invoice_id"),
        CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = pk()
    pending_payment_id: Mapped[int] = mapped_column(
        ForeignKey("pending_payments.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))


class MailboxState(Base):
    """How far the reader got in a mailbox; a new UIDVALIDITY means starting over safely."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


# --- billing automation ---------------------------------------------------------------------


class BillingStep(Base):
    """One automation step taken on one invoice; the unique key makes each happen once."""

    __tablename__ = "billing_steps"
    __table_args__ = (
        UniqueConstraint("invoice_id", "step", "due_date", "epoch"),
        Index("ix_billing_steps_run_day", "run_day", "step"),
    )

    id: Mapped[int] = pk()
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(30))
    due_date: Mapped[date] = mapped_column(Date)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    run_day: Mapped[date] = mapped_column(Date)
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    days_overdue: Mapped[int | None] = mapped_column(Integer)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]


class BillingRun(Base):
    """One day's billing run: started, then completed; the last completed day ends downtime."""

    __tablename__ = "billing_runs"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    covered_since: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))  # running, completed
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any] | None]


class BillingPause(Base):
    """A window (winter break, summer) with no reminders and overdue clocks held."""

    __tablename__ = "billing_pauses"

    id: Mapped[int] = pk()
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


# --- monitoring -----------------------------------------------------------------------------


class ServiceFact(Base):
    """What a long-running process (worker, mail, scheduler, web) last said about itself: the
    web process serves /readyz and /metrics for all of them from these rows."""

    __tablename__ = "service_facts"

    process: Mapped[str] = mapped_column(String(40), primary_key=True)
    instance: Mapped[str] = mapped_column(String(200))  # host:pid of the last writer
    last_seen: Mapped[datetime]
    last_success: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # Running totals ("slack_api_errors|chat.postMessage|channel_not_found": 3) that survive
    # restarts; each heartbeat adds what happened since the last one.
    counters: Mapped[dict[str, Any]]


# --- syncs from the district's systems ------------------------------------------------------


class SyncRun(Base):
    """One run of a sync from a source (Apple School Manager, Google Admin, OneRoster): what it
    found, what it changed or would change, and where the next incremental read starts."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_source_started", "source", "started_at"),
        CheckConstraint("trigger IN ('nightly', 'cli')", name="trigger_known"),
        CheckConstraint(
            "status IN ('running', 'applied', 'dry_run', 'held', 'failed', 'no_changes')",
            name="status_known",
        ),
    )

    id: Mapped[int] = pk()
    source: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[str] = mapped_column(String(10))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sample: Mapped[list[str]] = mapped_column(JSON, default=list)  # the plan's first rows
    removals: Mapped[int] = mapped_column(Integer, default=0)
    base: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[str | None] = mapped_column(Text)


class SourceRecord(Base):
    """What a source last said about one of its records, and which DeviceCare row it is: the
    provenance `/device` shows, and how a later run knows what has left the source."""

    __tablename__ = "source_records"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_source_records_entity", "entity", "entity_id"),
        CheckConstraint(
            "entity IN ('device', 'student', 'guardian', 'building')", name="entity_known"
        ),
    )

    id: Mapped[int] = pk()
    source: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(200))
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int | None] = mapped_column(Id)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen_at: Mapped[datetime]
    changed_at: Mapped[datetime]
