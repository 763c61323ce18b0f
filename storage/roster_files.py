"""Reading OneRoster 1.1 CSVs and a Chromebook inventory export into checked rows.

Nothing here touches the database: each reader yields rows whose own fields are valid and
reports the others as problems. Checks that need the store (unknown org, an agent that names
nobody, a device user) happen in `services.roster`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import QueryableAttribute

from storage import models as m
from storage.csv_in import Column, CsvFileError, find_columns, open_csv
from storage.csv_in import Problem as Problem  # the importers' problem type, kept importable here
from workflows.grades import grade_code
from workflows.i18n import _

# (stage, rows done, rows in total): lets a CLI draw a progress bar without this module
# knowing about terminals.
ProgressCallback = Callable[[str, int, int], None]

PROGRESS_EVERY = 1000

STUDENT = "student"
GUARDIAN_ROLES = {"guardian": "guardian", "parent": "parent", "relativeof": "relative"}
# Roles DeviceCare has no table for (OneRoster 1.1 and the 1.2 additions): skipped, not errors.
IGNORED_ROLES = frozenset(
    {
        "teacher",
        "administrator",
        "aide",
        "proctor",
        "districtadministrator",
        "siteadministrator",
        "systemadministrator",
        "principal",
    }
)
ORG_TYPES = frozenset({"district", "school", "department", "local", "state", "national"})
# CEDS grade codes as OneRoster uses them; numeric grades are kept without the leading zero.
RETIRED_STATUSES = frozenset({"DEPROVISIONED"})
# The columns each file can't do without; the others are optional.
ORG_COLUMNS = ("sourcedId", "name", "type")
USER_COLUMNS = ("sourcedId", "role", "givenName", "familyName")
DEVICE_COLUMNS = ("serialNumber",)


@dataclass(slots=True)
class OrgRow:
    line: int
    sis_id: str
    name: str
    type: str


@dataclass(slots=True)
class UserRow:
    line: int
    sis_id: str
    role: str  # "student", or the guardianship kind: "guardian", "parent", "relative"
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    username: str | None
    grade: str | None
    org_ids: list[str]
    agent_ids: list[str]
    deleted: bool

    @property
    def is_student(self) -> bool:
        return self.role == STUDENT


@dataclass(slots=True)
class DeviceRow:
    line: int
    serial: str
    asset_tag: str | None
    model: str | None
    user: str | None
    location: str | None
    status: str | None  # "in_service", "retired", or None when the export says nothing


@dataclass(slots=True)
class UsersFile:
    """The importable users plus every sourcedId the file mentions, good rows or not."""

    rows: list[UserRow] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    skipped_roles: int = 0
    # Rejected rows by what they would have been: "student", "guardian" or "other".
    rejected: dict[str, int] = field(
        default_factory=lambda: {"student": 0, "guardian": 0, "other": 0}
    )

    def reject(self, role: str) -> None:
        bucket = "student" if role == STUDENT else "guardian" if role in GUARDIAN_ROLES else "other"
        self.rejected[bucket] += 1


@dataclass(slots=True)
class RosterRows:
    """Orgs and users read from somewhere other than a folder (a OneRoster API), already
    checked as the CSV readers check theirs. Problems name `orgs_file`/`users_file` and the
    record's position in that listing as their file and line."""

    orgs: list[OrgRow]
    orgs_rejected: int
    users: UsersFile
    problems: list[Problem] = field(default_factory=list)
    orgs_file: str = "orgs"
    users_file: str = "users"


class RosterFileError(CsvFileError):
    """A file the import cannot do without is missing or unreadable."""


def count_lines(path: Path) -> int:
    """Data rows in a file (approximate with quoted newlines); only sizes a progress bar."""
    lines = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


def check_header(path: Path, required: Sequence[str]) -> None:
    """Refuse a file that isn't UTF-8 CSV or lacks a required column, before any row is used."""
    with open_csv(path) as reader:
        find_columns(path.name, reader.header, [Column(name) for name in required])


