"""Reconciling a school payment portal's export (RevTrak, MySchoolBucks, SchoolCash Online, ...).

Portals without an API let the business office download a CSV of the payments families made.
These rules turn that file into checked rows: which column holds what (configurable, with
presets per portal), amounts and dates as the portal writes them, the invoice number found in a
free-text memo, and each row's identity so that importing the same file twice applies nothing
twice. Applying the rows is `services.portal_import`; nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from workflows.errors import ValidationError
from workflows.i18n import N_, _
from workflows.invoices import InvoiceStatus
from workflows.money import MAX_AMOUNT_CENTS, format_cents
from workflows.online_payments import split_online_payment

SOURCE_PREFIX = "portal:"
MAX_SOURCE = 40  # payment_events.source
MAX_PORTAL_NAME = MAX_SOURCE - len(SOURCE_PREFIX)
MAX_REFERENCE = 100  # keeps "portal:<name>:<reference>" inside the payment key's 200 characters
MAX_CELL_SHOWN = 60
ISO_DATE = "iso"
DELIMITERS = ",;\t"
# Portals number their own transactions; ours have the district's prefix and six digits.
_DIGITS_ONLY = re.compile(r"[0-9]{1,12}")
_AMOUNT = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_CURRENCY = ("$", "USD", "usd")
_MINUS = ("-", "\u2212")


class MappingProblem(ValidationError):
    """The file can't be read as asked: a column is missing, or the options don't make sense."""


# --- the column mapping -------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMapping:
    """Which header holds what. `reference` and `payer` may be absent from a file unless the
    person (or the portal's preset) named them, since then a missing one is a wrong file."""

    invoice: str = "invoice"
    amount: str = "amount"
    date: str = "date"
    reference: str | None = "reference"
    payer: str | None = "payer"
    date_format: str = ISO_DATE
    reference_required: bool = False
    payer_required: bool = False


def _portal_export(
    invoice: str, amount: str, date: str, reference: str, payer: str, date_format: str
) -> ColumnMapping:
    """A payment portal's own export: it always numbers its transactions."""
    return ColumnMapping(
        invoice, amount, date, reference, payer, date_format, reference_required=True
    )


US_DATE = "%m/%d/%Y"
# The headers of each portal's export: invoice, amount, date, reference, payer, date format.
PRESETS: dict[str, ColumnMapping] = {
    "revtrak": _portal_export(
        "Item Description", "Amount", "Order Date", "Order Number", "Customer Name", US_DATE
    ),
    "myschoolbucks": _portal_export(
        "Memo", "Amount Paid", "Transaction Date", "Transaction ID", "Payer Name", US_DATE
    ),
    "schoolcash": _portal_export(
        "Item Description", "Payment Amount", "Payment Date", "Receipt Number", "Payer", ISO_DATE
    ),
}


@dataclass(frozen=True)
class MappingChoices:
    """What a mapping file or the command line chose; None leaves the preset's choice."""

    preset: str | None = None
    portal: str | None = None
    invoice: str | None = None
    amount: str | None = None
    date: str | None = None
    reference: str | None = None
    payer: str | None = None
    date_format: str | None = None

    def over(self, base: MappingChoices) -> MappingChoices:
        """These choices, falling back to `base` where none was made."""
        return MappingChoices(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(base, f.name)
                for f in fields(self)
            }
        )


_FILE_TOP_KEYS = {"preset", "portal", "date_format", "columns"}
_FILE_COLUMN_KEYS = {"invoice", "amount", "date", "reference", "payer"}


MAPPING_FILE = N_("the mapping file")  # how errors name a mapping file given without a name


