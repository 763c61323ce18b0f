"""Annual and bulk fees: a fee defined per school year, billed once to each matching student.

A fee (e.g. the annual technology fee) has a code, a name, a school year ("2026-2027"), an
amount and optionally the grades and buildings it is limited to (none means every student).
Applying it creates one invoice per matching active student who hasn't been billed for it; the
store's unique (fee, student) key means a rerun, a second click or two runs at once never bill
anyone twice. Everything here needs Manage Fees, checked on the server for every action.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from workflows.errors import NotFound, ValidationError
from workflows.grades import clean_grades
from workflows.i18n import _
from workflows.invoices import MAX_DUE_DAYS, MAX_LINE_CENTS, check_due_date
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, SettingsRecord
from workflows.school_year import school_year_of
from workflows.text import required_line

ENTITY = "annual_fee"
LINE_KIND = "fee"
MAX_NAME = 200
_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_YEAR_RE = re.compile(r"^([0-9]{4})(?:-([0-9]{4}))?$")


# --- the definition --------------------------------------------------------------------------


@dataclass(frozen=True)
class FeeDefinition:
    """A fee as typed, once checked: the values `define_fee` stores."""

    code: str
    name: str
    school_year: str
    amount_cents: int
    grades: tuple[str, ...] = ()
    building_ids: tuple[int, ...] = ()
    due_date: date | None = None


def clean_code(text: str) -> str:
    code = text.strip().lower()
    if not _CODE_RE.match(code):
        raise ValidationError(
            _(
                "\u201c{text}\u201d isn't a usable fee code: use letters, digits, - and _ (up to "
                "60), e.g. tech-fee.",
                text=text.strip()[:60],
            ),
            field="code",
        )
    return code


def clean_name(text: str) -> str:
    missing = _("Give the fee a name, e.g. Technology fee.")
    too_long = _("A fee's name has at most {max} characters.", max=MAX_NAME)
    return required_line(text, MAX_NAME, "name", missing, too_long)


def clean_school_year(text: str) -> str:
    """'2026-2027' (consecutive years) or '2026' (a district whose year is the calendar year)."""
    label = text.strip()
    match = _YEAR_RE.match(label)
    if match is None or (match[2] is not None and int(match[2]) != int(match[1]) + 1):
        raise ValidationError(
            _(
                "\u201c{label}\u201d isn't a school year; write it like 2026-2027.",
                label=label[:20],
            ),
            field="school_year",
        )
    return label


def clean_amount(cents: int) -> int:
    if cents <= 0:
        raise ValidationError(_("A fee's amount must be more than $0.00."), field="amount")
    if cents > MAX_LINE_CENTS:
        raise ValidationError(_("That amount is more than a fee can be."), field="amount")
    return cents


def check_fee_due_date(due: date | None, today: date) -> date | None:
    if due is None:
        return None
    if due < today or due > today + timedelta(days=MAX_DUE_DAYS):
        raise ValidationError(
            _("The due date must be between today and three years out."), field="due_date"
        )
    return due


def validate_fee(
    *,
    code: str,
    name: str,
    school_year: str,
    amount_cents: int,
    grades: Iterable[str] = (),
    building_ids: Iterable[int] = (),
    due_date: date | None,
    today: date,
) -> FeeDefinition:
    """Every check a fee definition must pass; the first failure is raised, naming its field."""
    return FeeDefinition(
        code=clean_code(code),
        name=clean_name(name),
        school_year=clean_school_year(school_year),
        amount_cents=clean_amount(amount_cents),
        grades=clean_grades(grades),
        building_ids=tuple(sorted(set(building_ids))),
        due_date=check_fee_due_date(due_date, today),
    )


def current_school_year(settings: SettingsRecord, today: date) -> str:
    return school_year_of(
        today, settings.school_year_start_month, settings.school_year_start_day
    ).label


# --- who is billed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentFacts:
    active: bool
    grade: str | None
    building_id: int | None


def student_matches(fee: FeeRecord | FeeDefinition, student: StudentFacts) -> bool:
    """Active students, in one of the fee's grades and buildings when it names any.

    `storage.bulk_fee_queries.matching` is the same rule in SQL; the tests hold them together.
    """
    if not student.active:
        return False
    if fee.grades and (student.grade or "") not in fee.grades:
        return False
    return not (fee.building_ids and student.building_id not in fee.building_ids)


def fee_line_description(name: str, school_year: str) -> str:
    """The invoice line: 'Technology fee 2026-2027'."""
    return f"{name} {school_year}"


@dataclass(frozen=True)
class BillingTerms:
    """What each invoice a fee creates carries."""

    amount_cents: int
    description: str
    due_date: date
    automation_enabled: bool


def billing_terms(fee: FeeRecord, settings: SettingsRecord, today: date) -> BillingTerms:
    """The terms for applying a fee today; refused when it can't be applied."""
    if not fee.active:
        raise ValidationError(
            _(
                "The fee {code} ({school_year}) is switched off; nothing was billed.",
                code=fee.code,
                school_year=fee.school_year,
            )
        )
    try:
        due = check_due_date(today, fee.due_date, settings.default_due_days)
    except ValidationError:
        shown = fee.due_date.isoformat() if fee.due_date else "?"
        raise ValidationError(
            _(
                "The fee's due date, {shown}, has passed; give it a new one before applying it.",
                shown=shown,
            ),
            field="due_date",
        ) from None
    return BillingTerms(
        amount_cents=fee.amount_cents,
        description=fee_line_description(fee.name, fee.school_year),
        due_date=due,
        automation_enabled=settings.automation_default,
    )


