"""Enrollments from a CSV file, in two steps: validate (show what would change, write nothing),
then apply (enroll the good rows; a rerun changes nothing).

Columns: `student_id` (the student's SIS id), `policy` (a policy's name or number) and,
optionally, `waiver_reason` (a premium waiver for an eligible family). Every row is checked by
the same rules as an enrollment made in Slack (`workflows.enrollment`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from storage import models as m
from storage.csv_in import Problem
from storage.enrollment_store import policy_by_name_or_id, students_by_sis_id
from storage.roster_files import read_csv
from storage.uow import SqlUnitOfWork
from workflows.clock import Clock
from workflows.enrollment import (
    MAX_WAIVER_REASON,
    EnrollmentSource,
    EnrollStudent,
    check_enrollment,
    enroll_student,
)
from workflows.errors import DomainError
from workflows.i18n import N_, _
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

REQUIRED = ("student_id", "policy")
MAX_FIELD = 200


class Outcome(StrEnum):
    # Shown to staff: translated where shown, `_(outcome.value)`.
    WOULD_ENROLL = N_("would enroll")
    ENROLLED = N_("enrolled")
    ALREADY = N_("already enrolled")
    ERROR = N_("error")


@dataclass(frozen=True)
class EnrollmentRow:
    line: int
    student_sis_id: str
    policy: str
    waiver_reason: str | None


@dataclass(frozen=True)
class RowResult:
    line: int
    student_sis_id: str
    policy: str
    outcome: Outcome
    reason: str = ""  # why a row is bad; the premium and waiver for a good one

    @property
    def bad(self) -> bool:
        return self.outcome is Outcome.ERROR


@dataclass
class EnrollmentImport:
    file: str
    applied: bool
    rows: list[RowResult] = field(default_factory=list)

    @property
    def bad(self) -> list[RowResult]:
        return [r for r in self.rows if r.bad]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.rows if r.outcome is outcome)

    @property
    def ok(self) -> bool:
        return not self.bad


def read_enrollment_rows(path: Path) -> tuple[list[EnrollmentRow], list[Problem]]:
    """The file's rows with their own fields checked, bad ones as problems with their line.

    Raises `CsvFileError` for a file that isn't UTF-8 CSV or lacks a column it needs (nothing
    in it can be trusted).
    """
    problems: list[Problem] = []
    rows: list[EnrollmentRow] = []
    for line, raw in read_csv(path, REQUIRED, problems):
        student = raw.get("student_id", "")
        policy = raw.get("policy", "")
        waiver = " ".join(raw.get("waiver_reason", "").split()) or None
        if not student:
            problems.append(Problem(path.name, line, _("student_id is empty")))
        elif not policy:
            problems.append(Problem(path.name, line, _("policy is empty")))
        elif len(student) > MAX_FIELD or len(policy) > MAX_FIELD:
            problems.append(Problem(path.name, line, _("a value is too long")))
        elif waiver is not None and len(waiver) > MAX_WAIVER_REASON:
            problems.append(
                Problem(
                    path.name,
                    line,
                    _(
                        "{column} is longer than {limit} characters",
                        column="waiver_reason",
                        limit=MAX_WAIVER_REASON,
                    ),
                )
            )
        else:
            rows.append(EnrollmentRow(line, student, policy, waiver))
    return rows, problems


async def _student_ids(store: SqlUnitOfWork, sis_ids: set[str]) -> dict[str, m.Student]:
    if not sis_ids:
        return {}
    return await students_by_sis_id(store.session, sis_ids)


def _premium_note(policy: m.InsurancePolicy, waiver: str | None) -> str:
    if policy.premium_cents <= 0:
        return _("no premium")
    premium = format_cents(policy.premium_cents)
    if waiver:
        return _("premium {premium} waived ({waiver})", premium=premium, waiver=waiver)
    return _("premium {premium}", premium=premium)


@dataclass(frozen=True)
class _Resolved:
    row: EnrollmentRow
    command: EnrollStudent
    policy: m.InsurancePolicy


async def _resolve(
    store: SqlUnitOfWork, rows: list[EnrollmentRow], result: EnrollmentImport
) -> list[_Resolved]:
    """Rows whose student and policy exist and which don't repeat an earlier row."""
    students = await _student_ids(store, {r.student_sis_id for r in rows})
    policies: dict[str, m.InsurancePolicy | None] = {}
    seen: dict[tuple[int, int], int] = {}
    resolved: list[_Resolved] = []
    for row in rows:

        def bad(reason: str, row: EnrollmentRow = row) -> None:
            result.rows.append(
                RowResult(row.line, row.student_sis_id, row.policy, Outcome.ERROR, reason)
            )

        student = students.get(row.student_sis_id)
        if student is None:
            bad(_("unknown student {student}", student=row.student_sis_id))
            continue
        if not student.active:
            bad(_("student {student} is no longer active", student=row.student_sis_id))
            continue
        key = row.policy.lower()
        if key not in policies:
            policies[key] = await policy_by_name_or_id(store.session, row.policy)
        policy = policies[key]
        if policy is None:
            bad(_("unknown policy {policy}", policy=row.policy))
            continue
        first = seen.setdefault((student.id, policy.id), row.line)
        if first != row.line:
            bad(_("duplicate of line {first}", first=first))
            continue
        command = EnrollStudent(
            student_id=student.id,
            policy_id=policy.id,
            waiver_reason=row.waiver_reason,
            source=EnrollmentSource.IMPORT,
        )
        resolved.append(_Resolved(row, command, policy))
    return resolved


