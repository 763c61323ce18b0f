"""A roster read from a OneRoster API, compared with the store and applied: the roster import's
own steps (`services.roster.import_rows`), so the API and the CSV files keep the same rows the
same way.

Beyond what a CSV import does, a complete listing (every user, not only the changed ones) also
takes its leave of students it no longer lists: they become inactive, never deleted, as a
`tobedeleted` student does. Those deactivations are the plan's removals, out of the students
active before the run, for the runner's guard against a broken source. Erased students (their
names and ids are stand-ins now) are left out of both.

`plan_roster_sync` runs the steps inside a SAVEPOINT and rolls it back, so it writes nothing;
`apply_roster_sync` runs them in the caller's transaction, which the caller commits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from services.roster import ImportResult, import_rows
from storage.db import DbSession
from storage.roster_files import Problem, RosterRows
from storage.roster_queries import active_students, deactivate_students
from storage.session_of import Db, session_of
from workflows.i18n import N_, _
from workflows.sync import SAMPLE_ROWS, SourceName, SyncPlan

SOURCE: SourceName = "oneroster"
# Of the plan's first rows, at most this many deactivations and problems come before the other
# changes; what is left of the sample is filled with the rest.
FIRST_REMOVALS = 4
FIRST_PROBLEMS = 3
# How the sample names what changed, translated where it is written (the rest: the column's
# name without underscores).
FIELD_LABELS = {
    "building_id": N_("building"),
    "household_id": N_("household"),
    "active": N_("status"),
    "name": N_("name"),
    "first_name": N_("first name"),
    "last_name": N_("last name"),
    "grade": N_("grade"),
    "email": N_("email"),
    "phone": N_("phone"),
}
ENTITY_LABELS = {"building": N_("building"), "student": N_("student"), "guardian": N_("guardian")}

Describe = Callable[[Problem], str]


class RosterListing(Protocol):
    """One read of the roster (bot.sync.oneroster.RosterSnapshot): its rows, whether the listing
    was whole (a student missing from it has left), and how to name a problem's record."""

    @property
    def rows(self) -> RosterRows: ...
    @property
    def complete(self) -> bool: ...
    def where(self, problem: Problem) -> str: ...


async def plan_roster_sync(db: Db, listing: RosterListing, now: datetime) -> SyncPlan:
    """What applying the listing would change, worked out by applying it in a savepoint that is
    rolled back: nothing is written."""
    session = session_of(db)
    savepoint = await session.begin_nested()
    try:
        return await _sync(session, listing, now)
    finally:
        await savepoint.rollback()


async def apply_roster_sync(db: Db, listing: RosterListing, now: datetime) -> SyncPlan:
    """Apply the listing in the caller's transaction (not committed here); returns what
    changed."""
    return await _sync(session_of(db), listing, now)


class _Sample:
    """The first rows of each kind, for the plan's sample."""

    def __init__(self, active_before: dict[str, int]) -> None:
        self.active_before = active_before
        self.removals: list[str] = []
        self.changes: list[str] = []
        self.status_deactivations = 0

    def note(self, entity: str, key: str, fields: tuple[str, ...]) -> None:
        if entity == "student" and "active" in fields and key in self.active_before:
            self.status_deactivations += 1
            self._add(
                self.removals,
                _("student {key}: inactive (the source marks it tobedeleted)", key=key),
            )
            fields = tuple(f for f in fields if f != "active")
            if not fields:
                return
        name = _(ENTITY_LABELS[entity]) if entity in ENTITY_LABELS else entity
        if not fields:
            self._add(self.changes, _("{entity} {key}: new", entity=name, key=key))
        else:
            labels = ", ".join(
                _(FIELD_LABELS[f]) if f in FIELD_LABELS else f.replace("_", " ") for f in fields
            )
            self._add(
                self.changes,
                _("{entity} {key}: {fields} changed", entity=name, key=key, fields=labels),
            )

    def gone(self, sis_id: str) -> None:
        self._add(self.removals, _("student {key}: inactive (no longer listed)", key=sis_id))

    @staticmethod
    def _add(lines: list[str], line: str) -> None:
        if len(lines) < SAMPLE_ROWS:
            lines.append(line)


async def _sync(session: DbSession, listing: RosterListing, now: datetime) -> SyncPlan:
    rows = listing.rows
    before = await active_students(session)
    sample = _Sample(before)
    result = await import_rows(session, rows, now, note=sample.note)
    gone: list[int] = []
    if listing.complete:
        for sis_id, ident in before.items():
            if sis_id not in rows.users.seen:
                gone.append(ident)
                sample.gone(sis_id)
        if gone:
            await deactivate_students(session, gone)
    after = await active_students(session)
    plan = SyncPlan(SOURCE, base=len(before), removals=len(before.keys() - after.keys()))
    _count(plan, result, sample.status_deactivations)
    _fill_sample(plan, sample, result.problems, listing.where)
    return plan


def _count(plan: SyncPlan, result: ImportResult, status_deactivations: int) -> None:
    unchanged = 0
    for name, counts in result.counts().items():
        updated = counts.updated
        if name == "students":
            updated -= status_deactivations  # counted below, with the students that left
        if counts.created:
            plan.count(f"{name} created", counts.created)
        if updated:
            plan.count(f"{name} updated", updated)
        unchanged += counts.unchanged
    if plan.removals:
        plan.count("students deactivated", plan.removals)
    if unchanged:
        plan.count("unchanged", unchanged)
    if result.problems:
        plan.count("problems", len(result.problems))


def _fill_sample(
    plan: SyncPlan, sample: _Sample, problems: list[Problem], describe: Describe
) -> None:
    problem_lines = [
        _("problem: {where}: {reason}", where=describe(p), reason=p.reason)
        for p in problems[:SAMPLE_ROWS]
    ]
    removals, changes = sample.removals, sample.changes
    first = removals[:FIRST_REMOVALS] + problem_lines[:FIRST_PROBLEMS]
    rest = changes + removals[FIRST_REMOVALS:] + problem_lines[FIRST_PROBLEMS:]
    for line in first + rest:
        plan.note(line)
