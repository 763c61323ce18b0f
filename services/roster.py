"""Roster import: a district's buildings, students, guardians and devices from its SIS exports.

Input is a folder of OneRoster 1.1 CSVs (`orgs.csv`, `users.csv`; other files are ignored) and,
optionally, a Chromebook inventory CSV as Google Admin exports it. Rows are matched by sis_id
(buildings, students, guardians) and serial (devices) and upserted set-wise: every table's
existing keys are read in one query, new rows go in with one bulk INSERT and only rows whose
values differ get a bulk UPDATE, so a rerun with the same files writes nothing.

Rules for bad rows: a row whose own fields are wrong or unresolvable (missing sourcedId, unknown
role or org, bad grade, empty or repeated serial, unknown location, …) is skipped and reported;
a bad link (an agentSourcedId that names nobody, a device user that names no student) drops only
that link and the rest of the row imports. With `strict=True` any problem rolls the whole
import back. Nothing is ever deleted: `tobedeleted` students become inactive.

`import_rows` runs the same orgs and users steps on rows read elsewhere (the OneRoster API sync,
`services.roster_sync`), in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.csv_in import CsvFileError
from storage.db import DbSession, Sessions
from storage.roster_files import (
    DEVICE_COLUMNS,
    ORG_COLUMNS,
    USER_COLUMNS,
    DeviceRow,
    OrgRow,
    Problem,
    ProgressCallback,
    RosterFileError,
    RosterRows,
    UserRow,
    UsersFile,
    check_header,
    guess_kind,
    read_devices,
    read_orgs,
    read_users,
)
from storage.roster_queries import (
    BUILDINGS,
    DEVICES,
    GUARDIANS,
    STUDENTS,
    ChangeNote,
    Counts,
    Existing,
    RosterTable,
    buildings,
    guardianships,
    insert_households,
    load_existing,
    open_assignments,
    upsert,
    write_assignments,
    write_guardianships,
)
from workflows.clock import Clock, SystemClock
from workflows.i18n import _

__all__ = [
    "ASSIGNMENT_REASON",
    "Counts",
    "CsvFileError",
    "ImportResult",
    "check_files",
    "Problem",
    "ProgressCallback",
    "RosterFileError",
    "import_roster",
    "import_rows",
    "roster_files",
]

ASSIGNMENT_REASON = "roster import"
# Statuses the inventory export owns; "replaced" and "lost" are set inside DeviceCare and a
# Google "ACTIVE" must not undo them.
IMPORT_STATUSES = frozenset({"in_service", "retired"})
SAVE_STEPS = 7
# (entity, key, fields that differ), for a run that shows what it changes (a sync's plan).
RowNote = Callable[[str, str, tuple[str, ...]], None]
ENTITIES = (
    "buildings",
    "students",
    "guardians",
    "other_users",
    "households",
    "guardianships",
    "devices",
    "assignments",
)


@dataclass
class ImportResult:
    buildings: Counts = field(default_factory=Counts)
    students: Counts = field(default_factory=Counts)
    guardians: Counts = field(default_factory=Counts)
    other_users: Counts = field(default_factory=Counts)
    households: Counts = field(default_factory=Counts)
    guardianships: Counts = field(default_factory=Counts)
    devices: Counts = field(default_factory=Counts)
    # `updated` here means an open assignment was closed because the device changed hands.
    assignments: Counts = field(default_factory=Counts)
    problems: list[Problem] = field(default_factory=list)
    strict: bool = False
    written: bool = False

    def counts(self) -> dict[str, Counts]:
        """Per-entity counts in display order, e.g. {"buildings": Counts(...), ...}."""
        return {name.replace("_", " "): getattr(self, name) for name in ENTITIES}

    @property
    def ok(self) -> bool:
        return not self.problems


async def import_roster(
    sessions: Sessions,
    folder: Path,
    devices: Path | None = None,
    *,
    strict: bool = False,
    clock: Clock | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import `folder`'s orgs.csv and users.csv, then the `devices` inventory, in one transaction.

    Raises RosterFileError when a required file is missing and CsvFileError when one isn't
    UTF-8 CSV or lacks a column it needs (checked before anything is written); every
    row-level issue is returned in `ImportResult.problems` instead.
    """
    orgs_path, users_path = check_files(folder, devices)
    now = (clock or SystemClock()).now()
    if now.tzinfo is None:
        raise ValueError("the import clock must return timezone-aware times")
    result = ImportResult(strict=strict)
    async with sessions() as session:
        run = _Import(session, now, result, progress)
        await run.buildings(orgs_path)
        await run.people(users_path)
        if devices is not None:
            await run.devices(devices)
        if strict and result.problems:
            await session.rollback()
        else:
            await session.commit()
            result.written = True
    order = {name: i for i, name in enumerate([orgs_path.name, users_path.name])}
    result.problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
    return result