def read_csv(
    path: Path,
    required: Sequence[str],
    problems: list[Problem],
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) with lower-cased column names and stripped values.

    The file is read by `storage.csv_in`: line numbers are those of the file (the header is
    line 1, a quoted multi-line value keeps the line its record starts on), bad rows (control
    characters, unclosed quotes) go to `problems` in file order, and a file that isn't UTF-8 or
    lacks a required column raises CsvFileError.
    """
    total = count_lines(path) if progress else 0
    done = 0
    with open_csv(path) as reader:
        find_columns(path.name, reader.header, [Column(name) for name in required])
        header = [name.lower() for name in reader.header]
        for item in reader:
            if isinstance(item, Problem):
                problems.append(item)
            else:
                yield item.line, _row(header, item.values)
            done += 1
            if progress and done % PROGRESS_EVERY == 0:
                progress(path.name, done, max(total, done))
    if progress:
        progress(path.name, done, done)


def _row(header: list[str], values: Sequence[str]) -> dict[str, str]:
    return {name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(header)}


def split_list(value: str) -> list[str]:
    """OneRoster packs lists (orgSourcedIds, grades, agentSourcedIds) into one comma field."""
    return [part.strip() for part in value.split(",") if part.strip()]


def limits(**columns: QueryableAttribute[Any]) -> dict[str, int]:
    """CSV column label -> the VARCHAR length of the model column it is stored in."""
    return {label: attr.type.length for label, attr in columns.items()}


def too_long(values: dict[str, str | None], lengths: dict[str, int]) -> str | None:
    """PostgreSQL enforces VARCHAR lengths and SQLite does not: check them the same on both."""
    for label, value in values.items():
        if value and len(value) > lengths[label]:
            return _(
                "{column} is longer than {limit} characters", column=label, limit=lengths[label]
            )
    return None


# Looked up once: reading a column's type through the ORM costs more than the whole check.
ORG_LIMITS = limits(sourcedId=m.Building.sis_id, name=m.Building.name)
PERSON_LIMITS = {
    model: limits(
        sourcedId=model.sis_id,
        givenName=model.first_name,
        familyName=model.last_name,
        email=model.email,
        phone=m.Guardian.phone,
    )
    for model in (m.Student, m.Guardian)
}
DEVICE_LIMITS = limits(
    serialNumber=m.Device.serial, annotatedAssetId=m.Device.asset_tag, model=m.Device.model
)


def normalize_grade(raw: str) -> str | None:
    """The first of `grades` as a stored grade; raises ValueError for anything unknown."""
    grades = split_list(raw)
    if not grades:
        return None
    code = grade_code(grades[0])
    if code is None:
        raise ValueError(grades[0])
    return code


# --- orgs.csv -------------------------------------------------------------------------------


def read_orgs(
    path: Path, problems: list[Problem], progress: ProgressCallback | None = None
) -> tuple[list[OrgRow], int]:
    """Valid org rows (every type) and how many rows were rejected."""
    return orgs_from(read_csv(path, ORG_COLUMNS, problems, progress), path.name, problems)


def orgs_from(
    records: Iterable[tuple[int, dict[str, str]]], file: str, problems: list[Problem]
) -> tuple[list[OrgRow], int]:
    """Org rows from (line, row) pairs shaped as `read_csv` yields them, whatever they were
    read from (orgs.csv, or a OneRoster API's records): the same checks either way."""
    rows: list[OrgRow] = []
    seen: dict[str, int] = {}
    rejected = 0
    for line, raw in records:
        reason = _org_problem(raw, seen)
        if reason:
            problems.append(Problem(file, line, reason))
            rejected += 1
            continue
        seen[raw["sourcedid"]] = line
        rows.append(OrgRow(line, raw["sourcedid"], raw["name"], raw["type"].lower()))
    return rows, rejected


def _org_problem(raw: dict[str, str], seen: dict[str, int]) -> str | None:
    sis_id = raw["sourcedid"]
    if not sis_id:
        return _("missing sourcedId")
    if sis_id in seen:
        return _(
            "duplicate sourcedId {sis_id} (first on line {first})",
            sis_id=sis_id,
            first=seen[sis_id],
        )
    if raw["type"].lower() not in ORG_TYPES:
        return _("unknown org type {value}", value=repr(raw["type"]))
    if not raw["name"]:
        return _("missing name")
    return too_long({"sourcedId": sis_id, "name": raw["name"]}, ORG_LIMITS)


# --- users.csv ------------------------------------------------------------------------------


def read_users(
    path: Path, problems: list[Problem], progress: ProgressCallback | None = None
) -> UsersFile:
    return users_from(read_csv(path, USER_COLUMNS, problems, progress), path.name, problems)


def users_from(
    records: Iterable[tuple[int, dict[str, str]]], file: str, problems: list[Problem]
) -> UsersFile:
    """User rows from (line, row) pairs shaped as `read_csv` yields them (users.csv, or a
    OneRoster API's records): the same checks either way."""
    result = UsersFile()
    first_line: dict[str, int] = {}
    for line, raw in records:
        sis_id, role = raw["sourcedid"], raw["role"].lower()
        if sis_id in first_line:
            first = first_line[sis_id]
            problems.append(
                Problem(
                    file,
                    line,
                    _(
                        "duplicate sourcedId {sis_id} (first on line {first})",
                        sis_id=sis_id,
                        first=first,
                    ),
                )
            )
            result.reject(role)
            continue
        if sis_id:
            first_line[sis_id] = line
            result.seen.add(sis_id)
            if role in IGNORED_ROLES:
                result.skipped_roles += 1
                continue
        try:
            result.rows.append(_user_row(line, raw, role))
        except ValueError as exc:
            problems.append(Problem(file, line, str(exc)))
            result.reject(role)
    return result


def _user_row(line: int, raw: dict[str, str], role: str) -> UserRow:
    """One student or guardian row; ValueError carries the reason it is rejected."""
    if not raw["sourcedid"]:
        raise ValueError(_("missing sourcedId"))
    if role != STUDENT and role not in GUARDIAN_ROLES:
        raise ValueError(
            _("unknown role {value}", value=repr(raw["role"])) if role else _("missing role")
        )
    status = raw.get("status", "").lower()
    if status not in ("", "active", "tobedeleted"):
        raise ValueError(_("unknown status {value}", value=repr(raw["status"])))
    for column in ("givenname", "familyname"):
        if not raw[column]:
            name = "givenName" if column == "givenname" else "familyName"
            raise ValueError(_("missing {column}", column=name))
    grade = None
    if role == STUDENT:
        try:
            grade = normalize_grade(raw.get("grades", ""))
        except ValueError as exc:
            raise ValueError(_("bad grade {value}", value=repr(exc.args[0]))) from None
    phone = raw.get("phone") or raw.get("sms") or None
    reason = too_long(
        {
            "sourcedId": raw["sourcedid"],
            "givenName": raw["givenname"],
            "familyName": raw["familyname"],
            "email": raw.get("email"),
            "phone": phone,
        },
        PERSON_LIMITS[m.Student if role == STUDENT else m.Guardian],
    )
    if reason:
        raise ValueError(reason)
    return UserRow(
        line=line,
        sis_id=raw["sourcedid"],
        role=STUDENT if role == STUDENT else GUARDIAN_ROLES[role],
        first_name=raw["givenname"],
        last_name=raw["familyname"],
        email=raw.get("email") or None,
        phone=phone,
        username=raw.get("username") or None,
        grade=grade,
        org_ids=split_list(raw.get("orgsourcedids", "")),
        agent_ids=split_list(raw.get("agentsourcedids", "")),
        deleted=status == "tobedeleted",
    )


# --- device inventory -----------------------------------------------------------------------


def read_devices(
    path: Path, problems: list[Problem], progress: ProgressCallback | None = None
) -> tuple[list[DeviceRow], int]:
    """Valid device rows and how many were rejected (empty or repeated serial, …)."""
    rows: list[DeviceRow] = []
    serial_lines: dict[str, int] = {}
    tag_lines: dict[str, int] = {}
    rejected = 0
    for line, raw in read_csv(path, DEVICE_COLUMNS, problems, progress):
        reason = _device_problem(raw, serial_lines, tag_lines)
        if reason:
            problems.append(Problem(path.name, line, reason))
            rejected += 1
            continue
        row = _device_row(line, raw)
        serial_lines[row.serial.lower()] = line
        if row.asset_tag:
            tag_lines[row.asset_tag] = line
        rows.append(row)
    return rows, rejected


def _device_problem(
    raw: dict[str, str], serial_lines: dict[str, int], tag_lines: dict[str, int]
) -> str | None:
    serial = raw["serialnumber"]
    if not serial:
        return _("empty serialNumber")
    if serial.lower() in serial_lines:
        return _(
            "duplicate serial {serial} (first on line {first})",
            serial=serial,
            first=serial_lines[serial.lower()],
        )
    tag = raw.get("annotatedassetid", "")
    if tag and tag in tag_lines:
        return _("duplicate asset tag {tag} (first on line {first})", tag=tag, first=tag_lines[tag])
    return too_long(
        {"serialNumber": serial, "annotatedAssetId": tag, "model": raw.get("model")},
        DEVICE_LIMITS,
    )


def _device_row(line: int, raw: dict[str, str]) -> DeviceRow:
    status = raw.get("status", "").upper()
    return DeviceRow(
        line=line,
        serial=m.normalize_serial(raw["serialnumber"]),
        asset_tag=raw.get("annotatedassetid") or None,
        model=raw.get("model") or None,
        user=raw.get("annotateduser") or None,
        location=raw.get("annotatedlocation") or None,
        status=None if not status else "retired" if status in RETIRED_STATUSES else "in_service",
    )


_CB_WORD = re.compile(r"\bcb\b")


def guess_kind(model: str) -> str:
    """The device kind from its model name, e.g. "Lenovo 300e CB" is a Chromebook."""
    name = model.lower()
    if "ipad" in name:
        return "ipad"
    if "chromebook" in name or _CB_WORD.search(name):
        return "chromebook"
    return "laptop"
