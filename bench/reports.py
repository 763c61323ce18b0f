"""Reports benchmark: every report over a district with 1,000,000 incidents and 300,000 invoices.

    .venv/bin/python bench/reports.py [--backend sqlite|postgres|both] [--database-url URL]
                                      [--reuse] [--incidents N]

The district is generated set-based inside the database (PostgreSQL: INSERT ... SELECT FROM
generate_series; SQLite: the same statements over a recursive CTE, in one transaction with
`synchronous=OFF` for the load only), from deterministic pseudo-random expressions, so every run
builds the same district. Stored invoice totals match their rows (storage.reconcile checks all of
them). Then every report in the catalogue runs for one school year, over the whole district and
again for one building and grade: the median of 3 runs after a warm-up, in milliseconds.

The databases are kept: SQLite in /tmp/devicecare_bench_reports.db, PostgreSQL in the
`devicecare_bench_reports` database of the server named by --database-url (or
DEVICECARE_BENCH_PG_URL, default postgres@127.0.0.1). --reuse skips the load when one is there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import models as m
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.reconcile import discrepancies
from storage.report_base import CATALOGUE
from storage.reports import run_report
from storage.seed import ensure_defaults
from workflows.reports import ReportFilters

TZ = ZoneInfo("America/Chicago")
SQLITE_PATH = Path("/tmp/devicecare_bench_reports.db")
PG_DATABASE = "devicecare_bench_reports"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

# Three school years of history; the reports look at the last one.
FIRST_DAY = date(2023, 7, 1)
DAYS = 1096
TERM_STARTS = (date(2023, 7, 1), date(2024, 7, 1), date(2025, 7, 1))
TODAY = date(2026, 6, 30)
SCHOOL_YEAR = (date(2025, 7, 1), date(2026, 6, 30))
# A short range too, as /report last-month or the weekly digest would ask for.
LAST_MONTH = (date(2026, 6, 1), date(2026, 6, 30))
FILTER_BUILDING = "School 03"
FILTER_GRADE = "7"

BUILDINGS = 20
MODELS = (
    "Dell Chromebook 3100",
    "Lenovo 100e Gen 3",
    "Lenovo 300e Gen 2",
    "HP Chromebook 11 G9",
    "Acer Chromebook C733",
    "iPad 9th Generation",
)
# Weighted: screens and knocks are common, theft is rare.
FLAG_WEIGHTS = (
    ["screen"] * 5
    + ["physical_damage"] * 4
    + ["keyboard", "keyboard", "battery", "battery", "charger", "charger"]
    + ["water", "lost", "stolen", "wireless", "other"]
)
FLAGS = sorted(set(FLAG_WEIGHTS))
AMOUNTS = (2500, 4500, 8900, 12000, 35000)
COPAY = 2500
OPEN = ("unpaid", "first", "second", "final", "collections")
INCIDENT_OPEN = ("open", "in_repair", "awaiting_parts", "vendor_repair", "ready_for_pickup")


@dataclass(frozen=True)
class Shape:
    """How big the district is; everything scales with the number of incidents."""

    incidents: int

    @property
    def students(self) -> int:
        return max(100, self.incidents * 6 // 100)

    @property
    def households(self) -> int:
        return self.students * 2 // 3

    @property
    def devices(self) -> int:
        return self.students * 7 // 6

    @property
    def enrolled_per_year(self) -> int:
        """Every fifth student is insured each school year."""
        return self.students // 5

    @property
    def enrollments(self) -> int:
        return self.enrolled_per_year * len(TERM_STARTS)

    @property
    def incident_invoices(self) -> int:
        """Every fourth incident is billed."""
        return self.incidents // 4

    @property
    def fee_invoices(self) -> int:
        return max(10, self.incidents * 3 // 10 - self.incident_invoices - self.enrollments)

    @property
    def invoices(self) -> int:
        return self.incident_invoices + self.enrollments + self.fee_invoices


class Dialect:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, postgres: bool) -> None:
        self.pg = postgres

    def series(self, n: int) -> str:
        """Rows i = 1..n."""
        if self.pg:
            return f"generate_series(1::bigint, {n}) AS s(i)"
        return (
            "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r "
            f"WHERE i < {n}) SELECT i FROM r) AS s"
        )

    @staticmethod
    def h(column: str, salt: int) -> str:
        """A deterministic pseudo-random integer in 0..1000002, independent for each salt."""
        multipliers = (2654435761, 2246822519, 3266489917, 668265263, 374761393, 1597334677)
        mul = multipliers[salt % len(multipliers)] + 2 * salt
        return f"((({column}) * {mul} + {salt * 7919}) % 1000003)"

    def day(self, offset: str) -> str:
        """FIRST_DAY plus `offset` days, as a date."""
        if self.pg:
            return f"(DATE '{FIRST_DAY.isoformat()}' + CAST({offset} AS integer))"
        return f"date('{FIRST_DAY.isoformat()}', ({offset}) || ' days')"

    def at(self, seconds: str) -> str:
        """Midnight UTC of FIRST_DAY plus `seconds`, as a stored timestamp."""
        return self.shift(f"'{FIRST_DAY.isoformat()} 00:00:00'", seconds, literal=True)

    def shift(self, ts: str, seconds: str, *, literal: bool = False) -> str:
        """A timestamp moved by `seconds`."""
        if self.pg:
            base = f"TIMESTAMPTZ {ts[:-1]}+00'" if literal else ts
            return f"({base} + ({seconds}) * INTERVAL '1 second')"
        # SQLite stores UtcDateTime as naive UTC text with microseconds.
        return f"(strftime('%Y-%m-%d %H:%M:%S', {ts}, ({seconds}) || ' seconds') || '.000000')"

    def date_of(self, ts: str) -> str:
        if self.pg:
            return f"CAST(({ts}) AT TIME ZONE 'UTC' AS date)"
        return f"date({ts})"

    def add_days(self, day: str, days: str) -> str:
        if self.pg:
            return f"({day} + CAST({days} AS integer))"
        return f"date({day}, ({days}) || ' days')"

    def padded(self, column: str) -> str:
        if self.pg:
            return f"lpad(CAST({column} AS text), 6, '0')"
        return f"printf('%06d', {column})"

    @staticmethod
    def pick(index: str, values: Sequence[object]) -> str:
        """values[index] as a CASE (strings quoted)."""

        def lit(v: object) -> str:
            return f"'{v}'" if isinstance(v, str) else str(v)

        whens = " ".join(f"WHEN {i} THEN {lit(v)}" for i, v in enumerate(values))
        return f"(CASE {index} {whens} END)"


DAY = 86_400
NAN = float("nan")


def people(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    s, hh = shape.students, shape.households
    grade = "(CASE WHEN i % 13 = 0 THEN 'KG' ELSE CAST(i % 13 AS text) END)"
    return [
        (
            "households",
            f"INSERT INTO households (id, name) SELECT i, 'Family ' || i FROM {d.series(hh)}",
        ),
        (
            "students",
            "INSERT INTO students (id, sis_id, first_name, last_name, grade, email, building_id,"
            " household_id, active) "
            f"SELECT i, 'S' || i, 'Student', 'No' || i, {grade}, NULL, "
            f"1 + {d.h('i', 1)} % {BUILDINGS}, "
            f"CASE WHEN i % 20 = 0 THEN NULL ELSE 1 + i % {hh} END, (i % 25 <> 0) "
            f"FROM {d.series(s)}",
        ),
        (
            "guardians",
            "INSERT INTO guardians (id, sis_id, first_name, last_name, email, preferred_language,"
            " household_id, email_bouncing_since) "
            "SELECT i, 'G' || i, 'Parent', 'Family ' || i, "
            "CASE WHEN i % 10 = 0 THEN NULL ELSE 'parent' || i || '@example.org' END, 'en', i, "
            f"CASE WHEN i % 50 = 1 THEN {d.at(str(400 * DAY))} ELSE NULL END "
            f"FROM {d.series(hh)}",
        ),
        (
            "second guardians",
            "INSERT INTO guardians (id, sis_id, first_name, last_name, email, preferred_language,"
            " household_id) "
            f"SELECT {hh} + i, 'G2-' || i, 'Second', 'Family ' || i, "
            "'second' || i || '@example.org', 'es', i "
            f"FROM {d.series(hh // 3)}",
        ),
        (
            "guardianships",
            "INSERT INTO guardianships (guardian_id, student_id, relationship_kind) "
            "SELECT g.id, st.id, 'guardian' FROM students st "
            "JOIN guardians g ON g.household_id = st.household_id",
        ),
    ]


def devices(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    return [
        (
            "devices",
            "INSERT INTO devices (id, serial, asset_tag, model, kind, building_id, status,"
            " created_at) "
            f"SELECT i, 'SN' || {d.padded('i')}, NULL, {d.pick('i % 6', MODELS)}, 'chromebook', "
            f"1 + {d.h('i', 2)} % {BUILDINGS}, 'in_service', {d.at('0')} "
            f"FROM {d.series(shape.devices)}",
        ),
        (
            "device assignments",
            "INSERT INTO device_assignments (device_id, student_id, assigned_at) "
            f"SELECT i, i, {d.at('3600')} FROM {d.series(shape.students)}",
        ),
    ]


def incidents(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    s, spare = shape.students, shape.devices - shape.students
    opened = d.at(f"od * {DAY} + 46800 + h5 % 32400")
    # Most incidents are on the student's own device, one in ten on a loaner.
    inner = (
        f"SELECT i, 1 + {d.h('i', 3)} % {s} AS st, {d.h('i', 4)} AS h4, "
        f"{d.h('i', 5)} % {DAYS} AS od, {d.h('i', 6)} AS h5, {d.h('i', 7)} AS h7, "
        f"{d.h('i', 8)} AS h8 FROM {d.series(shape.incidents)}"
    )
    first = d.pick(f"{d.h('i', 9)} % {len(FLAG_WEIGHTS)}", FLAG_WEIGHTS)
    second = d.pick(f"{d.h('i', 10)} % {len(FLAGS)}", FLAGS)
    flag_inner = (
        f"SELECT i, {first} AS f1, {second} AS f2, "
        f"{d.h('i', 11)} % 3 AS two FROM {d.series(shape.incidents)}"
    )
    return [
        (
            "incidents",
            "INSERT INTO incidents (id, device_id, student_id, reported_by_id, occurred_on,"
            " description, status, ticket_ref, opened_at, closed_at, idempotency_key) "
            f"SELECT i, CASE WHEN h4 % 10 = 0 THEN {s} + 1 + h4 % {spare} ELSE st END, st, NULL,"
            f" {d.day('od')}, '', "
            f"CASE WHEN h7 % 5 < 2 THEN 'closed' ELSE {d.pick('h7 % 5', INCIDENT_OPEN)} END, "
            f"NULL, {opened}, "
            f"CASE WHEN h7 % 5 < 2 THEN {d.shift(opened, '3600 + h8 % 2592000')} END, NULL "
            f"FROM ({inner}) AS x",
        ),
        (
            "incident flags",
            "INSERT INTO incident_flags (incident_id, flag) "
            f"SELECT i, f1 FROM ({flag_inner}) AS x "
            "UNION ALL "
            f"SELECT i, f2 FROM ({flag_inner}) AS y WHERE two = 0 AND f2 <> f1",
        ),
        # Statistics now, so the per-student look-ups below use the index (PostgreSQL would
        # otherwise plan them for an empty table).
        ("analyze incidents", "ANALYZE incidents"),
    ]


def _school_year(d: Dialect, per_year: int) -> tuple[str, str, str, str, list[int]]:
    """For a series of per_year rows per school year: year index, row within the year, and
    the year's term start and end dates."""
    year = f"((i - 1) / {per_year})"
    k = f"((i - 1) % {per_year} + 1)"
    start = d.pick(year, [t.isoformat() for t in TERM_STARTS])
    end = d.pick(year, [date(t.year + 1, 6, 30).isoformat() for t in TERM_STARTS])
    if d.pg:
        start, end = f"CAST({start} AS date)", f"CAST({end} AS date)"
    return year, k, start, end, [(t - FIRST_DAY).days for t in TERM_STARTS]