def choices_from_toml(text: str, *, source: str = MAPPING_FILE) -> MappingChoices:
    """Read a mapping file:

    preset = "myschoolbucks"      # optional
    portal = "myschoolbucks"      # optional, the source name
    date_format = "%m/%d/%Y"      # optional
    [columns]
    invoice = "Memo"
    amount = "Amount Paid"
    ...
    """
    if source == MAPPING_FILE:
        source = _(MAPPING_FILE)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingProblem(
            _("{source} is not valid TOML ({exc}).", source=source, exc=exc)
        ) from exc
    unknown = set(data) - _FILE_TOP_KEYS
    if unknown:
        raise MappingProblem(
            _(
                "{source} has unknown setting(s) {unknown}; it may set {known}.",
                source=source,
                unknown=", ".join(sorted(unknown)),
                known=", ".join(sorted(_FILE_TOP_KEYS)),
            )
        )
    columns = data.get("columns", {})
    if not isinstance(columns, dict):
        raise MappingProblem(
            _("In {source}, [columns] must be a table of column names.", source=source)
        )
    unknown = set(columns) - _FILE_COLUMN_KEYS
    if unknown:
        raise MappingProblem(
            _(
                "{source} names unknown column(s) {unknown}; [columns] may set {known}.",
                source=source,
                unknown=", ".join(sorted(unknown)),
                known=", ".join(sorted(_FILE_COLUMN_KEYS)),
            )
        )
    values: dict[str, Any] = {**{k: v for k, v in data.items() if k != "columns"}, **columns}
    for key, value in values.items():
        if not isinstance(value, str):
            raise MappingProblem(
                _(
                    'In {source}, {key} must be text in quotes, e.g. "Amount".',
                    source=source,
                    key=key,
                )
            )
    return MappingChoices(**values)


def build_mapping(choices: MappingChoices) -> ColumnMapping:
    """The preset (or the plain defaults), then every column chosen by name on top of it."""
    preset_name = (choices.preset or "").strip().lower() or None
    if preset_name is not None and preset_name not in PRESETS:
        raise MappingProblem(
            _(
                'There is no preset "{preset}"; use one of {presets}.',
                preset=choices.preset,
                presets=", ".join(sorted(PRESETS)),
            )
        )
    mapping = PRESETS[preset_name] if preset_name else ColumnMapping()
    changes: dict[str, Any] = {}
    for name in ("invoice", "amount", "date", "reference", "payer"):
        value = getattr(choices, name)
        if value is None:
            continue
        if not value.strip():
            if name in ("reference", "payer"):
                # An empty name says the file has no such column.
                changes[name] = None
                changes[f"{name}_required"] = False
                continue
            raise MappingProblem(_("The {name} column's name can't be empty.", name=name))
        changes[name] = value
        if name in ("reference", "payer"):
            changes[f"{name}_required"] = True
    if choices.date_format is not None:
        changes["date_format"] = check_date_format(choices.date_format)
    return replace(mapping, **changes)


def check_date_format(text: str) -> str:
    fmt = text.strip()
    if not fmt or fmt.lower() == ISO_DATE:
        return ISO_DATE
    if "%" not in fmt:
        raise MappingProblem(
            _(
                'The date format "{text}" has no % codes; write it like %m/%d/%Y (or iso).',
                text=text,
            )
        )
    return fmt


def portal_slug(name: str) -> str:
    """ "MySchoolBucks (High School)" -> "myschoolbucks-high-school"."""
    slug = _SLUG_JUNK.sub("-", name.strip().lower()).strip("-")
    if not slug:
        raise MappingProblem(
            _("The portal name needs letters or digits; give one with --portal, e.g. revtrak.")
        )
    return slug[:MAX_PORTAL_NAME].rstrip("-")


def portal_source(name: str) -> str:
    """The payment events' source for a portal: "portal:<slug>"."""
    return SOURCE_PREFIX + portal_slug(name)


# --- reading the file ---------------------------------------------------------------------------


def header_key(name: str) -> str:
    """Headers compare trimmed, case-insensitively, with runs of spaces as one."""
    return " ".join(name.replace("\ufeff", "").split()).casefold()


