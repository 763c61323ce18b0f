"""Third-party device coverage (AppleCare+ and the like) loaded from a CSV export, and what a
device's record shows about it.

The file is shaped like an Apple School Manager coverage export: one row per device and plan.
Header names are matched without case, spaces or underscores, and these are accepted:

| column | accepted headers |
|---|---|
| serial | `serial`, `serial number`, `device serial number` |
| plan | `plan`, `coverage`, `coverage description`, `agreement description`, `description` |
| coverage start | `coverage_start`, `coverage start date`, `start date`, `agreement start date` |
| coverage end | `coverage_end`, `coverage end date`, `end date`, `agreement end date`, |
| | `expiration date` |
| provider (optional) | `provider`, `vendor` (default: Apple for AppleCare plans, else the plan) |

Dates are `YYYY-MM-DD` or `MM/DD/YYYY`. Rows are matched to devices by serial (as DeviceCare
stores serials: trimmed, upper case) and kept once per device, plan and start date, so a rerun
changes nothing; a changed end date updates the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from storage import models as m
from storage.csv_in import Column, Problem, Record, find_columns, open_csv
from storage.session_of import Db, session_of
from workflows.i18n import _

HEADERS: dict[str, tuple[str, ...]] = {
    "serial": ("serial", "serialnumber", "deviceserialnumber"),
    "plan": ("plan", "coverage", "coveragedescription", "agreementdescription", "description"),
    "start": ("coveragestart", "coveragestartdate", "startdate", "agreementstartdate"),
    "end": (
        "coverageend",
        "coverageenddate",
        "enddate",
        "agreementenddate",
        "expirationdate",
    ),
    "provider": ("provider", "vendor"),
}
REQUIRED = ("serial", "plan", "start", "end")
COLUMN_NAMES = {
    "serial": "serial",
    "plan": "plan",
    "start": "coverage_start",
    "end": "coverage_end",
}
MAX_PLAN = 200
MAX_PROVIDER = 100


@dataclass(frozen=True)
class CoverageRow:
    line: int
    serial: str
    plan: str
    provider: str
    start: date
    end: date


@dataclass
class CoverageImport:
    file: str
    applied: bool
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def parse_day(text: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def default_provider(plan: str) -> str:
    return "Apple" if "applecare" in _key(plan) else plan[:MAX_PROVIDER]


# Each field's column, named in messages as the import's own template names it.
COLUMNS = {
    name: Column(COLUMN_NAMES.get(name, name), aliases, required=name in REQUIRED)
    for name, aliases in HEADERS.items()
}


def read_coverage_rows(path: Path) -> tuple[list[CoverageRow], list[Problem]]:
    """The file's rows with their own fields checked, bad ones as problems with their line.

    Raises `CsvFileError` for a file that isn't UTF-8 CSV or lacks a column it needs.
    """
    problems: list[Problem] = []
    rows: list[CoverageRow] = []
    seen: dict[tuple[str, str, date], int] = {}
    with open_csv(path) as reader:
        found = find_columns(path.name, reader.header, list(COLUMNS.values()), key=_key)
        columns = {f: found[c.name] for f, c in COLUMNS.items() if c.name in found}
        for item in reader:
            if isinstance(item, Problem):
                problems.append(item)
                continue
            row = _coverage_row(item, columns)
            if isinstance(row, str):
                problems.append(Problem(path.name, item.line, row))
                continue
            first = seen.setdefault((row.serial, row.plan.lower(), row.start), row.line)
            if first != row.line:
                problems.append(
                    Problem(path.name, row.line, _("duplicate of line {first}", first=first))
                )
                continue
            rows.append(row)
    return rows, problems


def _coverage_row(record: Record, columns: dict[str, int]) -> CoverageRow | str:
    """The row, or why it is bad."""

    def value(name: str) -> str:
        at = columns.get(name)
        return "" if at is None or at >= len(record.values) else record.values[at].strip()

    serial = m.normalize_serial(value("serial"))
    plan = " ".join(value("plan").split())
    provider = " ".join(value("provider").split()) or default_provider(plan)
    start, end = parse_day(value("start")), parse_day(value("end"))
    if not serial:
        return _("serial is empty")
    if not plan:
        return _("plan is empty")
    if len(plan) > MAX_PLAN or len(provider) > MAX_PROVIDER or len(serial) > 100:
        return _("a value is too long")
    if start is None:
        return _("coverage start {value} is not a date (YYYY-MM-DD)", value=repr(value("start")))
    if end is None:
        return _("coverage end {value} is not a date (YYYY-MM-DD)", value=repr(value("end")))
    if end < start:
        return _("coverage ends before it starts")
    return CoverageRow(record.line, serial, plan, provider, start, end)


async def import_coverage(
    db: Db, path: Path, now: datetime, *, apply: bool = True
) -> CoverageImport:
    """Add or update each good row (in the caller's transaction); unknown serials are problems.

    With apply=False, counts what would change and writes nothing.
    """
    session = session_of(db)
    rows, problems = read_coverage_rows(path)
    result = CoverageImport(path.name, applied=apply, problems=problems)
    serials = {r.serial for r in rows}
    devices: dict[str, int] = {}
    if serials:
        stmt = select(m.Device.serial, m.Device.id).where(m.Device.serial.in_(serials))
        devices = {serial: ident for serial, ident in (await session.execute(stmt)).all()}
    existing: dict[tuple[int, str, date], m.DeviceCoverage] = {}
    if devices:
        stmt2 = select(m.DeviceCoverage).where(m.DeviceCoverage.device_id.in_(devices.values()))
        for held in (await session.execute(stmt2)).scalars():
            existing[(held.device_id, held.plan, held.coverage_start)] = held
    for row in rows:
        device_id = devices.get(row.serial)
        if device_id is None:
            result.problems.append(
                Problem(path.name, row.line, _("unknown serial {serial}", serial=row.serial))
            )
            continue
        found = existing.get((device_id, row.plan, row.start))
        if found is None:
            result.added += 1
            if apply:
                session.add(
                    m.DeviceCoverage(
                        device_id=device_id,
                        provider=row.provider,
                        plan=row.plan,
                        coverage_start=row.start,
                        coverage_end=row.end,
                        source=path.name[:300],
                        imported_at=now,
                    )
                )
        elif (found.coverage_end, found.provider) != (row.end, row.provider):
            result.updated += 1
            if apply:
                found.coverage_end = row.end
                found.provider = row.provider
                found.imported_at = now
        else:
            result.unchanged += 1
    result.problems.sort(key=lambda p: p.line)
    if apply:
        await session.flush()
    return result


async def coverage_for_device(db: Db, device_id: int, on: date) -> list[m.DeviceCoverage]:
    """The device's third-party coverage in force on `on`, ending last first."""
    session = session_of(db)
    stmt = (
        select(m.DeviceCoverage)
        .where(
            m.DeviceCoverage.device_id == device_id,
            m.DeviceCoverage.coverage_start <= on,
            m.DeviceCoverage.coverage_end >= on,
        )
        .order_by(m.DeviceCoverage.coverage_end.desc(), m.DeviceCoverage.id)
    )
    return list((await session.execute(stmt)).scalars())