def insurance(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    """Every fifth student insured each year; one in twenty enrollments cancelled, two awaiting
    the premium. Enrollment ids are year * enrolled_per_year + student / 5."""
    year, k, start, end, offsets = _school_year(d, shape.enrolled_per_year)
    labels = [f"{t.year}-{t.year + 1}" for t in TERM_STARTS]
    status = (
        f"(CASE WHEN {k} % 20 = 0 THEN 'cancelled' WHEN {k} % 20 < 3 THEN 'pending_payment' "
        "ELSE 'active' END)"
    )
    created = d.at(f"({d.pick(year, offsets)} - 14 + {k} % 10) * {DAY} + 50000")
    return [
        (
            "insurance enrollments",
            "INSERT INTO insurance_enrollments (id, student_id, policy_id, term_label, "
            "term_start, term_end, status, created_at, activated_at, source) "
            f"SELECT i, 5 * {k}, 1 + {k} % 2, {d.pick(year, labels)}, {start}, {end}, "
            f"{status}, {created}, "
            f"CASE WHEN {status} = 'active' THEN {d.shift(created, str(5 * DAY))} END, 'staff' "
            f"FROM {d.series(shape.enrollments)}",
        )
    ]


def student_flags(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    """Repeat offenders: every twentieth student flagged once a year, every sixtieth twice."""
    out = []
    for every, flags, days in (
        (20, ["screen", "physical_damage", "lost"], 30),
        (60, ["battery"], 200),
    ):
        per = shape.students // every
        year, k, start, _end, offsets = _school_year(d, per)
        flagged = d.at(f"({d.pick(year, offsets)} + {days} + {k} % 120) * {DAY} + 60000")
        out.append(
            (
                f"student flags (1 in {every})",
                "INSERT INTO student_flags (student_id, flag, window_start, incident_count,"
                " flagged_at, incident_id) "
                f"SELECT {every} * {k}, {d.pick(f'{k} % {len(flags)}', flags)}, {start}, 3, "
                f"{flagged}, "
                f"(SELECT max(x.id) FROM incidents x WHERE x.student_id = {every} * {k}) "
                f"FROM {d.series(3 * per)}",
            )
        )
    return out


def _invoice_insert(d: Dialect, inner: str) -> str:
    """Invoices from `inner` (id, student_id, incident_id, device_id, claim_enrollment_id,
    premium_enrollment_id, kind, created_at, sub, ins, r, h2), with amounts that always add up.

    r (0..99) picks the fate: < 8 cancelled (< 4 by automation), < 48 paid (< 13 with a quarter
    waived, 13..15 with $10 refunded), < 58 half paid, < 62 half waived, else open unpaid.
    """
    open_pick = d.pick("r % 5", OPEN)
    partial_pick = d.pick("r % 3", ("first", "second", "final"))
    money = (
        "SELECT b.*, "
        "CASE WHEN r < 8 THEN 'cancelled' WHEN total = 0 OR r < 48 THEN 'paid' "
        f"WHEN r < 58 THEN {partial_pick} WHEN r < 62 THEN 'unpaid' ELSE {open_pick} END"
        " AS status, "
        "CASE WHEN r < 8 OR total = 0 THEN 0 WHEN r < 13 THEN total - total / 4 "
        "WHEN r < 48 THEN total WHEN r < 58 THEN total / 2 ELSE 0 END AS paid, "
        "CASE WHEN r < 8 OR total = 0 THEN 0 WHEN r < 13 THEN total / 4 "
        "WHEN r >= 58 AND r < 62 THEN total / 2 ELSE 0 END AS waived, "
        "CASE WHEN r >= 13 AND r < 16 AND total >= 1000 THEN 1000 ELSE 0 END AS refunded, "
        "h2 % 4 AS rc "
        f"FROM (SELECT a.*, sub - ins AS total FROM ({inner}) AS a) AS b"
    )
    issued = d.date_of("created_at")
    return (
        "INSERT INTO invoices (id, number, student_id, incident_id, device_id, status,"
        " subtotal_cents, insurance_cents, total_cents, paid_cents, due_date,"
        " automation_enabled, auto_cancelled, claim_enrollment_id, cap_reached,"
        " override_applied, created_at, paid_at, cancelled_at, automation_epoch,"
        " final_notice_on, reminder_count, last_reminder_at, kind, waived_cents,"
        " refunded_cents, premium_enrollment_id) "
        f"SELECT id, 'INV-' || {d.padded('id')}, student_id, incident_id, device_id, status, "
        f"sub, ins, total, paid, {d.add_days(issued, '30')}, (h2 % 20 <> 0), (r < 4), "
        "claim_enrollment_id, FALSE, FALSE, created_at, "
        f"CASE WHEN status = 'paid' THEN {d.shift('created_at', str(10 * DAY))} END, "
        f"CASE WHEN status = 'cancelled' THEN {d.shift('created_at', str(75 * DAY))} END, 0, "
        f"CASE WHEN status IN ('final', 'collections') OR r < 4 "
        f"THEN {d.add_days(issued, '45')} END, rc, "
        f"CASE WHEN rc > 0 THEN {d.shift('created_at', str(20 * DAY))} END, "
        "kind, waived, refunded, premium_enrollment_id "
        f"FROM ({money}) AS c"
    )


def invoices(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    n_inc, n_prem = shape.incident_invoices, shape.enrollments
    per_year = shape.enrolled_per_year
    amount = d.pick(f"{d.h('x.id', 12)} % {len(AMOUNTS)}", AMOUNTS)
    # Insured students (every fifth, enrollment not cancelled or awaiting payment) claim on
    # half their damage invoices; the claim is on that school year's enrollment.
    claimed = (
        f"(x.student_id % 5 = 0 AND (x.student_id / 5) % 20 >= 3 AND {d.h('x.id', 13)} % 2 = 0)"
    )
    year = (
        "(CASE WHEN x.occurred_on < '2024-07-01' THEN 0 "
        "WHEN x.occurred_on < '2025-07-01' THEN 1 ELSE 2 END)"
    )
    none = "CAST(NULL AS bigint)"
    incident = (
        f"SELECT x.id / 4 AS id, x.student_id, x.id AS incident_id, x.device_id, "
        f"CASE WHEN {claimed} THEN {year} * {per_year} + x.student_id / 5 END"
        f" AS claim_enrollment_id, {none} AS premium_enrollment_id, 'incident' AS kind, "
        f"{d.shift('x.opened_at', str(2 * DAY))} AS created_at, {amount} AS sub, "
        f"CASE WHEN {claimed} THEN {amount} - {COPAY} ELSE 0 END AS ins, "
        f"{d.h('x.id', 14)} % 100 AS r, {d.h('x.id', 15)} AS h2 "
        "FROM incidents x WHERE x.id % 4 = 0"
    )
    premium = (
        f"SELECT {n_inc} + e.id AS id, e.student_id, {none} AS incident_id, {none} AS device_id,"
        f" {none} AS claim_enrollment_id, e.id AS premium_enrollment_id, 'premium' AS kind, "
        f"{d.shift('e.created_at', '3600')} AS created_at, "
        "CASE e.policy_id WHEN 1 THEN 2500 ELSE 4000 END AS sub, 0 AS ins, "
        "CASE e.status WHEN 'active' THEN 8 + e.id % 40 WHEN 'pending_payment' "
        "THEN 70 + e.id % 30 ELSE 4 + e.id % 4 END AS r, "
        f"{d.h('e.id', 16)} AS h2 FROM insurance_enrollments e"
    )
    fee_day = d.at(f"({d.h('i', 18)} % {DAYS}) * {DAY} + 50000")
    fee = (
        f"SELECT {n_inc + n_prem} + i AS id, 1 + {d.h('i', 17)} % {shape.students} AS student_id,"
        f" {none} AS incident_id, {none} AS device_id, {none} AS claim_enrollment_id,"
        f" {none} AS premium_enrollment_id, 'fee' AS kind, "
        f"{fee_day} AS created_at, "
        f"2500 AS sub, 0 AS ins, {d.h('i', 19)} % 100 AS r, {d.h('i', 20)} AS h2 "
        f"FROM {d.series(shape.fee_invoices)}"
    )
    return [
        ("incident invoices", _invoice_insert(d, incident)),
        ("premium invoices", _invoice_insert(d, premium)),
        ("fee invoices", _invoice_insert(d, fee)),
    ]


def invoice_rows(d: Dialect) -> list[tuple[str, str]]:
    """The rows behind each invoice's stored totals: lines, payments, waivers, refunds; and
    what reports show beside them: cancellations in the log, pending payments."""
    later = {n: d.shift("created_at", str(n * DAY)) for n in (5, 6, 7, 11, 12, 20)}
    open_list = ", ".join(f"'{s}'" for s in OPEN)
    received = f"COALESCE(paid_at, {later[12]})"
    return [
        (
            "invoice lines",
            "INSERT INTO invoice_lines (id, invoice_id, position, description, kind, fee_item_id,"
            " quantity, unit_cents, amount_cents) "
            "SELECT id, id, 1, CASE kind WHEN 'incident' THEN 'Repair' WHEN 'premium' "
            "THEN 'Insurance premium' ELSE 'Technology fee' END, "
            "CASE kind WHEN 'incident' THEN 'part' ELSE 'fee' END, NULL, 1, subtotal_cents, "
            "subtotal_cents FROM invoices",
        ),
        (
            "payments",
            "INSERT INTO payments (id, invoice_id, amount_cents, method, reference, received_on,"
            " recorded_by_id, recorded_at, idempotency_key) "
            "SELECT id, id, paid_cents, CASE id % 3 WHEN 0 THEN 'check' WHEN 1 THEN 'cash' "
            f"ELSE 'online' END, NULL, {d.date_of(received)}, NULL, {received}, "
            "'bench-payment-' || id FROM invoices WHERE paid_cents > 0",
        ),
        (
            "waivers and refunds",
            "INSERT INTO invoice_adjustments (invoice_id, kind, amount_cents, reason, status,"
            " payment_id, requested_at, decided_at) "
            f"SELECT id, 'waiver', waived_cents, 'Hardship', 'applied', NULL, {later[5]}, "
            f"{later[6]} FROM invoices WHERE waived_cents > 0 "
            f"UNION ALL SELECT id, 'refund', refunded_cents, 'Paid twice', 'applied', id, "
            f"{later[11]}, {later[11]} FROM invoices WHERE refunded_cents > 0 "
            "UNION ALL SELECT id, 'waiver', 500, 'Family asked', "
            f"CASE WHEN id % 2 = 0 THEN 'pending' ELSE 'denied' END, NULL, {later[7]}, NULL "
            f"FROM invoices WHERE status IN ({open_list}) AND id % 97 = 0",
        ),
        (
            "cancellations",
            "INSERT INTO activity_log (at, actor_staff_id, actor_label, entity_type, entity_id,"
            " action, comment) "
            "SELECT cancelled_at, NULL, CASE WHEN auto_cancelled THEN 'Billing automation' "
            "ELSE 'Pat Clerk' END, 'invoice', id, CASE WHEN auto_cancelled THEN 'auto_cancelled'"
            " ELSE 'cancelled' END, CASE WHEN auto_cancelled THEN 'No payment after the final "
            "notice' ELSE 'Device returned undamaged' END FROM invoices WHERE status = 'cancelled'",
        ),
        (
            "pending payments",
            "INSERT INTO pending_payments (invoice_id, amount_cents, method, paid_on, status,"
            " created_at) "
            "SELECT id, CASE WHEN total_cents - paid_cents - waived_cents >= 1000 THEN 1000 "
            "ELSE total_cents - paid_cents - waived_cents END, 'check', "
            f"{d.date_of(later[20])}, 'pending', {later[20]} "
            f"FROM invoices WHERE status IN ({open_list}) AND id % 101 = 0",
        ),
        (
            "invoice counter",
            "UPDATE counters SET value = (SELECT COALESCE(max(id), 0) FROM invoices) "
            "WHERE name = 'invoice'",
        ),
    ]


# Tables given explicit ids, whose PostgreSQL sequences must move past them.
EXPLICIT_IDS = (
    "buildings",
    "households",
    "students",
    "guardians",
    "devices",
    "incidents",
    "insurance_policies",
    "insurance_enrollments",
    "invoices",
    "invoice_lines",
    "payments",
)


def statements(d: Dialect, shape: Shape) -> list[tuple[str, str]]:
    return [
        *people(d, shape),
        *devices(d, shape),
        *incidents(d, shape),
        *insurance(d, shape),
        *student_flags(d, shape),
        *invoices(d, shape),
        *invoice_rows(d),
    ]


async def _seed_rows(engine: AsyncEngine) -> None:
    """The settings and roles, the buildings and the two insurance policies."""
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await ensure_defaults(session)
        await session.execute(
            insert(m.Building),
            [
                {"id": b, "name": f"School {b:02d}", "sis_id": f"B{b}", "kind": "school"}
                for b in range(1, BUILDINGS + 1)
            ],
        )
        created = datetime(2023, 5, 1, tzinfo=UTC)
        await session.execute(
            insert(m.InsurancePolicy),
            [
                {
                    "id": 1,
                    "name": "Device Protection Plan",
                    "copay_cents": COPAY,
                    "max_claims": 2,
                    "premium_cents": 2500,
                    "allow_override": False,
                    "active": True,
                    "created_at": created,
                },
                {
                    "id": 2,
                    "name": "Device Protection Plus",
                    "copay_cents": COPAY,
                    "max_claims": 3,
                    "premium_cents": 4000,
                    "allow_override": True,
                    "active": True,
                    "created_at": created,
                },
            ],
        )


async def load(engine: AsyncEngine, shape: Shape, *, log: bool = False) -> dict[str, float]:
    """Fill a migrated, empty database with the district. Returns seconds per step."""
    timings: dict[str, float] = {}
    await _seed_rows(engine)
    d = Dialect(engine.dialect.name == "postgresql")
    async with engine.connect() as conn:
        if d.pg:
            async with conn.begin():
                await _run_all(conn, d, shape, timings, log)
                for table in EXPLICIT_IDS:
                    await conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
                    )
            started = time.perf_counter()
            await conn.execute(text("ANALYZE"))
            await conn.commit()
        else:
            # The whole load is one transaction, unsynced: a crash means loading again.
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("PRAGMA synchronous=OFF")
            await driver.execute("BEGIN IMMEDIATE")
            await _run_all(_Driver(driver), d, shape, timings, log)
            await driver.execute("COMMIT")
            await driver.execute("PRAGMA synchronous=NORMAL")
            started = time.perf_counter()
            await driver.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - started
    return timings


class _Driver:
    """aiosqlite's connection with the one method the load uses."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def exec_driver_sql(self, sql: str) -> None:
        await self.driver.execute(sql)


async def _run_all(
    conn: AsyncConnection | _Driver,
    d: Dialect,
    shape: Shape,
    timings: dict[str, float],
    log: bool,
) -> None:
    for label, sql in statements(d, shape):
        started = time.perf_counter()
        await conn.exec_driver_sql(sql)
        timings[label] = time.perf_counter() - started
        if log:
            print(f"  {label:<24} {timings[label]:7.1f} s", flush=True)


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    tables = (
        m.Student,
        m.Household,
        m.Guardian,
        m.Device,
        m.Incident,
        m.IncidentFlag,
        m.Invoice,
        m.Payment,
        m.InvoiceAdjustment,
        m.InsuranceEnrollment,
        m.StudentFlag,
        m.PendingPayment,
    )
    out: dict[str, int] = {}
    async with session_factory(engine, read_only=True)() as session:
        for model in tables:
            count = (await session.execute(select(func.count()).select_from(model))).scalar_one()
            out[str(model.__tablename__)] = int(count)
    return out


async def unreconciled(engine: AsyncEngine) -> int:
    """Invoices whose stored totals disagree with their rows, over the whole store (0 or a
    lower bound of at most 1000)."""
    async with session_factory(engine, read_only=True)() as session:
        return len(await discrepancies(session, limit=1000))


# --- timing the reports ---------------------------------------------------------------------


def school_year(*, filtered: bool) -> ReportFilters:
    if filtered:
        return ReportFilters(*SCHOOL_YEAR, buildings=(FILTER_BUILDING,), grades=(FILTER_GRADE,))
    return ReportFilters(*SCHOOL_YEAR)


async def run_once(engine: AsyncEngine, name: str, filters: ReportFilters) -> tuple[float, int]:
    sessions = session_factory(engine, read_only=True)
    started = time.perf_counter()
    async with sessions() as session:
        result = await run_report(session, name, filters, tz=TZ, today=TODAY)
    return (time.perf_counter() - started) * 1000, len(result.rows)


async def time_report(
    engine: AsyncEngine, name: str, filters: ReportFilters, runs: int = 3
) -> tuple[float, int]:
    """Median milliseconds of `runs` runs after a warm-up, and the rows returned."""
    _ms, rows = await run_once(engine, name, filters)
    times = [(await run_once(engine, name, filters))[0] for _ in range(runs)]
    return statistics.median(times), rows


@dataclass(frozen=True)
class Timing:
    name: str
    rows: int
    ms_all: float
    rows_filtered: int
    ms_filtered: float
    rows_month: int
    ms_month: float
    error: str = ""


async def time_reports(engine: AsyncEngine, runs: int = 3) -> list[Timing]:
    out = []
    for name in CATALOGUE:
        try:
            ms_all, rows = await time_report(engine, name, school_year(filtered=False), runs)
            ms_f, rows_f = await time_report(engine, name, school_year(filtered=True), runs)
            ms_m, rows_m = await time_report(engine, name, ReportFilters(*LAST_MONTH), runs)
        except Exception as exc:  # noqa: BLE001 - one failing report mustn't hide the others
            out.append(
                Timing(name, -1, NAN, -1, NAN, -1, NAN, error=f"{type(exc).__name__}: {exc}")
            )
            print(f"  {name:<22} FAILED {out[-1].error}", flush=True)
            continue
        out.append(Timing(name, rows, ms_all, rows_f, ms_f, rows_m, ms_m))
        print(
            f"  {name:<22} {rows:>8} {ms_all:>9.0f} {rows_f:>8} {ms_f:>9.0f} "
            f"{rows_m:>8} {ms_m:>9.0f}",
            flush=True,
        )
    return out


# --- the command ----------------------------------------------------------------------------


def _pg_urls(server_url: str) -> tuple[str, str]:
    """The maintenance database's URL and the benchmark database's URL on that server."""
    url = make_url(server_url)
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    bench = url.set(database=PG_DATABASE).render_as_string(hide_password=False)
    return admin, bench


async def _admin(url: str, sql: str) -> Any:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql))
            return result.first() if result.returns_rows else None
    finally:
        await engine.dispose()


async def _has_district(url: str) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT count(*) FROM incidents"))
            return bool(found.scalar_one())
    except Exception:  # noqa: BLE001 - no schema yet means no district
        return False
    finally:
        await engine.dispose()


async def prepare(backend: str, server_url: str, reuse: bool) -> tuple[str, bool]:
    """The database URL to benchmark, and whether it still needs the district loaded."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{SQLITE_PATH}"
        if reuse and SQLITE_PATH.exists() and await _has_district(url):
            return url, False
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        return url, True
    admin, url = _pg_urls(server_url)
    exists = await _admin(admin, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'")
    if reuse and exists and await _has_district(url):
        return url, False
    if exists:
        await _admin(admin, f'DROP DATABASE "{PG_DATABASE}" WITH (FORCE)')
    await _admin(admin, f'CREATE DATABASE "{PG_DATABASE}"')
    return url, True


def machine() -> str:
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    return f"nproc {os.cpu_count()}, loadavg {load}"


async def bench(backend: str, server_url: str, reuse: bool, shape: Shape) -> list[Timing]:
    print(f"\n== {backend} ({machine()})", flush=True)
    url, fresh = await prepare(backend, server_url, reuse)
    # Always brought to head: a reused database picks up new indexes this way.
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, url)
    print(f"migrations: {time.perf_counter() - started:.1f} s", flush=True)
    engine = create_engine(url)
    try:
        if fresh:
            print(f"loading {shape.incidents:,} incidents, {shape.invoices:,} invoices ...")
            started = time.perf_counter()
            timings = await load(engine, shape, log=True)
            print(
                f"data load: {time.perf_counter() - started:.1f} s "
                f"(analyze {timings['analyze']:.1f} s)",
                flush=True,
            )
        else:
            print("data load: reused", flush=True)
        counts = await row_counts(engine)
        print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
        started = time.perf_counter()
        bad = await unreconciled(engine)
        print(f"unreconciled invoices: {bad} ({time.perf_counter() - started:.1f} s)", flush=True)
        print(
            f"reports ({len(CATALOGUE)}), {SCHOOL_YEAR[0]}..{SCHOOL_YEAR[1]}; filtered = "
            f"building {FILTER_BUILDING} + grade {FILTER_GRADE}; month = "
            f"{LAST_MONTH[0]}..{LAST_MONTH[1]}; median of 3 after a warm-up",
            flush=True,
        )
        print(
            f"  {'report':<22} {'rows':>8} {'ms all':>9} {'rows':>8} {'ms filt':>9} "
            f"{'rows':>8} {'ms month':>9}"
        )
        results = await time_reports(engine)
        if bad:
            raise SystemExit(f"{bad} invoices don't reconcile")
        return results
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DEVICECARE_BENCH_PG_URL", PG_DEFAULT),
        help="a PostgreSQL server (asyncpg URL); the benchmark uses its own database there",
    )
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded district")
    parser.add_argument("--incidents", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    shape = Shape(args.incidents)
    slow: list[str] = []
    failed: list[str] = []
    for backend in backends:
        for t in asyncio.run(bench(backend, args.database_url, args.reuse, shape)):
            if t.error:
                failed.append(f"{t.name} on {backend}")
            elif backend == "postgres" and max(t.ms_all, t.ms_filtered, t.ms_month) >= 2000:
                slow.append(t.name)
    if slow:
        print(f"over 2 s on PostgreSQL: {', '.join(slow)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