async def import_rows(
    session: DbSession, rows: RosterRows, now: datetime, *, note: RowNote | None = None
) -> ImportResult:
    """Import orgs and users already read and checked (a OneRoster API's records) with the same
    steps as the CSV import, in the caller's session and transaction: nothing is committed or
    rolled back here. Row problems, the reader's and the store's, come back in the result.
    `note` hears of each building, student and guardian created or updated."""
    if now.tzinfo is None:
        raise ValueError("the import clock must return timezone-aware times")
    result = ImportResult(problems=list(rows.problems))
    run = _Import(session, now, result, None, note)
    await run.save_buildings(rows.orgs, rows.orgs_rejected)
    await run.save_people(rows.users, rows.users_file)
    order = {rows.orgs_file: 0, rows.users_file: 1}
    result.problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
    return result


def check_files(folder: Path, devices: Path | None = None) -> tuple[Path, Path]:
    """The folder's orgs.csv and users.csv, each file there, UTF-8 CSV and with the columns it
    needs: RosterFileError or CsvFileError before anything is written otherwise."""
    orgs_path, users_path = roster_files(folder)
    if devices is not None and not devices.is_file():
        raise RosterFileError(_("device inventory {path} not found", path=devices))
    check_header(orgs_path, ORG_COLUMNS)
    check_header(users_path, USER_COLUMNS)
    if devices is not None:
        check_header(devices, DEVICE_COLUMNS)
    return orgs_path, users_path


def roster_files(folder: Path) -> tuple[Path, Path]:
    """The folder's orgs.csv and users.csv; RosterFileError when either is missing."""
    if not folder.is_dir():
        raise RosterFileError(_("roster folder {folder} not found", folder=folder))
    paths = (folder / "orgs.csv", folder / "users.csv")
    for path in paths:
        if not path.is_file():
            raise RosterFileError(
                _("{file} is missing from {folder}", file=path.name, folder=folder)
            )
    return paths


# --- the import -----------------------------------------------------------------------------