# --- ports -----------------------------------------------------------------------------------


class FeeRecord(Protocol):
    id: int
    code: str
    name: str
    school_year: str
    amount_cents: int
    grades: list[str]
    building_ids: list[Any]
    due_date: date | None
    active: bool
    created_by_id: int | None
    created_at: datetime


def who_is_billed(fee: FeeRecord, buildings: Mapping[int, str]) -> str:
    """Whom the fee bills, for people: its grades and buildings (by name), or every student."""
    parts = []
    if fee.grades:
        parts.append(_("grades {grades}", grades=", ".join(fee.grades)))
    if fee.building_ids:
        parts.append(", ".join(buildings.get(int(b), f"#{b}") for b in fee.building_ids))
    return "; ".join(parts) or _("every student")


@dataclass(frozen=True)
class FeeCounts:
    """How a fee stands: students it would bill now, and invoices it already made."""

    to_bill: int
    already_billed: int
    without_email: int  # of `to_bill`: no guardian email that works, so no notice goes out


class FeeStore(Protocol):
    """Fees in the same unit of work as `Context.store` (storage.fee_store.SqlFeeStore)."""

    async def get_fee(self, fee_id: int, *, lock: bool = False) -> FeeRecord | None: ...
    async def find_fee(
        self, code: str, school_year: str, *, lock: bool = False
    ) -> FeeRecord | None: ...
    async def fees_for_year(self, school_year: str) -> Sequence[FeeRecord]: ...
    async def add_fee(self, definition: FeeDefinition, created_by_id: int | None) -> FeeRecord: ...
    async def counts(self, fee: FeeRecord) -> FeeCounts: ...


@dataclass(frozen=True)
class BillResult:
    """What one apply did (a rerun reports only what it added)."""

    fee_id: int
    created: int
    total_cents: int
    notices: int
    already_billed: int  # the fee's invoices this apply didn't create
    batches: int


class FeeBiller(Protocol):
    """Bills a fee in batches, each its own transaction (services.bulk_fees.BulkFeeBiller)."""

    async def bill(self, fee_id: int, actor: Actor) -> BillResult: ...


# --- use cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeePreview:
    fee: FeeRecord
    counts: FeeCounts

    @property
    def total_cents(self) -> int:
        return self.counts.to_bill * self.fee.amount_cents


def _logged(d: FeeDefinition | FeeRecord) -> dict[str, Any]:
    return {
        "code": d.code,
        "name": d.name,
        "school_year": d.school_year,
        "amount_cents": d.amount_cents,
        "grades": list(d.grades),
        "building_ids": list(d.building_ids),
        "due_date": None if d.due_date is None else d.due_date.isoformat(),
    }


