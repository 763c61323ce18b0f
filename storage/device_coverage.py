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
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.roster_files import Problem, read_csv

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


def read_coverage_rows(path: Path) -> tuple[list[CoverageRow], list[Problem]]:
    """The file's rows with their own fields checked, bad ones as problems with their line.

    Raises `RosterFileError` for a file that isn't UTF-8 CSV.
    """
    problems: list[Problem] = []
    rows: list[CoverageRow] = []
    columns: dict[str, str] | None = None
    seen: dict[tuple[str, str, date], int] = {}
    for line, raw in read_csv(path, (), problems):
        if columns is None:
            by_key = {_key(name): name for name in raw}
            columns = {}
            for field_name, names in HEADERS.items():
                found = next((by_key[n] for n in names if n in by_key), None)
                if found is not None:
                    columns[field_name] = found
            missing = [f for f in REQUIRED if f not in columns]
            if missing:
                problems.append(
                    Problem(
                        path.name,
                        1,
                        "missing column " + ", ".join(COLUMN_NAMES[f] for f in missing),
                    )
                )
                return [], problems

        def value(name: str, raw: dict[str, str] = raw, columns: dict[str, str] = columns) -> str:
            column = columns.get(name)
            return "" if column is None else raw.get(column, "").strip()

        serial = m.normalize_serial(value("serial"))
        plan = " ".join(value("plan").split())
        provider = " ".join(value("provider").split()) or default_provider(plan)
        start, end = parse_day(value("start")), parse_day(value("end"))
        reason = None
        if not serial:
            reason = "serial is empty"
        elif not plan:
            reason = "plan is empty"
        elif len(plan) > MAX_PLAN or len(provider) > MAX_PROVIDER or len(serial) > 100:
            reason = "a value is too long"
        elif start is None:
            reason = f"coverage start {value('start')!r} is not a date (YYYY-MM-DD)"
        elif end is None:
            reason = f"coverage end {value('end')!r} is not a date (YYYY-MM-DD)"
        elif end < start:
            reason = "coverage ends before it starts"
        if reason is not None:
            problems.append(Problem(path.name, line, reason))
            continue
        assert start is not None and end is not None
        first = seen.setdefault((serial, plan.lower(), start), line)
        if first != line:
            problems.append(Problem(path.name, line, f"duplicate of line {first}"))
            continue
        rows.append(CoverageRow(line, serial, plan, provider, start, end))
    return rows, problems


async def import_coverage(
    session: AsyncSession, path: Path, now: datetime, *, apply: bool = True
) -> CoverageImport:
    """Add or update each good row (in the caller's transaction); unknown serials are problems.

    With apply=False, counts what would change and writes nothing.
    """
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
            result.problems.append(Problem(path.name, row.line, f"unknown serial {row.serial}"))
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


async def coverage_for_device(
    session: AsyncSession, device_id: int, on: date
) -> list[m.DeviceCoverage]:
    """The device's third-party coverage in force on `on`, ending last first."""
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