class _Import:
    """One import run: the session, the clock reading and what earlier steps resolved."""

    def __init__(
        self,
        session: DbSession,
        now: datetime,
        result: ImportResult,
        progress: ProgressCallback | None,
        note: RowNote | None = None,
    ) -> None:
        self.session = session
        self.now = now
        self.result = result
        self.progress = progress
        self.note = note
        self.org_ids: set[str] = set()
        self.building_ids: dict[str, int] = {}
        self.building_names: dict[str, int | None] = {}  # lower-cased name; None if ambiguous
        self.student_lookup: dict[str, int] = {}  # sis_id, email or username (lower) -> id
        self._saved = 0

    def problem(self, file: str, line: int, reason: str) -> None:
        self.result.problems.append(Problem(file, line, reason))

    def changes(self, entity: str) -> ChangeNote | None:
        """What `upsert` calls for each row it writes, when this run reports its rows."""
        note = self.note
        if note is None:
            return None
        return lambda key, fields: note(entity, key, fields)

    def saved(self) -> None:
        self._saved += 1
        if self.progress:
            self.progress("saving", self._saved, SAVE_STEPS)

    # --- orgs ---------------------------------------------------------------------------------

    async def buildings(self, path: Path) -> None:
        orgs, rejected = read_orgs(path, self.result.problems, self.progress)
        await self.save_buildings(orgs, rejected)

    async def save_buildings(self, orgs: list[OrgRow], rejected: int) -> None:
        counts = self.result.buildings
        schools = [org for org in orgs if org.type == "school"]
        counts.skipped = rejected + len(orgs) - len(schools)  # districts etc. are not buildings
        self.org_ids = {org.sis_id for org in orgs}
        desired = {o.sis_id: {"sis_id": o.sis_id, "name": o.name} for o in schools}
        existing = await load_existing(self.session, BUILDINGS)
        await upsert(
            self.session, BUILDINGS, existing, desired, counts, changed=self.changes("building")
        )
        await self._index_buildings()
        self.saved()

    async def _index_buildings(self) -> None:
        """Every building by sis_id and by name, for students' orgs and devices' locations."""
        for ident, sis_id, name in await buildings(self.session):
            if sis_id is not None:
                self.building_ids[sis_id] = ident
            key = name.lower()
            self.building_names[key] = ident if key not in self.building_names else None

    # --- users --------------------------------------------------------------------------------

    async def people(self, path: Path) -> None:
        users = read_users(path, self.result.problems, self.progress)
        await self.save_people(users, path.name)

    async def save_people(self, users: UsersFile, file: str) -> None:
        r = self.result
        r.other_users.skipped = users.skipped_roles + users.rejected["other"]
        r.students.skipped = users.rejected["student"]
        r.guardians.skipped = users.rejected["guardian"]
        students_db = await load_existing(self.session, STUDENTS)
        guardians_db = await load_existing(self.session, GUARDIANS)
        students, guardians = self._accept(users.rows, students_db, guardians_db, file)
        links = self._links(students, guardians, users.seen, students_db, guardians_db, file)

        house_plan = _plan_households(students, guardians, links, students_db, guardians_db)
        house_ids = await self._insert_households(house_plan.new_names)
        self.saved()

        student_ids = await self._save_students(students, students_db, house_plan, house_ids)
        guardian_ids = await self._save_guardians(guardians, guardians_db, house_plan, house_ids)
        await self._save_guardianships(links, student_ids, guardian_ids)
        self._index_students(students, students_db, student_ids)

    def _accept(
        self, rows: list[UserRow], students_db: Existing, guardians_db: Existing, file: str
    ) -> tuple[dict[str, UserRow], dict[str, UserRow]]:
        """Split rows into students and guardians to write; report students' unknown orgs."""
        students: dict[str, UserRow] = {}
        guardians: dict[str, UserRow] = {}
        known_orgs = self.org_ids.union(self.building_ids)
        for row in rows:
            target, existing = (
                (students, students_db) if row.is_student else (guardians, guardians_db)
            )
            counts = self.result.students if row.is_student else self.result.guardians
            unknown = [o for o in row.org_ids if o not in known_orgs] if row.is_student else []
            if unknown:
                self.problem(
                    file, row.line, _("unknown org {orgs}", orgs=", ".join(map(repr, unknown)))
                )
                counts.skipped += 1
            elif row.deleted and (not row.is_student or row.sis_id not in existing):
                # Guardians have no "inactive" state and a student never seen needs no row:
                # nothing to write, and nothing is deleted.
                counts.skipped += 1
            else:
                target[row.sis_id] = row
        return students, guardians

    def _links(
        self,
        students: dict[str, UserRow],
        guardians: dict[str, UserRow],
        seen: set[str],
        students_db: Existing,
        guardians_db: Existing,
        file: str,
    ) -> dict[tuple[str, str], str | None]:
        """(guardian sis_id, student sis_id) -> relationship kind (None: keep what is stored).

        Links come from either side's agentSourcedIds. An agent that is some other row of the
        file (a teacher, a rejected row) is dropped quietly: that row's own report says why.
        """
        links: dict[tuple[str, str], str | None] = {}
        for student in students.values():
            for agent in student.agent_ids:
                if agent in guardians:
                    links.setdefault((agent, student.sis_id), guardians[agent].role)
                elif agent in guardians_db and agent not in seen:
                    links.setdefault((agent, student.sis_id), None)
                elif agent not in seen and agent not in students_db:
                    self.problem(
                        file,
                        student.line,
                        _("agentSourcedId {agent} names nobody", agent=repr(agent)),
                    )
        for guardian in guardians.values():
            for agent in guardian.agent_ids:
                if agent in students or (agent in students_db and agent not in seen):
                    links[(guardian.sis_id, agent)] = guardian.role
                elif agent not in seen and agent not in guardians_db:
                    self.problem(
                        file,
                        guardian.line,
                        _("agentSourcedId {agent} names nobody", agent=repr(agent)),
                    )
        return links

    async def _insert_households(self, names: list[str]) -> list[int]:
        """Create the planned households; returns their ids in the order of `names`."""
        self.result.households.created = len(names)
        if not names:
            return []
        free: dict[str, list[int]] = {}
        for ident, name in await insert_households(self.session, names):
            free.setdefault(name, []).append(ident)
        # New households with the same name are interchangeable, so any pairing is right.
        return [free[name].pop() for name in names]

    async def _save_students(
        self,
        students: dict[str, UserRow],
        existing: Existing,
        plan: _HouseholdPlan,
        house_ids: list[int],
    ) -> dict[str, int]:
        desired: dict[str, dict[str, Any]] = {}
        for sis_id, row in students.items():
            values: dict[str, Any] = {
                "sis_id": sis_id,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "grade": row.grade,
                "email": row.email,
                "building_id": next(
                    (self.building_ids[o] for o in row.org_ids if o in self.building_ids), None
                ),
                "active": not row.deleted,
            }
            desired[sis_id] = values
        return await self._save_people(
            STUDENTS, "student", desired, existing, plan.students, house_ids, self.result.students
        )

    async def _save_guardians(
        self,
        guardians: dict[str, UserRow],
        existing: Existing,
        plan: _HouseholdPlan,
        house_ids: list[int],
    ) -> dict[str, int]:
        desired: dict[str, dict[str, Any]] = {}
        for sis_id, row in guardians.items():
            values: dict[str, Any] = {
                "sis_id": sis_id,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "email": row.email,
                "phone": row.phone,
            }
            desired[sis_id] = values
        return await self._save_people(
            GUARDIANS,
            "guardian",
            desired,
            existing,
            plan.guardians,
            house_ids,
            self.result.guardians,
        )

    async def _save_people(
        self,
        table: RosterTable,
        entity: str,
        desired: dict[str, dict[str, Any]],
        existing: Existing,
        households: dict[str, int],
        house_ids: list[int],
        counts: Counts,
    ) -> dict[str, int]:
        """Write students or guardians, each in its planned household (none when it has no
        plan); returns every one's id by sis_id."""
        for sis_id, values in desired.items():
            if sis_id in households:
                values["household_id"] = _household_id(households[sis_id], house_ids)
        ids = await upsert(
            self.session,
            table,
            existing,
            desired,
            counts,
            defaults={"household_id": None},
            changed=self.changes(entity),
        )
        self.saved()
        return {**{k: v["id"] for k, v in existing.items()}, **ids}

    async def _save_guardianships(
        self,
        links: dict[tuple[str, str], str | None],
        student_ids: dict[str, int],
        guardian_ids: dict[str, int],
    ) -> None:
        stored = await guardianships(self.session)
        counts = self.result.guardianships
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for (guardian, student), kind in links.items():
            pair = (guardian_ids[guardian], student_ids[student])
            values = {"guardian_id": pair[0], "student_id": pair[1]}
            if pair not in stored:
                inserts.append({**values, "relationship_kind": kind or "guardian"})
            elif kind is not None and stored[pair] != kind:
                updates.append({**values, "relationship_kind": kind})
            else:
                counts.unchanged += 1
        await write_guardianships(self.session, updates, inserts)
        counts.created, counts.updated = len(inserts), len(updates)
        self.saved()

    def _index_students(
        self, students: dict[str, UserRow], existing: Existing, ids: dict[str, int]
    ) -> None:
        """Ways a device export names its user: sis_id, then email, then username."""
        lookup: dict[str, int] = {}
        for sis_id, row in students.items():
            if row.username:
                lookup[row.username.lower()] = ids[sis_id]
        for values in existing.values():
            if values["email"]:
                lookup[values["email"].lower()] = values["id"]
        for sis_id, row in students.items():
            if row.email:
                lookup[row.email.lower()] = ids[sis_id]
        lookup.update((sis_id.lower(), ident) for sis_id, ident in ids.items())
        self.student_lookup = lookup

    # --- devices ------------------------------------------------------------------------------

    async def devices(self, path: Path) -> None:
        rows, rejected = read_devices(path, self.result.problems, self.progress)
        counts = self.result.devices
        counts.skipped = rejected
        existing = await load_existing(self.session, DEVICES)
        tag_owner = {v["asset_tag"]: k for k, v in existing.items() if v["asset_tag"]}
        desired: dict[str, dict[str, Any]] = {}
        holders: dict[str, int] = {}
        for row in rows:
            values = self._device_values(row, existing.get(row.serial.lower()), tag_owner, path)
            if values is None:
                counts.skipped += 1
                continue
            desired[row.serial.lower()] = values
            student_id = self._device_user(row, path.name)
            if student_id is not None:
                holders[row.serial.lower()] = student_id
        defaults = {
            "asset_tag": None,
            "model": "",
            "kind": "chromebook",
            "building_id": None,
            "status": "in_service",
            "created_at": self.now,
        }
        ids = await upsert(self.session, DEVICES, existing, desired, counts, defaults)
        self.saved()
        await self._save_assignments((ids[k], s) for k, s in holders.items())

    def _device_values(
        self,
        row: DeviceRow,
        current: dict[str, Any] | None,
        tag_owner: dict[str, str],
        path: Path,
    ) -> dict[str, Any] | None:
        """The columns this row sets (blank cells keep what is stored), or None if rejected."""
        # Checked against the store as it is, so moving a tag between two devices takes two
        # imports; the unique index would refuse the swap half-way otherwise.
        owner = tag_owner.get(row.asset_tag or "")
        if owner is not None and owner != row.serial.lower():
            self.problem(
                path.name,
                row.line,
                _(
                    "asset tag {tag} belongs to device {serial}",
                    tag=row.asset_tag,
                    serial=owner.upper(),
                ),
            )
            return None
        values: dict[str, Any] = {"serial": row.serial}
        if row.location:
            building_id = self._location(row.location)
            if building_id is None:
                self.problem(
                    path.name,
                    row.line,
                    _(
                        "annotatedLocation {location} names no single building",
                        location=repr(row.location),
                    ),
                )
                return None
            values["building_id"] = building_id
        if row.asset_tag:
            values["asset_tag"] = row.asset_tag
        if row.model:
            values["model"] = row.model
            values["kind"] = guess_kind(row.model)
        if row.status and (current is None or current["status"] in IMPORT_STATUSES):
            values["status"] = row.status
        return values

    def _location(self, location: str) -> int | None:
        if location in self.building_ids:
            return self.building_ids[location]
        return self.building_names.get(location.lower())

    def _device_user(self, row: DeviceRow, file: str) -> int | None:
        if row.user is None:
            return None  # a blank annotatedUser leaves the assignments alone
        student_id = self.student_lookup.get(row.user.lower())
        if student_id is None:
            self.problem(
                file, row.line, _("annotatedUser {user} names no student", user=repr(row.user))
            )
        return student_id

    async def _save_assignments(self, holders: Iterable[tuple[int, int]]) -> None:
        """Open an assignment where the export names a new holder, closing the previous one."""
        current = await open_assignments(self.session)
        closes: list[dict[str, Any]] = []
        opens: list[dict[str, Any]] = []
        counts = self.result.assignments
        for device_id, student_id in holders:
            held = current.get(device_id)
            if held is not None and held[1] == student_id:
                counts.unchanged += 1
                continue
            if held is not None:
                closes.append({"id": held[0], "returned_at": self.now, "reason": ASSIGNMENT_REASON})
            opens.append(
                {
                    "device_id": device_id,
                    "student_id": student_id,
                    "assigned_at": self.now,
                    "returned_at": None,
                    "reason": ASSIGNMENT_REASON,
                }
            )
        await write_assignments(self.session, closes, opens)
        counts.created, counts.updated = len(opens), len(closes)
        self.saved()


