"""Roster import benchmark: a synthetic district as OneRoster CSVs, imported twice.

    .venv/bin/python bench/import_roster.py [--students N] [--database-url URL]

Without --database-url it imports into a fresh SQLite file in a temporary folder. A URL must
name an empty database (it is migrated first); the script never drops anything.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from services.roster import ImportResult, import_roster
from storage import models as m
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from workflows.clock import SystemClock

USER_HEADER = [
    "sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
    "username", "userIds", "givenName", "familyName", "middleName", "identifier", "email",
    "sms", "phone", "agentSourcedIds", "grades", "password",
]  # fmt: skip
DEVICE_HEADER = [
    "deviceId", "serialNumber", "status", "lastSync", "annotatedUser", "annotatedLocation",
    "annotatedAssetId", "model", "orgUnitPath",
]  # fmt: skip
GIVEN = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jon", "Kai"]
FAMILY = ["Rivera", "Chen", "Patel", "Okafor", "Novak", "Silva", "Kim", "Haddad", "Berg", "Ito"]
MODELS = ["HP Chromebook 11 G9 EE", "Lenovo 300e CB Gen 3", "Apple iPad (9th generation)",
          "Dell Latitude 3120"]  # fmt: skip
STUDENTS_PER_SCHOOL = 500
STAMP = "2025-08-01T00:00:00Z"


@dataclass
class District:
    schools: list[tuple[str, str]] = field(default_factory=list)  # (sourcedId, name)
    students: int = 0
    guardians: int = 0
    devices: int = 0


# --- generation -----------------------------------------------------------------------------


def generate(folder: Path, students: int, seed: int = 7) -> District:
    """orgs.csv, users.csv and devices.csv: families of 1-3 children and 1-3 guardians."""
    rng = random.Random(seed)
    district = District()
    count = max(1, students // STUDENTS_PER_SCHOOL)
    district.schools = [(f"org-{i:03}", f"School {i:03}") for i in range(count)]
    write_orgs(folder / "orgs.csv", district.schools)
    with (
        (folder / "users.csv").open("w", newline="") as users,
        (folder / "devices.csv").open("w", newline="") as devices,
    ):
        user_rows, device_rows = csv.writer(users), csv.writer(devices)
        user_rows.writerow(USER_HEADER)
        device_rows.writerow(DEVICE_HEADER)
        for family in families(rng, students):
            write_family(rng, district, family, user_rows, device_rows)
        for i in range(students // 20):  # teachers: read and skipped
            user_rows.writerow([f"tch-{i}", "active", STAMP, "true", district.schools[0][0],
                                "teacher", f"t{i}", "", "Tam", "Teacher"] + [""] * 8)  # fmt: skip
    return district


def write_orgs(path: Path, schools: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["sourcedId", "status", "dateLastModified", "name", "type", "identifier",
                       "parentSourcedId"])  # fmt: skip
        rows.writerow(["org-district", "active", STAMP, "Bench District", "district", "BD", ""])
        for sis_id, name in schools:
            rows.writerow([sis_id, "active", STAMP, name, "school", sis_id, "org-district"])


def families(rng: random.Random, students: int) -> Iterator[tuple[int, int, int]]:
    """(family number, children, guardians): on average 1.33 children and 2 guardians."""
    number = made = 0
    while made < students:
        children = min(rng.choices([1, 2, 3], weights=[75, 17, 8])[0], students - made)
        yield number, children, rng.choices([1, 2, 3], weights=[15, 70, 15])[0]
        number += 1
        made += children


def write_family(
    rng: random.Random,
    district: District,
    family: tuple[int, int, int],
    users: csv._writer,  # type: ignore[name-defined]
    devices: csv._writer,  # type: ignore[name-defined]
) -> None:
    number, children, adults = family
    surname = f"{rng.choice(FAMILY)}{number}"
    kids = [f"stu-{district.students + i}" for i in range(children)]
    parents = [f"par-{district.guardians + i}" for i in range(adults)]
    # Exports differ in which side names the link; cover both, and both at once.
    side = number % 3
    for kid in kids:
        school_id, school_name = rng.choice(district.schools)
        username = f"{kid}.{surname}".lower()
        email = f"{username}@students.example.org"
        agents = ",".join(parents) if side != 1 else ""
        grade = rng.choice(["KG", *(f"{g:02}" for g in range(1, 13))])
        users.writerow([kid, "active", STAMP, "true", f"org-district,{school_id}", "student",
                        username, "", rng.choice(GIVEN), surname, "", kid, email, "", "",
                        agents, grade, ""])  # fmt: skip
        write_device(rng, district, kid, username, email, school_id, school_name, devices)
    for parent in parents:
        agents = ",".join(kids) if side != 0 else ""
        role = rng.choice(["parent", "parent", "guardian", "relativeOf"])
        users.writerow([parent, "active", STAMP, "true", "org-district", role, "", "",
                        rng.choice(GIVEN), surname, "", "", f"{parent}@example.org", "",
                        f"555-{rng.randrange(10_000):04}", agents, "", ""])  # fmt: skip
    district.students += children
    district.guardians += adults


def write_device(
    rng: random.Random,
    district: District,
    kid: str,
    username: str,
    email: str,
    school_id: str,
    school_name: str,
    devices: csv._writer,  # type: ignore[name-defined]
) -> None:
    n = district.devices
    retired = rng.random() < 0.02
    user = "" if retired else [email, username, kid][n % 3]
    location = [school_name, school_id][n % 2]
    devices.writerow([f"d-{n}", f"SN{n:07}", "DEPROVISIONED" if retired else "ACTIVE", STAMP,
                      user, location, f"TAG-{n:07}", rng.choice(MODELS), "/Students"])  # fmt: skip
    district.devices += 1


# --- import ---------------------------------------------------------------------------------


async def timed_import(url: str, folder: Path) -> tuple[float, ImportResult]:
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        result = await import_roster(
            session_factory(engine), folder, folder / "devices.csv", clock=SystemClock()
        )
        return time.perf_counter() - started, result
    finally:
        await engine.dispose()


async def row_counts(url: str) -> dict[str, int]:
    tables = [m.Building, m.Household, m.Student, m.Guardian, m.Guardianship, m.Device,
              m.DeviceAssignment]  # fmt: skip
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return {
                t.__tablename__: (
                    await session.execute(select(func.count()).select_from(t))
                ).scalar_one()
                for t in tables
            }
    finally:
        await engine.dispose()


def report(label: str, seconds: float, result: ImportResult) -> None:
    print(f"{label}: {seconds:.2f} s")
    for name, c in result.counts().items():
        print(f"  {name:<14} created {c.created:>6}  updated {c.updated:>6}  "
              f"unchanged {c.unchanged:>6}  skipped {c.skipped:>5}")  # fmt: skip
    if result.problems:
        print(f"  problems: {len(result.problems)} (first: {result.problems[0]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty database; default: a new SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roster-bench-") as tmp:
        folder = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        started = time.perf_counter()
        district = generate(folder, args.students)
        print(f"generate: {time.perf_counter() - started:.2f} s — {len(district.schools)} "
              f"schools, {district.students} students, {district.guardians} guardians, "
              f"{district.devices} devices")  # fmt: skip
        upgrade(url)
        seconds, first = asyncio.run(timed_import(url, folder))
        report("first import", seconds, first)
        seconds, rerun = asyncio.run(timed_import(url, folder))
        report("rerun (same files)", seconds, rerun)
        counts = asyncio.run(row_counts(url))
    print("rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    idle = all(c.created == 0 and c.updated == 0 for c in rerun.counts().values())
    if not idle:
        print("rerun was not idempotent!", file=sys.stderr)
    return 0 if idle and not first.problems else 1


if __name__ == "__main__":
    sys.exit(main())
