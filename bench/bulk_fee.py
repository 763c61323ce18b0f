"""Bulk fee benchmark: an annual fee applied to 10,000 students, then applied again.

    .venv/bin/python bench/bulk_fee.py [--students N] [--database-url URL]

Without --database-url it works in a fresh SQLite file in a temporary folder. A URL must name an
empty database (it is migrated first); the script never drops anything. It checks that every
student got exactly one invoice and that the rerun created none, and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.bulk_fees import BulkFeeBiller
from storage import models as m
from storage.db import create_engine, session_factory
from storage.fee_store import SqlFeeStore
from storage.migrate import upgrade
from storage.seed import ensure_defaults
from storage.uow import UnitOfWorkFactory
from workflows.clock import SystemClock
from workflows.fees import BillResult, FeeDefinition, apply_fee, current_school_year, define_fee
from workflows.permissions import Actor
from workflows.ports import Context

TZ_NAME = "America/Chicago"
SCHOOLS = 20
GRADES = [str(g) for g in range(1, 13)] + ["KG"]


async def seed(engine: AsyncEngine, students: int) -> None:
    """Buildings, then students each with one or two guardians (one in ten has no email)."""
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await ensure_defaults(session)
    async with sessions() as session, session.begin():
        await session.execute(
            insert(m.Building),
            [{"name": f"School {i + 1}", "sis_id": f"B{i}"} for i in range(SCHOOLS)],
        )
        building_ids = list((await session.execute(select(m.Building.id))).scalars())
        await session.execute(
            insert(m.Student),
            [
                {
                    "sis_id": f"S{i}",
                    "first_name": "Student",
                    "last_name": f"No{i}",
                    "grade": GRADES[i % len(GRADES)],
                    "building_id": building_ids[i % len(building_ids)],
                    "active": True,
                }
                for i in range(students)
            ],
        )
        guardians: list[dict[str, Any]] = []
        for i in range(students):
            guardians.append(
                {
                    "sis_id": f"G{i}",
                    "first_name": "Parent",
                    "last_name": f"No{i}",
                    "email": None if i % 10 == 9 else f"parent{i}@example.org",
                }
            )
            if i % 3 == 0:
                guardians.append(
                    {
                        "sis_id": f"G{i}b",
                        "first_name": "Second",
                        "last_name": f"No{i}",
                        "email": f"second{i}@example.org",
                    }  # fmt: skip
                )
        await session.execute(insert(m.Guardian), guardians)
        student_ids = {
            sis: sid for sid, sis in (await session.execute(select(m.Student.id, m.Student.sis_id)))
        }
        links = [
            {"guardian_id": gid, "student_id": student_ids["S" + sis[1:].rstrip("b")]}
            for gid, sis in (await session.execute(select(m.Guardian.id, m.Guardian.sis_id)))
        ]
        await session.execute(insert(m.Guardianship), links)


async def define(engine: AsyncEngine, actor: Actor) -> int:
    stores = UnitOfWorkFactory(session_factory(engine), SystemClock())
    async with stores() as store:
        ctx = Context(store, SystemClock(), ZoneInfo(TZ_NAME))
        year = current_school_year(await store.settings.get(), ctx.today())
        fee, _created = await define_fee(
            ctx,
            SqlFeeStore.beside(store),
            actor,
            FeeDefinition(
                code="tech-fee", name="Technology fee", school_year=year, amount_cents=2500
            ),
        )
        await store.commit()
        return fee.id


async def timed_apply(engine: AsyncEngine, fee_id: int, actor: Actor) -> tuple[float, BillResult]:
    biller = BulkFeeBiller(session_factory(engine), SystemClock(), ZoneInfo(TZ_NAME))
    started = time.perf_counter()
    result = await apply_fee(biller, actor, fee_id)
    return time.perf_counter() - started, result


async def counts(engine: AsyncEngine, fee_id: int) -> dict[str, int]:
    async with session_factory(engine)() as session:

        async def one(stmt: Any) -> int:
            return int((await session.execute(stmt)).scalar_one())

        fee_invoices = m.Invoice.annual_fee_id == fee_id
        return {
            "students": await one(select(func.count()).select_from(m.Student)),
            "invoices": await one(select(func.count()).where(fee_invoices)),
            "students billed": await one(
                select(func.count(func.distinct(m.Invoice.student_id))).where(fee_invoices)
            ),
            "invoice lines": await one(select(func.count()).select_from(m.InvoiceLine)),
            "notices": await one(select(func.count()).select_from(m.Notice)),
            "outbox rows": await one(select(func.count()).select_from(m.OutboxMessage)),
            "activity entries": await one(select(func.count()).select_from(m.ActivityEntry)),
        }


async def run(url: str, students: int) -> int:
    engine = create_engine(url)
    actor = Actor.system("Benchmark")
    try:
        started = time.perf_counter()
        await seed(engine, students)
        print(f"seed: {time.perf_counter() - started:.2f} s — {students} students")
        fee_id = await define(engine, actor)
        seconds, first = await timed_apply(engine, fee_id, actor)
        print(
            f"apply: {seconds:.2f} s — {first.created} invoices in {first.batches} batch(es), "
            f"{first.notices} notices, {first.created / seconds:,.0f} invoices/s"
        )
        seconds_again, again = await timed_apply(engine, fee_id, actor)
        print(f"rerun: {seconds_again:.2f} s — {again.created} invoices created")
        found = await counts(engine, fee_id)
    finally:
        await engine.dispose()
    print("rows: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ok = (
        found["invoices"] == found["students billed"] == students
        and first.created == students
        and again.created == 0
    )
    if not ok:
        print("not one invoice per student, or the rerun billed someone again!", file=sys.stderr)
    if seconds > 30:
        print(f"apply took {seconds:.1f} s, over the 30 s target", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty database; default: a new SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fee-bench-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        return asyncio.run(run(url, args.students))


if __name__ == "__main__":
    sys.exit(main())