@dataclass(frozen=True)
class Columns:
    """The mapping's columns as positions in this file's header."""

    invoice: int
    amount: int
    date: int
    reference: int | None
    payer: int | None


@dataclass(frozen=True)
class PortalFile:
    headers: tuple[str, ...]
    columns: Columns
    records: tuple[tuple[int, tuple[str, ...]], ...]  # (line number, cells) of non-blank rows
    delimiter: str
    # (line number, reason) of rows the file's reader refused: control characters, a quote
    # never closed. They are rejected rows like any other, in line order.
    unreadable: tuple[tuple[int, str], ...] = ()


def _shown_headers(headers: Sequence[str]) -> str:
    return ", ".join(f'"{h.strip()}"' for h in headers if h.strip()) or "none"


def resolve_columns(headers: Sequence[str], mapping: ColumnMapping) -> Columns:
    """Each mapped column's position; a missing one is named, with the headers the file has."""
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(headers):
        positions.setdefault(header_key(name), []).append(index)

    def find(option: str, wanted: str | None, required: bool) -> int | None:
        if wanted is None:
            return None
        found = positions.get(header_key(wanted), [])
        if len(found) > 1:
            raise MappingProblem(
                _(
                    'The file has {count} columns named "{wanted}"; say which to use with '
                    "{option}.",
                    count=len(found),
                    wanted=wanted,
                    option=option,
                )
            )
        if found:
            return found[0]
        if required:
            missing.append(f'"{wanted}" ({option})')
        return None

    missing: list[str] = []
    invoice = find("--invoice-column", mapping.invoice, True)
    amount = find("--amount-column", mapping.amount, True)
    day = find("--date-column", mapping.date, True)
    reference = find("--reference-column", mapping.reference, mapping.reference_required)
    payer = find("--payer-column", mapping.payer, mapping.payer_required)
    if missing:
        raise MappingProblem(
            _(
                "The file has no column {missing}. Its headers are: {shown_headers}.",
                missing=" or ".join(missing),
                shown_headers=_shown_headers(headers),
            )
        )
    assert invoice is not None and amount is not None and day is not None
    return Columns(invoice, amount, day, reference, payer)


def expected_columns(mapping: ColumnMapping) -> str:
    names = [mapping.invoice, mapping.amount, mapping.date]
    if mapping.reference_required and mapping.reference:
        names.append(mapping.reference)
    if mapping.payer_required and mapping.payer:
        names.append(mapping.payer)
    return ", ".join(f'"{name}"' for name in names)


def open_export(
    headers: Sequence[str],
    records: Sequence[tuple[int, Sequence[str]]],
    mapping: ColumnMapping,
    *,
    delimiter: str = ",",
    unreadable: Sequence[tuple[int, str]] = (),
) -> PortalFile:
    """The file's header checked against the mapping, and its rows with their line numbers
    (those a spreadsheet shows: the header is line 1). The file itself is read, decoded and
    split into rows by the shared CSV reading layer (`storage.portal_file`)."""
    clean = tuple(h.replace("\ufeff", "").strip() for h in headers)
    if not any(clean):
        expected = expected_columns(mapping)
        raise MappingProblem(
            _(
                "The file is empty: it needs a header row with the columns {expected}.",
                expected=expected,
            )
        )
    columns = resolve_columns(clean, mapping)
    return PortalFile(
        clean,
        columns,
        tuple((line, tuple(cells)) for line, cells in records),
        delimiter,
        tuple(unreadable),
    )


# --- one row ------------------------------------------------------------------------------------