async def check_fee_definition(
    ctx: Context, fees: FeeStore, actor: Actor, definition: FeeDefinition, *, lock: bool = False
) -> tuple[FeeDefinition, FeeRecord | None]:
    """`definition` checked against the rules without writing (a form checks it before its
    answer): the cleaned definition and the fee of the same code and year, if any."""
    require(actor, Permission.MANAGE_FEES)
    d = validate_fee(
        code=definition.code,
        name=definition.name,
        school_year=definition.school_year,
        amount_cents=definition.amount_cents,
        grades=definition.grades,
        building_ids=definition.building_ids,
        due_date=definition.due_date,
        today=ctx.today(),
    )
    existing = await fees.find_fee(d.code, d.school_year, lock=lock)
    if existing is not None and d.amount_cents != existing.amount_cents:
        billed = (await fees.counts(existing)).already_billed
        if billed:
            raise ValidationError(
                _(
                    "{billed} student(s) were already billed for {code} ({school_year}); its "
                    "amount can't change now.",
                    billed=billed,
                    code=existing.code,
                    school_year=existing.school_year,
                ),
                field="amount",
            )
    return d, existing


async def define_fee(
    ctx: Context, fees: FeeStore, actor: Actor, definition: FeeDefinition
) -> tuple[FeeRecord, bool]:
    """Create the fee, or update the one with the same code and year; True when created.

    Once students were billed, the amount is fixed: everyone pays the same for the same fee.
    """
    d, existing = await check_fee_definition(ctx, fees, actor, definition, lock=True)
    if existing is None:
        fee = await fees.add_fee(d, actor.staff_id)
        await ctx.store.activity.log(actor, ENTITY, fee.id, "fee_defined", after=_logged(fee))
        return fee, True
    before = _logged(existing)
    existing.name = d.name
    existing.amount_cents = d.amount_cents
    existing.grades = list(d.grades)
    existing.building_ids = list(d.building_ids)
    existing.due_date = d.due_date
    after = _logged(existing)
    if after != before:
        await ctx.store.activity.log(
            actor, ENTITY, existing.id, "fee_updated", before=before, after=after
        )
    return existing, False


async def list_fees(
    ctx: Context, fees: FeeStore, actor: Actor, school_year: str | None = None
) -> tuple[str, list[tuple[FeeRecord, FeeCounts]]]:
    """The fees of a school year (the current one by default), each with its counts."""
    require(actor, Permission.MANAGE_FEES)
    year = (
        clean_school_year(school_year)
        if school_year
        else current_school_year(await ctx.store.settings.get(), ctx.today())
    )
    found = await fees.fees_for_year(year)
    return year, [(fee, await fees.counts(fee)) for fee in found]


async def find_fee(fees: FeeStore, code: str, school_year: str) -> FeeRecord:
    fee = await fees.find_fee(clean_code(code), clean_school_year(school_year))
    if fee is None:
        raise NotFound(
            _(
                "There is no fee {code} for {school_year}.",
                code=code.strip().lower(),
                school_year=school_year.strip(),
            ),
            field="code",
        )
    return fee


async def preview_fee(ctx: Context, fees: FeeStore, actor: Actor, fee_id: int) -> FeePreview:
    """How many students applying the fee now would bill, how many it billed, the total."""
    require(actor, Permission.MANAGE_FEES)
    fee = await fees.get_fee(fee_id)
    if fee is None:
        raise NotFound(_("Fee #{fee_id} doesn't exist.", fee_id=fee_id))
    return FeePreview(fee, await fees.counts(fee))


async def apply_fee(biller: FeeBiller, actor: Actor, fee_id: int) -> BillResult:
    """Bill every matching student not yet billed for the fee, and email each family.

    The biller runs its own transactions (a batch each), so it is called without a store open.
    """
    require(actor, Permission.MANAGE_FEES)
    return await biller.bill(fee_id, actor)
