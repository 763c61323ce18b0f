"""Billing-day benchmark: one daily run over many open invoices, beside plain SQL on the same rows.

    .venv/bin/python bench/billing_day.py [--invoices 100000] [--due 10000]
        [--backend sqlite|postgres|both] [--postgres-url URL] [--memory] [--repeat 3]

For each backend it builds a district (families of one to three students sharing one or two
guardians), `--invoices` open invoices of which `--due` have something to do on the run's day
(the three pre-due reminders and the first overdue notice, a quarter each), then times:

- the floor: plain SQL statements that touch the same rows, committed in one transaction —
  an UPDATE of the due invoices, an INSERT … SELECT of one notice per guardian of each, and an
  INSERT … SELECT of one outbox row per notice (then undone, untimed);
- the billing run for that day (`services.billing_run.BillingRunner`) on a fresh copy of the
  district, and a rerun of the same day (which must queue nothing new).

Each is timed --repeat times and the medians compared.

With --memory it also runs the day at half the size and reports the traced Python memory peak
of both runs, which should not grow with the number of invoices. PostgreSQL uses a database
`devicecare_bench` on the server at --postgres-url, dropped and recreated each time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.billing_run import BillingRunner  # noqa: E402
from storage import models as m  # noqa: E402
from storage.db import create_engine, maintain_sqlite, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.seed import ensure_defaults  # noqa: E402
from workflows.clock import FixedClock  # noqa: E402

TZ = ZoneInfo("America/Chicago")
DAY = date(2026, 4, 8)
CREATED = date(2026, 1, 1)
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
CHUNK = 5_000


# --- the district ----------------------------------------------------------------------------


async def populate(engine: AsyncEngine, invoices: int, due: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    students = max(invoices * 3 // 5, 1)
    now = datetime(2026, 1, 1, 16, tzinfo=UTC)
    households, guardians, student_rows, links = [], [], [], []
    sid = gid = hid = 0
    while sid < students:
        hid += 1
        households.append({"id": hid, "name": f"Family {hid}"})
        parents = []
        for _ in range(rng.choice((1, 2))):
            gid += 1
            parents.append(gid)
            guardians.append(
                {
                    "id": gid,
                    "first_name": "Parent",
                    "last_name": f"F{hid}",
                    "email": f"parent{gid}@example.org",
                    "household_id": hid,
                    "preferred_language": "en",
                }
            )
        for _ in range(rng.choice((1, 1, 2, 3))):
            sid += 1
            student_rows.append(
                {
                    "id": sid,
                    "sis_id": f"S{sid}",
                    "first_name": "Kid",
                    "last_name": f"F{hid}",
                    "grade": "6",
                    "household_id": hid,
                    "active": True,
                }
            )
            links += [{"guardian_id": g, "student_id": sid} for g in parents]
    # Due dates: `due` invoices with a step today (pre-due 14, 7, 1 and first overdue), the
    # rest due later than any reminder window or already a step past today's thresholds.
    offsets = [14, 7, 1, -7]
    invoice_rows = []
    for i in range(invoices):
        if i < due:
            offset, status = offsets[i % 4], "unpaid"
        elif i % 2:
            offset, status = rng.randint(15, 85), "unpaid"
        else:
            offset, status = -rng.randint(8, 13), "first"
        invoice_rows.append(
            {
                "number": f"INV-{i + 1:07}",
                "student_id": rng.randint(1, students),
                "status": status,
                "subtotal_cents": 12_500,
                "insurance_cents": 0,
                "total_cents": 12_500,
                "paid_cents": 0,
                "due_date": DAY + timedelta(days=offset),
                "automation_enabled": True,
                "auto_cancelled": False,
                "cap_reached": False,
                "override_applied": False,
                "automation_epoch": 0,
                "reminder_count": 0,
                "created_at": now,
            }
        )
    rng.shuffle(invoice_rows)
    async with engine.begin() as conn:
        for table, rows in [
            (m.Household.__table__, households),
            (m.Guardian.__table__, guardians),
            (m.Student.__table__, student_rows),
            (m.Guardianship.__table__, links),
            (m.Invoice.__table__, invoice_rows),
        ]:
            for start in range(0, len(rows), CHUNK):
                await conn.execute(table.insert(), rows[start : start + CHUNK])
        if engine.dialect.name == "postgresql":
            for table in ("households", "guardians", "students"):
                await conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
            await conn.execute(text("ANALYZE"))
        else:
            await conn.execute(text("ANALYZE"))


# --- the floor -------------------------------------------------------------------------------


def due_predicate(a: str = "") -> str:
    """The rows today's run acts on, for the floor's plain statements (`a`: table alias)."""
    return f"""
    {a}automation_enabled AND {a}due_date IS NOT NULL AND {a}paid_cents < {a}total_cents AND (
      {a}due_date IN (:d14, :d7, :d1) OR ({a}status = 'unpaid' AND {a}due_date <= :o1)
      OR ({a}status = 'first' AND {a}due_date <= :o2)
      OR ({a}status = 'second' AND {a}due_date <= :o3))
    """


def _params() -> dict[str, Any]:
    return {
        "d14": DAY + timedelta(days=14),
        "d7": DAY + timedelta(days=7),
        "d1": DAY + timedelta(days=1),
        "o1": DAY - timedelta(days=7),
        "o2": DAY - timedelta(days=14),
        "o3": DAY - timedelta(days=30),
    }


async def floor(engine: AsyncEngine) -> tuple[float, float, int]:
    """(seconds for the UPDATE statement, seconds for all three committed, rows updated).

    The floor commits, as the run does, so both pay for writing; its rows are then removed
    (untimed) and SQLite's log checkpointed, so the run starts from the same state.
    """
    now = datetime(2026, 4, 8, 11, tzinfo=UTC)
    await settle(engine)
    async with engine.connect() as conn:
        trans = await conn.begin()
        start = time.perf_counter()
        result = await conn.execute(
            text(
                "UPDATE invoices SET reminder_count = reminder_count + 1, "
                f"last_reminder_at = :now WHERE {due_predicate()}"
            ),
            {**_params(), "now": now},
        )
        update_s = time.perf_counter() - start
        await conn.execute(
            text(
                "INSERT INTO notices (invoice_id, guardian_id, template, dedupe_key, to_address, "
                "message_id, context, status, created_at) "
                "SELECT i.id, g.id, 'due_reminder', 'floor:' || i.id, g.email, "
                "'<floor-' || i.id || '-' || g.id || '@bench>', '{}', 'queued', :now "
                "FROM invoices i JOIN guardianships gs ON gs.student_id = i.student_id "
                f"JOIN guardians g ON g.id = gs.guardian_id WHERE {due_predicate('i.')}"
            ),
            {**_params(), "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO outbox (kind, dedupe_key, payload, status, attempts, "
                "next_attempt_at, created_at) SELECT 'email.notice', 'floor:' || id, '{}', "
                "'pending', 0, :now, :now FROM notices WHERE dedupe_key LIKE 'floor:%'"
            ),
            {"now": now},
        )
        await trans.commit()
        total_s = time.perf_counter() - start
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox WHERE dedupe_key LIKE 'floor:%'"))
        await conn.execute(text("DELETE FROM notices WHERE dedupe_key LIKE 'floor:%'"))
        await conn.execute(
            text(
                "UPDATE invoices SET reminder_count = 0, last_reminder_at = NULL "
                "WHERE reminder_count > 0"
            )
        )
    await settle(engine)
    return update_s, total_s, result.rowcount


async def settle(engine: AsyncEngine) -> None:
    """Checkpoint SQLite's write-ahead log so each timed part starts with an empty one."""
    if engine.dialect.name == "sqlite":
        await maintain_sqlite(engine, optimize=False)
    else:
        async with engine.connect() as conn:
            await conn.execute(text("CHECKPOINT"))