def _ok(item: _Resolved, outcome: Outcome, note: str) -> RowResult:
    return RowResult(item.row.line, item.row.student_sis_id, item.row.policy, outcome, note)


def _failed(item: _Resolved, exc: DomainError) -> RowResult:
    row = item.row
    return RowResult(row.line, row.student_sis_id, row.policy, Outcome.ERROR, exc.message)


async def import_enrollments(
    stores: Callable[[], SqlUnitOfWork],
    clock: Clock,
    tz: ZoneInfo,
    actor: Actor,
    path: Path,
    *,
    apply: bool,
) -> EnrollmentImport:
    """Validate (apply=False: nothing is written) or apply the file; every row gets a result,
    in file order. Refuses an actor without Manage Enrollments before reading any row."""
    require(actor, Permission.MANAGE_ENROLLMENTS)
    rows, problems = read_enrollment_rows(path)
    result = EnrollmentImport(path.name, applied=apply)
    result.rows.extend(RowResult(p.line, "", "", Outcome.ERROR, p.reason) for p in problems)
    async with stores() as store:
        resolved = await _resolve(store, rows, result)
        if not apply:
            ctx = Context(store, clock, tz)
            for item in resolved:
                result.rows.append(await _check(ctx, actor, item))
            # The validate step must leave no trace, whatever a check touched.
            await store.session.rollback()
        await store.commit()
    if apply:
        # One transaction per row: a bad row never undoes a good one, and a rerun skips
        # the rows already enrolled.
        for item in resolved:
            try:
                async with stores() as store:
                    done = await enroll_student(Context(store, clock, tz), actor, item.command)
                    await store.commit()
            except DomainError as exc:
                result.rows.append(_failed(item, exc))
                continue
            outcome = Outcome.ENROLLED if done.created else Outcome.ALREADY
            note = _premium_note(item.policy, item.row.waiver_reason) if done.created else ""
            if done.invoice is not None and done.created:
                note = _("{note}, invoice {number}", note=note, number=done.invoice.number)
            result.rows.append(_ok(item, outcome, note))
    result.rows.sort(key=lambda r: r.line)
    return result


async def _check(ctx: Context, actor: Actor, item: _Resolved) -> RowResult:
    try:
        _policy, _term, existing = await check_enrollment(ctx, actor, item.command)
    except DomainError as exc:
        return _failed(item, exc)
    if existing is not None:
        return _ok(item, Outcome.ALREADY, "")
    return _ok(item, Outcome.WOULD_ENROLL, _premium_note(item.policy, item.row.waiver_reason))
