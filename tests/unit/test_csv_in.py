"""The shared CSV reading layer: encodings, headers, line numbers and the rows it refuses."""

from __future__ import annotations

import csv

import pytest

from storage.csv_in import Column, CsvFileError, Problem, Record, find_columns, open_csv


def read(data: bytes | str, **options: str | tuple[str, ...]) -> tuple[tuple[str, ...], list]:
    raw = data.encode() if isinstance(data, str) else data
    with open_csv(raw, name="f.csv", **options) as reader:  # type: ignore[arg-type]
        items = [
            (i.line, i.values) if isinstance(i, Record) else (i.line, i.reason) for i in reader
        ]
        return reader.header, items


def test_line_numbers_are_physical_lines_whatever_the_line_ends() -> None:
    text = 'a,b\r\n1,"x\r\ny"\r\n\r\n2,z\r3,w\n'
    header, items = read("\ufeff" + text)
    assert header == ("a", "b")
    assert items == [(2, ("1", "x\r\ny")), (5, ("2", "z")), (6, ("3", "w"))]


def test_the_header_is_the_first_non_blank_record() -> None:
    header, items = read("\n\nid,name\n1,Ana\n")
    assert header == ("id", "name") and items == [(4, ("1", "Ana"))]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("a\x00b", "name has a NUL byte"),
        ("\x1b[31m", "name has a control character (U+001B)"),
        ("a\x85b", "name has a control character (U+0085)"),
        ("a\x7f", "name has a control character (U+007F)"),
    ],
)
def test_control_characters_refuse_the_row_only(cell: str, reason: str) -> None:
    _, items = read(f"id,name\n1,{cell}\n2,Ana\n")
    assert items == [(2, reason), (3, ("2", "Ana"))]


def test_tabs_and_quoted_newlines_are_text() -> None:
    _, items = read('id,name\n1,"a\tb\nc"\n')
    assert items == [(2, ("1", "a\tb\nc"))]


def test_a_quote_never_closed_is_reported_where_it_opens_and_the_rest_is_read() -> None:
    _, items = read('id,name\n1,Ana\n2,"Leo\n3,Mia\n4,"Zoe')
    assert items == [
        (2, ("1", "Ana")),
        # Its quote pairs with the one opening "Zoe": text right after a closing quote tells.
        (3, "a quote opened on this line closes only on line 5; the lines after it are read "
         "as rows of their own"),
        (4, ("3", "Mia")),
        (5, "a quote opened on this line is never closed"),
    ]  # fmt: skip


def test_a_stray_quote_that_pairs_with_a_later_one_is_reported() -> None:
    _, items = read('id,name,grade\n1,"Ana,07\n2,Leo,05\n3,"Mia",06\n')
    assert items == [
        (2, "a quote opened on this line closes only on line 4; the lines after it are read "
         "as rows of their own"),
        (3, ("2", "Leo", "05")),
        (4, ("3", "Mia", "06")),
    ]  # fmt: skip


def test_a_multi_line_value_that_fits_the_header_is_kept() -> None:
    _, items = read('id,address\n1,"12 Main St\nApt 4"\n2,Elm\n')
    assert items == [(2, ("1", "12 Main St\nApt 4")), (4, ("2", "Elm"))]


def test_a_value_over_the_size_limit_is_one_bad_row() -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    _, items = read(f"id,name\n1,{huge}\n2,Ana\n")
    assert items == [(2, f"a value is longer than {csv.field_size_limit():,} characters"),
                     (3, ("2", "Ana"))]  # fmt: skip


def test_a_quote_open_past_the_size_limit_lets_the_next_lines_be_read() -> None:
    rows = "".join(f"{n},{'y' * 90}\n" for n in range(3, 3000))
    _, items = read(f'id,name\n1,"Ana\n{rows}')
    assert items[0][0] == 2 and "isn't closed within" in items[0][1]
    assert items[1] == (3, ("3", "y" * 90)) and len(items) == 2998


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("id,name\n".encode("utf-16"), "f.csv is UTF-16 text"),
        ("id,name\n".encode("utf-32"), "f.csv is UTF-32 text"),
        (b"id,name\r\n1,Ana\r\n2,Jos\xe9\r\n", "f.csv line 3 is not UTF-8 text (byte 0xE9)"),
        (b"id,name\r1,Ana\r2,\xff\r", "f.csv line 3 is not UTF-8 text (byte 0xFF)"),
    ],
)
def test_files_that_are_not_utf8_text_are_refused_with_the_line(data: bytes, message: str) -> None:
    with pytest.raises(CsvFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(data)


def test_a_fallback_encoding_is_used_only_when_utf8_fails() -> None:
    encodings = ("utf-8", "cp1252")
    assert read("id,name\n1,José\n".encode("cp1252"), encodings=encodings)[1] == [
        (2, ("1", "José"))
    ]
    assert read("id,name\n1,José\n", encodings=encodings)[1] == [(2, ("1", "José"))]
    with pytest.raises(CsvFileError, match="line 2 is not UTF-8 or Windows-1252 text"):
        read(b"id,name\n1,\x81\n", encodings=encodings)


def test_a_header_that_cant_be_read_refuses_the_file() -> None:
    with pytest.raises(CsvFileError, match="line 1, the header, can't be read: value 1 has a NUL"):
        read("id\x00,name\n1,Ana\n")
    with pytest.raises(CsvFileError, match="the header, can't be read: a quote opened"):
        read('"id,name\n1,Ana\n')


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [("a;b\n1;2\n", ";"), ("a\tb\n1\t2\n", "\t"), ("a,b\n1,2\n", ","), ("a\n", ",")],
)
def test_the_delimiter_is_sniffed_and_the_lines_read_after(text: str, delimiter: str) -> None:
    with open_csv(text.encode(), delimiters=",;\t") as reader:
        assert reader.delimiter == delimiter
        assert reader.header[0] == "a"
        assert [i.line for i in reader] == ([2] if "1" in text else [])


COLUMNS = [
    Column("serial", ("serial number",)),
    Column("plan"),
    Column("provider", required=False),
]


def test_columns_are_found_by_name_or_alias() -> None:
    assert find_columns("f.csv", ("Plan", " Serial Number "), COLUMNS) == {"plan": 0, "serial": 1}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ((), "f.csv is empty: it needs a header row with the columns serial, plan "
         "(and optionally provider)."),
        (("", " "), "f.csv is empty"),
        (("serial", "cost"), "f.csv has no column plan. It needs the columns serial, plan "
         "(and optionally provider); its header is: serial, cost."),
        (("serial", "plan", "PLAN"), 'f.csv has 2 columns named "plan"; keep one.'),
    ],
)  # fmt: skip
def test_a_wrong_header_refuses_the_file_naming_the_columns(
    header: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CsvFileError) as caught:
        find_columns("f.csv", header, COLUMNS)
    assert message in str(caught.value)


def test_problems_print_as_file_line_reason() -> None:
    assert str(Problem("users.csv", 4, "missing role")) == "users.csv:4: missing role"