# --- the run ---------------------------------------------------------------------------------


async def billing_run(engine: AsyncEngine, *, trace: bool = False) -> tuple[float, Any, int]:
    clock = FixedClock(datetime(2026, 4, 8, 11, tzinfo=UTC))
    runner = BillingRunner(engine, session_factory(engine), clock, TZ, mail_domain="bench.example")
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    result = await runner.run(DAY)
    elapsed = time.perf_counter() - start
    peak = 0
    if trace:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, result.totals, peak


# --- backends --------------------------------------------------------------------------------


async def fresh_engine(backend: str, folder: Path, pg_url: str, tag: str) -> AsyncEngine:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / f'bench-{tag}.db'}"
    else:
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text("DROP DATABASE IF EXISTS devicecare_bench WITH (FORCE)"))
            await conn.execute(text("CREATE DATABASE devicecare_bench"))
        await admin.dispose()
        url = (
            make_url(pg_url).set(database="devicecare_bench").render_as_string(hide_password=False)
        )
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        await ensure_defaults(session)
        await session.commit()
    return engine


async def clone(
    backend: str, engine: AsyncEngine, folder: Path, pg_url: str, i: int
) -> AsyncEngine:
    """A fresh copy of the built district, so each timed run starts from the same state."""
    await engine.dispose()
    if backend == "sqlite":
        source = Path(str(engine.url.database))
        target = folder / f"bench-copy{i}.db"
        shutil.copyfile(source, target)
        url = f"sqlite+aiosqlite:///{target}"
    else:
        name = f"devicecare_bench_{i}"
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {name} TEMPLATE devicecare_bench"))
        await admin.dispose()
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    return create_engine(url)