# --- households -----------------------------------------------------------------------------


@dataclass
class _HouseholdPlan:
    """Target household per person: an existing id, or -n for the n-th of `new_names`."""

    students: dict[str, int] = field(default_factory=dict)
    guardians: dict[str, int] = field(default_factory=dict)
    new_names: list[str] = field(default_factory=list)


def _household_id(target: int, new_ids: list[int]) -> int:
    return new_ids[-target - 1] if target < 0 else target


def _plan_households(
    students: dict[str, UserRow],
    guardians: dict[str, UserRow],
    links: Iterable[tuple[str, str]],
    students_db: Existing,
    guardians_db: Existing,
) -> _HouseholdPlan:
    """A student and its guardians share a household.

    The first guardian's household wins, then the student's own, else a new "<name> family";
    guardians without one join it. Students are taken in file order and guardians' choices
    carry over, so siblings sharing a guardian share the household. People only named by a
    link (not rows of this file) are read but never moved.
    """
    plan = _HouseholdPlan()
    by_student: dict[str, list[str]] = {}
    for guardian, student in links:
        by_student.setdefault(student, []).append(guardian)
    guardian_house = {k: v["household_id"] for k, v in guardians_db.items()}
    for sis_id, row in students.items():
        linked = by_student.get(sis_id)
        if not linked:
            continue
        own = students_db[sis_id]["household_id"] if sis_id in students_db else None
        house = next((guardian_house[g] for g in linked if guardian_house.get(g)), None) or own
        if house is None:
            plan.new_names.append(f"{row.last_name} family")
            house = -len(plan.new_names)
        plan.students[sis_id] = house
        for guardian in linked:
            if guardian in guardians and guardian_house.get(guardian) is None:
                guardian_house[guardian] = house
                plan.guardians[guardian] = house
    return plan
