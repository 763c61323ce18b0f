"""The rules for reading a school payment portal's export (no database)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage.csv_in import open_csv
from storage.portal_file import read_export
from workflows.errors import ValidationError
from workflows.portal_import import (
    DELIMITERS,
    ISO_DATE,
    PRESETS,
    ColumnMapping,
    ImportReport,
    MappingChoices,
    MappingProblem,
    Outcome,
    PortalFile,
    PortalRow,
    RowProblem,
    Split,
    build_mapping,
    choices_from_toml,
    content_reference,
    invoice_numbers_in,
    parse_portal_amount,
    parse_portal_date,
    parse_rows,
    payment_key,
    portal_slug,
    portal_source,
    result_of_row,
    split_payment,
)

TZ = ZoneInfo("America/Chicago")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "portal"


def open_text(text: str, mapping: ColumnMapping) -> PortalFile:
    """An export given as text, read as the command reads a file."""
    return read_export(text.encode(), mapping)


# --- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("25", 2500),
        ("25.5", 2550),
        ("$1,234.50", 123_450),
        (" $ 40.00 ", 4000),
        ("USD 12.00", 1200),
        ("12.00 USD", 1200),
        (".75", 75),
        ("25.500", 2550),
        ("(5.00)", -500),
        ("($5.00)", -500),
        ("-5.00", -500),
        ("-$5.00", -500),
        ("$-5.00", -500),
        ("5.00-", -500),
        ("\u22125.00", -500),
    ],
)
def test_amounts_as_portals_write_them(text: str, cents: int) -> None:
    assert parse_portal_amount(text) == cents


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The amount is empty."),
        ("abc", '"abc" isn\'t an amount.'),
        ("1,23.00", "isn't an amount"),
        ("12.345", "fractions of a cent"),
        ("0.00", "$0.00"),
        ("$", "isn't an amount"),
        ("99999999999", "largest allowed amount"),
    ],
)
def test_bad_amounts_say_why(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_portal_amount(text)
    assert message in caught.value.message


# --- dates --------------------------------------------------------------------------------------


def test_iso_dates_with_or_without_a_time() -> None:
    assert parse_portal_date("2026-03-05", ISO_DATE, TZ) == date(2026, 3, 5)
    assert parse_portal_date("2026-03-05 14:22:05", ISO_DATE, TZ) == date(2026, 3, 5)


def test_a_moment_with_an_offset_is_counted_in_the_district_zone() -> None:
    # 03:30 UTC on March 6 is 9:30 pm on March 5 in Chicago.
    assert parse_portal_date("2026-03-06T03:30:00Z", ISO_DATE, TZ) == date(2026, 3, 5)


def test_a_named_format_and_a_trailing_time() -> None:
    assert parse_portal_date("03/05/2026", "%m/%d/%Y", TZ) == date(2026, 3, 5)
    assert parse_portal_date("03/05/2026 10:15 AM", "%m/%d/%Y", TZ) == date(2026, 3, 5)
    assert parse_portal_date("05.03.2026", "%d.%m.%Y", TZ) == date(2026, 3, 5)


def test_a_date_in_another_form_is_refused_with_the_format_expected() -> None:
    with pytest.raises(ValidationError, match=r"%m/%d/%Y"):
        parse_portal_date("2026-03-05", "%m/%d/%Y", TZ)
    with pytest.raises(ValidationError, match="2026-03-05"):
        parse_portal_date("03/05/2026", ISO_DATE, TZ)
    with pytest.raises(ValidationError, match="empty"):
        parse_portal_date(" ", ISO_DATE, TZ)


# --- invoice numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("INV-000042", ["INV-000042"]),
        ("inv-42", ["INV-000042"]),
        ("42", ["INV-000042"]),
        ("Device fee INV-000042 Ana", ["INV-000042"]),
        ("Device fee (inv #42), Ana", ["INV-000042"]),
        ("INV 42 and again INV-000042", ["INV-000042"]),
        ("INV-41 and INV-42", ["INV-000041", "INV-000042"]),
        ("Technology fee for Ana", []),
        ("Device fee INV-2026-0042 Ana", []),  # another scheme: left alone, not misread
        ("PREINV-42", []),
        ("", []),
    ],
)
def test_invoice_numbers_in_a_cell(text: str, numbers: list[str]) -> None:
    assert invoice_numbers_in(text, "INV") == numbers


def test_the_district_prefix_is_the_one_searched_for() -> None:
    assert invoice_numbers_in("Fee DC-7 Ana", "DC") == ["DC-000007"]
    assert invoice_numbers_in("Fee INV-7 Ana", "DC") == []


# --- the mapping --------------------------------------------------------------------------------


def test_defaults_presets_and_overrides() -> None:
    assert build_mapping(MappingChoices()) == ColumnMapping()
    revtrak = build_mapping(MappingChoices(preset="RevTrak"))
    assert revtrak == PRESETS["revtrak"]
    assert revtrak.reference_required and revtrak.date_format == "%m/%d/%Y"
    changed = build_mapping(
        MappingChoices(preset="revtrak", invoice="Memo", date_format="%Y/%m/%d")
    )
    assert changed.invoice == "Memo" and changed.amount == "Amount"
    assert changed.date_format == "%Y/%m/%d"


def test_an_empty_reference_column_means_the_file_has_none() -> None:
    mapping = build_mapping(MappingChoices(preset="myschoolbucks", reference=""))
    assert mapping.reference is None and not mapping.reference_required


def test_bad_mapping_choices_are_refused() -> None:
    with pytest.raises(MappingProblem, match="revtrak"):
        build_mapping(MappingChoices(preset="paypal"))
    with pytest.raises(MappingProblem, match="amount column's name can't be empty"):
        build_mapping(MappingChoices(amount=" "))
    with pytest.raises(MappingProblem, match="no % codes"):
        build_mapping(MappingChoices(date_format="mm/dd/yyyy"))


def test_mapping_file_then_command_line_on_top() -> None:
    from_file = choices_from_toml(
        'preset = "myschoolbucks"\nportal = "MSB"\n[columns]\ninvoice = "Notes"\npayer = "Who"\n'
    )
    given = MappingChoices(payer="Parent").over(from_file)
    mapping = build_mapping(given)
    assert given.portal == "MSB"
    assert (mapping.invoice, mapping.payer, mapping.amount) == ("Notes", "Parent", "Amount Paid")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset = ", "not valid TOML"),
        ('delimiter = ";"', "unknown setting(s) delimiter"),
        ('[columns]\nmemo = "Memo"', "unknown column(s) memo"),
        ("[columns]\namount = 3", "amount must be text"),
        ('columns = "x"', "[columns] must be a table"),
    ],
)
def test_mapping_file_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(MappingProblem) as caught:
        choices_from_toml(text, source="map.toml")
    assert message in caught.value.message
    assert "map.toml" in caught.value.message


def test_portal_names_become_sources() -> None:
    assert portal_slug("MySchoolBucks (High School)") == "myschoolbucks-high-school"
    assert portal_source("the school payment portal") == "portal:the-school-payment-portal"
    assert len(portal_source("x" * 100)) == 40
    with pytest.raises(MappingProblem):
        portal_slug(" -- ")
    assert payment_key("portal:revtrak", "RT-1") == "portal:revtrak:RT-1"


# --- reading the file ---------------------------------------------------------------------------


def test_headers_match_trimmed_any_case_and_past_a_byte_order_mark() -> None:
    text = "\ufeff INVOICE ,Amount  Paid,date,Reference\nINV-1,5.00,2026-03-01,T1\n"
    portal = open_text(text, build_mapping(MappingChoices(amount="amount paid")))
    assert portal.headers[0] == "INVOICE"
    assert (portal.columns.invoice, portal.columns.amount, portal.columns.reference) == (0, 1, 3)
    assert portal.columns.payer is None  # the default payer column is optional


def test_a_missing_column_is_named_with_the_headers_found() -> None:
    with pytest.raises(MappingProblem) as caught:
        open_text("Invoice,Total,Paid On\nINV-1,5,2026-03-01\n", ColumnMapping())
    message = caught.value.message
    assert '"amount" (--amount-column)' in message and '"date" (--date-column)' in message
    assert 'Its headers are: "Invoice", "Total", "Paid On".' in message


def test_a_named_reference_or_payer_column_must_be_there() -> None:
    with pytest.raises(MappingProblem, match="Order Number"):
        open_text("Order Date,Item Description,Amount\n", PRESETS["revtrak"])
    mapping = build_mapping(MappingChoices(payer="Parent"))
    with pytest.raises(MappingProblem, match='"Parent" \\(--payer-column\\)'):
        open_text("invoice,amount,date\n", mapping)


def test_a_column_named_twice_is_ambiguous() -> None:
    with pytest.raises(MappingProblem, match='2 columns named "amount"'):
        open_text("invoice,amount,date,Amount\n", ColumnMapping())


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(MappingProblem, match="is empty: it needs a header row"):
        open_text("", ColumnMapping())


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("invoice,amount,date\nINV-1,5.00,2026-03-01\n", ","),
        ("invoice;amount;date\nINV-1;5,00;2026-03-01\n", ";"),
        ("invoice\tamount\tdate\nINV-1\t$1,005.00\t2026-03-01\n", "\t"),
        ("invoice\n", ","),
    ],
)
def test_the_delimiter_is_sniffed(text: str, delimiter: str) -> None:
    with open_csv(text.encode(), delimiters=DELIMITERS) as reader:
        assert reader.delimiter == delimiter


def test_windows_1252_exports_are_read() -> None:
    data = "invoice,amount,date,payer\nINV-1,5,2026-03-01,María Núñez\n".encode("cp1252")
    portal = read_export(data, ColumnMapping())
    assert portal.records == ((2, ("INV-1", "5", "2026-03-01", "María Núñez")),)


def test_line_numbers_are_the_spreadsheet_lines() -> None:
    text = (
        "invoice,amount,date,reference\n"
        'INV-1,5.00,2026-03-01,"T1\nsecond line"\n'
        "\n"
        ",,,\n"
        "INV-2,abc,2026-03-01,T2\n"
    )
    portal = open_text(text, ColumnMapping())
    rows = list(parse_rows(portal, date_format=ISO_DATE, invoice_prefix="INV", tz=TZ))
    assert [r.line for r in rows] == [2, 6]
    assert isinstance(rows[1], RowProblem) and rows[1].reason == '"abc" isn\'t an amount.'


def test_every_problem_of_a_row_is_told_and_the_row_kept_as_written() -> None:
    portal = open_text("invoice,amount,date,payer\nINV-1,x,someday,Ana\n", ColumnMapping())
    [row] = parse_rows(portal, date_format=ISO_DATE, invoice_prefix="INV", tz=TZ)
    assert isinstance(row, RowProblem)
    assert row.reason == '"x" isn\'t an amount. "someday" doesn\'t match a date like 2026-03-05.'
    assert (row.invoice_text, row.amount_text, row.date_text, row.payer) == (
        "INV-1",
        "x",
        "someday",
        "Ana",
    )


def test_a_row_naming_two_invoices_is_refused() -> None:
    portal = open_text("invoice,amount,date\nINV-1 and INV-2,5,2026-03-01\n", ColumnMapping())
    [row] = parse_rows(portal, date_format=ISO_DATE, invoice_prefix="INV", tz=TZ)
    assert isinstance(row, RowProblem) and "INV-000001, INV-000002" in row.reason


def test_an_overlong_reference_is_refused() -> None:
    portal = open_text(
        f"invoice,amount,date,reference\nINV-1,5,2026-03-01,{'x' * 101}\n", ColumnMapping()
    )
    [row] = parse_rows(portal, date_format=ISO_DATE, invoice_prefix="INV", tz=TZ)
    assert isinstance(row, RowProblem) and "longer than 100" in row.reason


def test_the_presets_read_their_fixture_exports() -> None:
    for name, preset in (
        ("revtrak.csv", "revtrak"),
        ("myschoolbucks.csv", "myschoolbucks"),
        ("schoolcash.csv", "schoolcash"),
    ):
        mapping = build_mapping(MappingChoices(preset=preset))
        portal = read_export(FIXTURES / name, mapping)
        rows = list(
            parse_rows(portal, date_format=mapping.date_format, invoice_prefix="INV", tz=TZ)
        )
        first = rows[0]
        assert isinstance(first, PortalRow), name
        assert first.invoice_number == "INV-000001" and not first.hashed


def test_a_row_without_reference_is_known_by_its_content() -> None:
    a = content_reference(["Invoice", "Amount", "Date"], ["INV-1", "5.00", "2026-03-01"])
    reordered = content_reference(["date", "INVOICE", "amount"], ["2026-03-01", "INV-1", "5.00"])
    other = content_reference(["Invoice", "Amount", "Date"], ["INV-1", "5.00", "2026-03-02"])
    assert a == reordered != other
    assert a.startswith("row-") and len(a) == 36

    portal = open_text("invoice,amount,date\nINV-1,5.00,2026-03-01\n", ColumnMapping())
    [row] = parse_rows(portal, date_format=ISO_DATE, invoice_prefix="INV", tz=TZ)
    assert isinstance(row, PortalRow) and row.hashed and row.shown_reference == ""


# --- what a row does ----------------------------------------------------------------------------


def test_what_fits_is_applied_and_the_rest_is_excess() -> None:
    assert split_payment(4000, "INV-000001", "unpaid", 10_000) == Split(4000, 0)
    assert split_payment(10_000, "INV-000001", "first", 10_000) == Split(10_000, 0)
    over = split_payment(7500, "INV-000002", "unpaid", 5000)
    assert (over.apply_cents, over.excess_cents) == (5000, 2500)
    assert over.reason == "Only $50.00 was owed on invoice INV-000002."


def test_paid_and_cancelled_invoices_take_nothing() -> None:
    paid = split_payment(2000, "INV-000004", "paid", 0)
    assert (paid.apply_cents, paid.excess_cents) == (0, 2000)
    assert "already paid in full" in paid.reason
    cancelled = split_payment(1000, "INV-000003", "cancelled", 1000)
    assert (cancelled.apply_cents, cancelled.excess_cents) == (0, 1000)
    assert "cancelled" in cancelled.reason


def test_the_report_totals_and_rows_needing_attention() -> None:
    def row(line: int, cents: int) -> PortalRow:
        return PortalRow(
            line, f"T{line}", False, "INV-1", "INV-000001", cents, date(2026, 3, 1), ""
        )

    report = ImportReport("portal:x", dry_run=False)
    report.rows = [
        result_of_row(row(2, 4000), Outcome.APPLIED, applied_cents=4000),
        result_of_row(row(3, 7500), Outcome.EXCESS, applied_cents=5000, excess_cents=2500),
        result_of_row(row(4, 1000), Outcome.ALREADY, applied_cents=0),
        result_of_row(row(5, -500), Outcome.REVERSAL),
        result_of_row(row(6, 900), Outcome.UNMATCHED),
    ]
    assert report.applied_cents == 9000 and report.excess_cents == 2500
    assert [r.line for r in report.attention] == [3, 5, 6]
    totals = {t.outcome: (t.rows, t.amount_cents) for t in report.totals()}
    assert totals[Outcome.APPLIED] == (1, 4000)
    assert totals[Outcome.REVERSAL] == (1, -500)
    assert totals[Outcome.REJECTED] == (0, 0)