def _spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms "
        f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, n={len(values)})"
    )


async def measure(
    backend: str, invoices: int, due: int, pg_url: str, memory: bool, repeat: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = await fresh_engine(backend, folder, pg_url, "full")
        t0 = time.perf_counter()
        await populate(engine, invoices, due)
        print(
            f"[{backend}] {invoices:,} open invoices, {due:,} due today: "
            f"built in {time.perf_counter() - t0:.1f} s"
        )
        updates, floors = [], []
        for _ in range(repeat):
            update_s, floor_s, touched = await floor(engine)
            updates.append(update_s)
            floors.append(floor_s)
        print(f"[{backend}] floor, UPDATE of {touched:,} rows: {_spread(updates)}")
        print(
            f"[{backend}] floor, UPDATE + notice and outbox INSERT…SELECTs, committed: "
            f"{_spread(floors)}"
        )
        runs, reruns = [], []
        for i in range(repeat):
            copy = await clone(backend, engine, folder, pg_url, i)
            await settle(copy)
            run_s, totals, _peak = await billing_run(copy)
            rerun_s, again, _peak = await billing_run(copy)
            assert again.emails_queued == totals.emails_queued, "a rerun queued new emails"
            runs.append(run_s)
            reruns.append(rerun_s)
            await copy.dispose()
        ratio = statistics.median(runs) / statistics.median(floors)
        print(
            f"[{backend}] billing run: {_spread(runs)}; {ratio:.1f}x the committed floor, "
            f"{statistics.median(runs) / statistics.median(updates):.1f}x the UPDATE alone; "
            f"{totals.reminders:,} steps, {totals.emails_queued:,} emails "
            f"({totals.digests:,} digests)"
        )
        print(f"[{backend}] rerun of the same day (no new emails): {_spread(reruns)}")
        if not memory:
            return
        peaks = []
        for scale, tag in ((2, "half"), (1, "full2")):
            engine = await fresh_engine(backend, folder, pg_url, tag)
            await populate(engine, invoices // scale, due // scale)
            _s, _t, peak = await billing_run(engine, trace=True)
            peaks.append((invoices // scale, peak))
            await engine.dispose()
        for n, peak in peaks:
            print(f"[{backend}] traced memory peak with {n:,} invoices: {peak / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=PG_DEFAULT)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs, each on a fresh copy")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(
            measure(backend, args.invoices, args.due, args.postgres_url, args.memory, args.repeat)
        )


if __name__ == "__main__":
    main()