def _shown(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_CELL_SHOWN:
        text = text[: MAX_CELL_SHOWN - 1] + "\u2026"
    return f'"{text}"'


def parse_portal_amount(text: str) -> int:
    """Signed cents from an amount as portals write it: "$1,234.50", "25", "-5.00", "(5.00)".

    A negative amount (minus sign or accountants' parentheses) is a refund or reversal.
    """
    body = text.strip()
    if not body:
        raise ValidationError(_("The amount is empty."), field="amount")
    negative = False
    if body.startswith("(") and body.endswith(")"):
        negative, body = True, body[1:-1].strip()
    for _pass in range(3):  # "-$5", "$-5", "USD -5", in any order
        if body.startswith(_MINUS):
            negative, body = True, body[1:].strip()
        for mark in _CURRENCY:
            if body.startswith(mark):
                body = body[len(mark) :].strip()
            if body.endswith(mark):
                body = body[: -len(mark)].strip()
    if body.endswith(_MINUS):  # "5.00-", as some ledgers print a reversal
        negative, body = True, body[:-1].strip()
    if not _AMOUNT.fullmatch(body):
        raise ValidationError(_("{shown} isn't an amount.", shown=_shown(text)), field="amount")
    try:
        cents = Decimal(body.replace(",", "")) * 100
    except InvalidOperation as exc:
        raise ValidationError(
            _("{shown} isn't an amount.", shown=_shown(text)), field="amount"
        ) from exc
    if cents != cents.to_integral_value():
        raise ValidationError(
            _("{shown} has fractions of a cent.", shown=_shown(text)), field="amount"
        )
    if cents > MAX_AMOUNT_CENTS:
        raise ValidationError(
            _(
                "{shown} is more than the largest allowed amount, {max}.",
                shown=_shown(text),
                max=format_cents(MAX_AMOUNT_CENTS),
            ),
            field="amount",
        )
    if cents == 0:
        raise ValidationError(_("The amount is $0.00."), field="amount")
    return -int(cents) if negative else int(cents)


def parse_portal_date(text: str, date_format: str, tz: tzinfo) -> date:
    """The day a payment was made. A time of day may follow the date; a time with a UTC offset
    is counted in the district's time zone (11 pm in Chicago is still that day)."""
    value = text.strip()
    if not value:
        raise ValidationError(_("The date is empty."), field="date")
    moment: datetime | None = None
    if date_format == ISO_DATE:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        expected = _("a date like 2026-03-05")
    else:
        for candidate in (value, value.split()[0]):
            try:
                moment = datetime.strptime(candidate, date_format)
                break
            except ValueError:
                continue
        expected = _("the date format {date_format}", date_format=date_format)
    if moment is None:
        raise ValidationError(
            _("{shown} doesn't match {expected}.", shown=_shown(text), expected=expected),
            field="date",
        )
    if moment.tzinfo is not None:
        try:
            return moment.astimezone(tz).date()
        except OverflowError:  # 9999-12-31 at -12:00 is already year 10000 in the district
            raise ValidationError(
                _("{shown} is not a day.", shown=_shown(text)), field="date"
            ) from None
    return moment.date()


def invoice_numbers_in(text: str, prefix: str) -> list[str]:
    """Invoice numbers named in a cell, in the form the store keeps ("INV-000042").

    The cell may be the number alone ("INV-000042", "inv 42", "42") or a memo around it
    ("Device fee INV-000042 Ana"). A number followed by "-<digits>" is some other scheme's
    ("INV-2026-0042") and is left alone rather than misread.
    """
    cell = text.strip()
    if _DIGITS_ONLY.fullmatch(cell):
        return [f"{prefix}-{int(cell):06d}"] if prefix else []
    if not prefix:
        return []
    pattern = re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}[\s#:-]{{0,2}}([0-9]{{1,12}})(?![0-9]|-[0-9])",
        re.IGNORECASE,
    )
    found: list[str] = []
    for match in pattern.finditer(cell):
        number = f"{prefix}-{int(match.group(1)):06d}"
        if number not in found:
            found.append(number)
    return found


def content_reference(headers: Sequence[str], cells: Sequence[str]) -> str:
    """A stable identity for a row without a transaction id: a hash of its non-empty cells by
    header, so the same row hashes the same even if the export's columns are reordered."""
    pairs = sorted(
        (header_key(h), " ".join(cells[i].split()))
        for i, h in enumerate(headers)
        if i < len(cells) and cells[i].strip()
    )
    digest = hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()
    return f"row-{digest[:32]}"


