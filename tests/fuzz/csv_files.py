"""Hypothesis strategies for the files the command line reads: CSV exports (roster, device
inventory, enrollments, device coverage, payment portal) and the payment import's TOML mapping.

A file starts from the importer's own columns and cells that are sometimes right (known ids,
serials, invoice numbers, dates, amounts) and often hostile (control characters, NULs, formula
cells, absurd numbers and dates, huge values), is laid out as CSV with or without proper
quoting, then may be damaged: an unclosed quote, a NUL, stray BOMs, another encoding (UTF-16,
Windows-1252), truncation, random bytes. Some files are random bytes from the start.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# A value past the csv module's field limit (131,072 characters), drawn rarely: it is slow.
HUGE = "x" * 140_000

FORMULAS = ("=1+1", "@SUM(A1:A2)", "+cmd|' /C calc'!A0", "-2+3", '=HYPERLINK("http://x")')
NUMBERS = (
    "0", "-0", "5", "25.00", "$1,234.50", "(5.00)", "5.00-", "1e308", "-1e308", "NaN", "inf",
    "99999999999999999999999", "0.001", "1,2,3", "$", "-", "12.345", "USD -5", "\u221210",
    "9223372036854775808", "-9223372036854775809",
)  # fmt: skip
DATES = (
    "2026-02-01", "02/01/2026", "2026-02-30", "0001-01-01", "9999-12-31", "99/99/9999",
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "2026-02-01T10:00:00Z",
    "2026-13-01", "1900-02-29", "tomorrow", "20260201", "2026-02-01 10:15 AM",
)  # fmt: skip

# Text with anything Unicode can encode in UTF-8: controls, NULs, RTL marks, emoji.
any_text = st.text(st.characters(codec="utf-8"), max_size=12)
control_text = st.text(
    st.sampled_from(
        ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\r", "\n", "\t", "a"]
    ),
    min_size=1,
    max_size=4,
)


hostile_cells = st.one_of(
    any_text,
    control_text,
    st.sampled_from(FORMULAS),
    st.sampled_from(NUMBERS),
    st.sampled_from(DATES),
    st.sampled_from(["", " ", '"', "y" * 300]),
)


def cells(*known: str) -> st.SearchStrategy[str]:
    """A cell: one of `known` or hostile, evenly."""
    return st.one_of(st.sampled_from(known), hostile_cells) if known else hostile_cells


DEFECTS = (
    *["none"] * 8,  # most files are well formed, so their rows get imported
    "header",  # a column missing, repeated or renamed, or no header at all
    "text",  # a stray quote, NUL, BOM, line break or huge value somewhere
    "encoding",  # UTF-16, Windows-1252 or Latin-1 instead of UTF-8
    "bytes",  # cut short, or random bytes inserted
    "random",  # random bytes from the start
)


@st.composite
def headers(draw: st.DrawFn, columns: Sequence[str], right: bool) -> list[str]:
    """The right header (in any order and case), or one with a column missing, repeated,
    renamed, or none at all."""
    names = list(columns)
    kind = "right" if right else draw(st.sampled_from(["missing", "twice", "odd", "none"]))
    if kind == "missing" and names:
        names.pop(draw(st.integers(0, len(names) - 1)))
    elif kind == "twice" and names:
        names.append(draw(st.sampled_from(names)).upper())
    elif kind == "odd":
        names = draw(st.lists(any_text, max_size=4))
    elif kind == "none":
        return []
    if draw(st.booleans()):
        names = draw(st.permutations(names))
    return [n.upper() if draw(st.booleans()) and n.isascii() else n for n in names]


@st.composite
def csv_files(
    draw: st.DrawFn,
    columns: Sequence[str],
    known: Mapping[str, Sequence[str]],
    *,
    delimiters: str = ",",
    max_rows: int = 5,
) -> bytes:
    """A CSV file for an importer with these `columns`, its cells `known` values (keyed by
    lower-case column) or hostile ones, with at most one defect of the file as a whole. Rows
    are good, good but for one cell, or anything, so that files get imported as well as
    refused."""
    defect = draw(st.sampled_from(DEFECTS))
    if defect == "random":
        return draw(st.binary(max_size=300))
    header = draw(headers(columns, right=defect != "header"))
    rows: list[list[str]] = []
    for _ in range(draw(st.integers(1, max_rows))):
        good = [
            draw(st.sampled_from(known[name.lower()])) if known.get(name.lower()) else ""
            for name in header
        ]
        kind = draw(st.sampled_from(["good", "good", "one bad", "any"]))
        if kind == "one bad" and good:
            good[draw(st.integers(0, len(good) - 1))] = draw(hostile_cells)
        elif kind == "any":
            good = [draw(cells(*known.get(name.lower(), ()))) for name in header]
        ragged = draw(st.integers(0, 9))  # a short or long row now and then
        if ragged == 0 and good:
            good.pop()
        elif ragged == 1:
            good.append(draw(hostile_cells))
        rows.append(good)
    delimiter = draw(st.sampled_from(delimiters))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    if draw(st.integers(0, 3)):
        writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
        for row in [header, *rows]:
            writer.writerow(row)
    else:  # no quoting at all: a value with a comma, quote or newline breaks the layout
        for row in [header, *rows]:
            out.write(delimiter.join(row) + newline)
    text = out.getvalue()
    if defect == "text":
        text = draw(damaged_text(text))
    encoding = "utf-8"
    if defect == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "cp1252", "latin-1", "utf-32"]))
    elif draw(st.integers(0, 4)) == 0:
        encoding = "utf-8-sig"
    data = text.encode(encoding, errors="replace")
    return draw(damaged_bytes(data)) if defect == "bytes" else data


@st.composite
def damaged_text(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(text)))
        bit = draw(st.sampled_from(['"', "\x00", "\ufeff", "\n", "\r", ",", '"\n"', "\x1b[2J"]))
        if draw(st.integers(0, 9)) == 0:  # rare: slow to write and to read
            bit = HUGE
        text = text[:where] + bit + text[where:]
    return text


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    if data and draw(st.booleans()):
        return data[: draw(st.integers(0, len(data)))]
    where = draw(st.integers(0, len(data)))
    return data[:where] + draw(st.binary(min_size=1, max_size=8)) + data[where:]


@st.composite
def toml_mappings(draw: st.DrawFn) -> bytes:
    """A payment import's mapping file: valid, wrong keys, wrong types, not TOML, not text."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.binary(max_size=80))
    if kind == 1:
        return draw(any_text).encode("utf-8")
    column = st.one_of(st.sampled_from(["invoice", "amount", "date", "reference", "payer", ""]),
                       any_text)  # fmt: skip
    lines = []
    for key in draw(st.lists(st.sampled_from(["preset", "portal", "date_format", "bogus"]))):
        value = draw(st.one_of(column, st.sampled_from(["revtrak", "%m/%d/%Y", "%Q", "%", "iso"])))
        lines.append(f"{key} = {_toml_value(draw, value)}")
    lines.append("[columns]")
    for key in draw(st.lists(st.sampled_from(["invoice", "amount", "date", "reference",
                                              "payer", "memo"]), max_size=5)):  # fmt: skip
        lines.append(f"{key} = {_toml_value(draw, draw(column))}")
    return "\n".join(lines).encode(draw(st.sampled_from(["utf-8", "utf-16"])), errors="replace")


def _toml_value(draw: st.DrawFn, text: str) -> str:
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return str(draw(st.integers()))
    if choice == 1:
        return "[1, 2]"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def fuzz_settings(default: int) -> settings:
    """`default` cases in the test command; FUZZ_EXAMPLES cases for a longer run.
    FUZZ_SHRINK=0 reports a failure as found, without shrinking it (each case runs a
    command, so shrinking can take minutes)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    if os.environ.get("FUZZ_SHRINK") == "0":
        phases.remove(Phase.shrink)
    return settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", default)),
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