@dataclass(frozen=True)
class PortalRow:
    """A row whose every field is valid; whether it matches an invoice is for the store."""

    line: int
    reference: str  # the portal's transaction id, or a content hash (then `hashed`)
    hashed: bool
    invoice_text: str
    invoice_number: str | None  # None: no invoice number in the cell
    amount_cents: int  # negative: a refund or reversal
    received_on: date
    payer: str

    @property
    def shown_reference(self) -> str:
        return "" if self.hashed else self.reference


@dataclass(frozen=True)
class RowProblem:
    """A row that can't be used as it is; nothing is done with it."""

    line: int
    reason: str
    reference: str
    invoice_text: str
    amount_text: str
    date_text: str
    payer: str


def _cell(cells: Sequence[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()


def parse_row(
    portal: PortalFile,
    line: int,
    cells: Sequence[str],
    *,
    date_format: str,
    invoice_prefix: str,
    tz: tzinfo,
) -> PortalRow | RowProblem:
    c = portal.columns
    reference = _cell(cells, c.reference)
    invoice_text = _cell(cells, c.invoice)
    amount_text = _cell(cells, c.amount)
    date_text = _cell(cells, c.date)
    payer = " ".join(_cell(cells, c.payer).split())

    def problem(reason: str) -> RowProblem:
        return RowProblem(line, reason, reference, invoice_text, amount_text, date_text, payer)

    if len(reference) > MAX_REFERENCE:
        return problem(_("The reference is longer than {max} characters.", max=MAX_REFERENCE))
    reasons: list[str] = []
    amount_cents: int | None = None
    received_on: date | None = None
    try:
        amount_cents = parse_portal_amount(amount_text)
    except ValidationError as exc:
        reasons.append(exc.message)
    try:
        received_on = parse_portal_date(date_text, date_format, tz)
    except ValidationError as exc:
        reasons.append(exc.message)
    if reasons or amount_cents is None or received_on is None:
        return problem(" ".join(reasons))
    numbers = invoice_numbers_in(invoice_text, invoice_prefix)
    if len(numbers) > 1:
        return problem(
            _(
                "It names several invoices ({numbers}); split it by hand.",
                numbers=", ".join(numbers),
            )
        )
    hashed = not reference
    return PortalRow(
        line=line,
        reference=content_reference(portal.headers, cells) if hashed else reference,
        hashed=hashed,
        invoice_text=invoice_text,
        invoice_number=numbers[0] if numbers else None,
        amount_cents=amount_cents,
        received_on=received_on,
        payer=payer,
    )


def parse_rows(
    portal: PortalFile, *, date_format: str, invoice_prefix: str, tz: tzinfo
) -> Iterator[PortalRow | RowProblem]:
    unreadable = iter(portal.unreadable)
    refused = next(unreadable, None)
    for line, cells in portal.records:
        while refused is not None and refused[0] < line:
            yield RowProblem(refused[0], refused[1], "", "", "", "", "")
            refused = next(unreadable, None)
        yield parse_row(
            portal, line, cells, date_format=date_format, invoice_prefix=invoice_prefix, tz=tz
        )
    while refused is not None:
        yield RowProblem(refused[0], refused[1], "", "", "", "", "")
        refused = next(unreadable, None)


def payment_key(source: str, reference: str) -> str:
    """The payment's idempotency key, "portal:<name>:<reference>"."""
    return f"{source}:{reference}"


# --- what a row does ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """How much of a row's money goes on the invoice, and how much is left over."""

    apply_cents: int
    excess_cents: int
    reason: str = ""


def split_payment(amount_cents: int, number: str, status: str, balance_cents: int) -> Split:
    """Record what fits (as for Stripe's money): a payment above the balance pays it off and
    the rest is excess (to refund); a paid or cancelled invoice takes nothing."""
    split = split_online_payment(amount_cents, balance_cents=balance_cents, status=status)
    if not split.excess_cents:
        return Split(split.applied_cents, 0)
    if status == InvoiceStatus.CANCELLED:
        reason = _("Invoice {number} is cancelled; it takes no payments.", number=number)
    elif not split.applied_cents:
        reason = _("Invoice {number} was already paid in full.", number=number)
    else:
        reason = _(
            "Only {balance} was owed on invoice {number}.",
            balance=format_cents(balance_cents),
            number=number,
        )
    return Split(split.applied_cents, split.excess_cents, reason)


class Outcome(StrEnum):
    APPLIED = "applied"
    ALREADY = "already imported"
    UNMATCHED = "unmatched"
    EXCESS = "excess"
    REVERSAL = "reversal"
    REJECTED = "rejected"

    @property
    def needs_attention(self) -> bool:
        """Rows the business office has to deal with by hand (they go in the report file)."""
        return self in (Outcome.UNMATCHED, Outcome.EXCESS, Outcome.REVERSAL, Outcome.REJECTED)


# Outcomes kept in payment_events, so a rerun skips the row; unmatched and rejected rows changed
# nothing and are looked at again on every run (the invoice may exist by then).
RECORDED_OUTCOMES: Mapping[Outcome, str] = {
    Outcome.APPLIED: "applied",
    Outcome.EXCESS: "excess",
    Outcome.REVERSAL: "ignored",
}


@dataclass(frozen=True)
class RowResult:
    line: int
    outcome: Outcome
    reference: str
    invoice_text: str
    invoice_number: str | None
    amount_text: str
    amount_cents: int | None
    applied_cents: int
    excess_cents: int
    received_on: date | None
    date_text: str
    payer: str
    reason: str = ""


def result_of_problem(problem: RowProblem) -> RowResult:
    return RowResult(
        line=problem.line,
        outcome=Outcome.REJECTED,
        reference=problem.reference,
        invoice_text=problem.invoice_text,
        invoice_number=None,
        amount_text=problem.amount_text,
        amount_cents=None,
        applied_cents=0,
        excess_cents=0,
        received_on=None,
        date_text=problem.date_text,
        payer=problem.payer,
        reason=problem.reason,
    )


def result_of_row(
    row: PortalRow,
    outcome: Outcome,
    *,
    applied_cents: int = 0,
    excess_cents: int = 0,
    invoice_number: str | None = None,
    reason: str = "",
) -> RowResult:
    return RowResult(
        line=row.line,
        outcome=outcome,
        reference=row.shown_reference,
        invoice_text=row.invoice_text,
        invoice_number=invoice_number or row.invoice_number,
        amount_text=format_cents(row.amount_cents),
        amount_cents=row.amount_cents,
        applied_cents=applied_cents,
        excess_cents=excess_cents,
        received_on=row.received_on,
        date_text=row.received_on.isoformat(),
        payer=row.payer,
        reason=reason,
    )


@dataclass(frozen=True)
class OutcomeTotal:
    outcome: Outcome
    rows: int
    amount_cents: int  # the rows' own amounts


@dataclass
class ImportReport:
    source: str
    dry_run: bool
    rows: list[RowResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.rows if r.outcome is outcome)

    @property
    def applied_cents(self) -> int:
        return sum(r.applied_cents for r in self.rows if r.outcome is not Outcome.ALREADY)

    @property
    def excess_cents(self) -> int:
        return sum(r.excess_cents for r in self.rows if r.outcome is not Outcome.ALREADY)

    @property
    def attention(self) -> list[RowResult]:
        return [r for r in self.rows if r.outcome.needs_attention]

    def totals(self) -> list[OutcomeTotal]:
        return [
            OutcomeTotal(
                outcome,
                self.count(outcome),
                sum(r.amount_cents or 0 for r in self.rows if r.outcome is outcome),
            )
            for outcome in Outcome
        ]
