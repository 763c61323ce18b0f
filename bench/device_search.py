"""Device search benchmark: the `/incident` type-ahead over 100,000 devices and 60,000 students.

    .venv/bin/python bench/device_search.py [--backend sqlite|postgres|both] [--senders 10]
                                            [--requests 3000] [--reuse] [--database-url URL]

The district: 60,000 students (first name, a generated last name, a 6-digit student id), each
holding one of 100,000 devices (serials like 5CD4K2Z9QH, asset tags AT100000..AT199999);
20,000 more devices were held before and returned, the rest are spares. It is loaded with the
drivers' bulk paths: sqlite3 executemany in one transaction, through the search triggers, then
ANALYZE; asyncpg COPY, then VACUUM ANALYZE.

`--senders` clients run a closed loop (each sends its next query the moment the last is
answered) over a mix of what technicians type: scanned serials, tag and serial fragments,
name fragments, student ids, 2 and 3 character starts, and queries that match nothing. Each
query goes through `SqlUnitOfWork.devices.search` as the type-ahead calls it (limit 100, one read
transaction). The floor sends the same SQL statement raw through the driver (aiosqlite or
asyncpg, one connection per sender) with no DeviceCare code, in the same run.
Target: p99 under 50 ms.

The databases are kept (SQLite /tmp/devicecare_bench_search.db, PostgreSQL database
devicecare_bench_search); --reuse skips the load when one is there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite  # noqa: E402
import asyncpg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.db import create_engine, session_factory  # noqa: E402
from storage.device_search import candidates_sql  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.uow import UnitOfWorkFactory  # noqa: E402
from workflows.clock import FixedClock  # noqa: E402
from workflows.device_search import search_patterns  # noqa: E402

SQLITE_PATH = Path("/tmp/devicecare_bench_search.db")
PG_DATABASE = "devicecare_bench_search"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DEVICES = 100_000
STUDENTS = 60_000
RETURNED = 20_000
LIMIT = 100
TARGET_P99_MS = 50.0

FIRST = (
    "Ana Liam Olivia Noah Emma Oliver Ava Elijah Sophia Mateo Isabella Lucas Mia Levi Amelia "
    "Asher Harper James Evelyn Leo Luna Ezra Camila Luca Gianna Ethan Aria Aiden Ella Wyatt "
    "Nora Sebastian Hazel Jack Zoe Hudson Riley Jayden Layla Owen Lily Daniel Aurora Henry "
    "Nova Michael Ellie Maverick Madison Grayson Grace Julian Isla Santiago Willow Kai Chloe"
).split()
SYLLABLES = (
    "ri ve ra smi th jo hn son gar cia mar tin lee wal ker ng uy en kim pa tel "
    "ro dri guez her nan dez mo ore ta yl or an der sen wil li ams bro wn da vis"
).split()
SERIAL_PREFIXES = ("5CD", "NXH", "PF", "R9", "HYX", "DMP")
SERIAL_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
MODEL = "HP Chromebook 11 G9"


def district(seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(students, devices) rows, the same every run: ids are 1-based positions."""
    rng = random.Random(seed)
    students = []
    for i in range(1, STUDENTS + 1):
        last = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        students.append((i, f"{200000 + i}", rng.choice(FIRST), last))
    devices = []
    for i in range(1, DEVICES + 1):
        tail = "".join(rng.choice(SERIAL_CHARS) for _ in range(7))
        devices.append((i, f"{rng.choice(SERIAL_PREFIXES)}{tail}", f"AT{99_999 + i}"))
    return students, devices


def assignments() -> list[tuple[int, int, int, bool]]:
    """(id, device, student, returned): student i holds device i; the first RETURNED students
    held device STUDENTS + i before it."""
    rows = [(i, i, i, False) for i in range(1, STUDENTS + 1)]
    rows += [(STUDENTS + i, STUDENTS + i, i, True) for i in range(1, RETURNED + 1)]
    return rows


def query_mix(
    students: list[tuple[Any, ...]], devices: list[tuple[Any, ...]]
) -> list[tuple[str, str]]:
    """(kind, query) pairs as technicians type them, drawn from the district."""
    rng = random.Random(11)
    mix: list[tuple[str, str]] = []
    for _ in range(50):
        _id, sis, first, last = rng.choice(students)
        _id, serial, tag = rng.choice(devices)
        mix += [
            ("serial, scanned", serial),
            ("serial, lower with dash", f"{serial[:4].lower()}-{serial[4:].lower()}"),
            ("serial part", serial[3:8]),
            ("tag number", tag[2:]),
            ("tag prefix", f"at {tag[2:6]}"),
            ("name, first + last start", f"{first} {last[:3]}"),
            ("name, last start", last[:5].lower()),
            ("name part", last[2:6]),
            ("student id", sis),
            ("2 chars", rng.choice(("an", "5c", "ri", "at", "20", "nx"))),
            ("3 chars", rng.choice(("riv", "5cd", "smi", "at1", "200", "nxh"))),
            ("no match", rng.choice(("zzqx", "qqq9zz", "no-such-thing", "xw"))),
        ]
    rng.shuffle(mix)
    return mix


# --- loading ------------------------------------------------------------------------------


def _pg_urls(server_url: str) -> tuple[str, str]:
    url = make_url(server_url)
    return (
        url.set(drivername="postgresql").render_as_string(hide_password=False),
        url.set(database=PG_DATABASE).render_as_string(hide_password=False),
    )


async def prepare(backend: str, server_url: str, reuse: bool) -> tuple[str, bool]:
    """The database URL, and whether the district still needs loading."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{SQLITE_PATH}"
        if reuse and SQLITE_PATH.exists():
            return url, False
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        return url, True
    admin, url = _pg_urls(server_url)
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
        if reuse and exists:
            return url, False
        if exists:
            await conn.execute(f'DROP DATABASE "{PG_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()
    return url, True


def load_sqlite(students: list[tuple[Any, ...]], devices: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(SQLITE_PATH, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # the load only; the app runs with NORMAL
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO students (id, sis_id, first_name, last_name, active) "
            "VALUES (?, ?, ?, ?, 1)",
            students,
        )
        when = (NOW - timedelta(days=400)).replace(tzinfo=None).isoformat(" ")
        conn.executemany(
            "INSERT INTO devices (id, serial, asset_tag, model, kind, status, created_at) "
            f"VALUES (?, ?, ?, '{MODEL}', 'chromebook', 'in_service', '{when}')",
            devices,
        )
        conn.executemany(
            "INSERT INTO device_assignments (id, device_id, student_id, assigned_at, returned_at) "
            f"VALUES (?, ?, ?, '{when}', CASE WHEN ? THEN '{when}' END)",
            assignments(),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def load_postgres(
    url: str, students: list[tuple[Any, ...]], devices: list[tuple[Any, ...]]
) -> None:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    when = NOW - timedelta(days=400)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "students",
                records=[(*s, True) for s in students],
                columns=["id", "sis_id", "first_name", "last_name", "active"],
            )
            await conn.copy_records_to_table(
                "devices",
                records=[(*d, MODEL, "chromebook", "in_service", when) for d in devices],
                columns=["id", "serial", "asset_tag", "model", "kind", "status", "created_at"],
            )
            await conn.copy_records_to_table(
                "device_assignments",
                records=[(i, d, s, when, when if r else None) for i, d, s, r in assignments()],
                columns=["id", "device_id", "student_id", "assigned_at", "returned_at"],
            )
            for table in ("students", "devices", "device_assignments"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        await conn.execute("VACUUM ANALYZE students, devices, device_assignments")
    finally:
        await conn.close()


# --- the closed loop ----------------------------------------------------------------------

Timed = list[tuple[str, float]]


async def closed_loop(
    senders: int,
    mix: list[tuple[str, str]],
    requests: int,
    open_sender: Callable[[], Awaitable[Any]],
    close_sender: Callable[[Any], Awaitable[None]],
    run: Callable[[Any, str], Awaitable[int]],
) -> tuple[Timed, float]:
    """Every sender sends its next query as soon as the last is answered, `requests` in all."""
    timed: Timed = []
    next_index = 0

    async def sender() -> None:
        nonlocal next_index
        handle = await open_sender()
        try:
            while next_index < requests:
                kind, query = mix[next_index % len(mix)]
                next_index += 1
                started = time.perf_counter()
                await run(handle, query)
                timed.append((kind, (time.perf_counter() - started) * 1000))
        finally:
            await close_sender(handle)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return timed, time.perf_counter() - started


def floor_statement(backend: str, query: str) -> tuple[str, dict[str, Any]] | None:
    """The one statement the search sends for `query`, to run raw through the driver."""
    patterns = search_patterns(" ".join(query.split()))
    if patterns is None:
        return None
    sql, params = candidates_sql(backend == "postgres", patterns)
    return sql, {**params, "n": LIMIT}


async def run_app(url: str, senders: int, mix: list[tuple[str, str]], requests: int) -> Any:
    engine = create_engine(url, pool_size=senders, max_overflow=0)
    stores = UnitOfWorkFactory(session_factory(engine, read_only=True), FixedClock(NOW))

    async def nothing() -> None:
        return None

    async def close(_: Any) -> None:
        return None

    async def search(_: Any, query: str) -> int:
        async with stores() as store:
            result = len(await store.devices.search(query, limit=LIMIT))
            await store.commit()
            return result

    try:
        async with engine.connect() as conn:  # warm the pool's first connection
            await conn.execute(text("SELECT 1"))
        await closed_loop(senders, mix, min(requests, 200), nothing, close, search)  # warm-up
        return await closed_loop(senders, mix, requests, nothing, close, search)
    finally:
        await engine.dispose()


async def run_floor(
    backend: str, url: str, senders: int, mix: list[tuple[str, str]], requests: int
) -> Any:
    async def open_sqlite() -> Any:
        conn = await aiosqlite.connect(SQLITE_PATH)
        return conn

    async def open_pg() -> Any:
        return await asyncpg.connect(url.replace("+asyncpg", ""))

    async def close(conn: Any) -> None:
        await conn.close()

    async def search_sqlite(conn: Any, query: str) -> int:
        statement = floor_statement(backend, query)
        if statement is None:
            return 0
        async with conn.execute(*statement) as cursor:
            return len(await cursor.fetchall())

    async def search_pg(conn: Any, query: str) -> int:
        statement = floor_statement(backend, query)
        if statement is None:
            return 0
        sql, params = statement
        async with conn.transaction(readonly=True):
            return len(await conn.fetch(sql.replace(":n", "$1"), params["n"]))

    opener, search = (open_pg, search_pg) if backend == "postgres" else (open_sqlite, search_sqlite)
    await closed_loop(senders, mix, min(requests, 200), opener, close, search)
    return await closed_loop(senders, mix, requests, opener, close, search)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, timed: Timed, seconds: float) -> float:
    every = [ms for _k, ms in timed]
    print(
        f"  {label:<8} {len(every):>6} req {len(every) / seconds:>7.0f}/s   "
        f"p50 {statistics.median(every):6.1f} ms  p99 {p(every, 0.99):6.1f} ms  "
        f"max {max(every):6.1f} ms"
    )
    return p(every, 0.99)


def by_kind(app: Timed, floor: Timed) -> None:
    heads = ("app p50", "app p99", "floor p50", "floor p99")
    print(f"    {'query kind':<26} " + " ".join(f"{h:>9}" for h in heads))
    for kind in sorted({k for k, _ms in app}):
        a = [ms for k, ms in app if k == kind]
        f = [ms for k, ms in floor if k == kind] or [0.0]
        print(
            f"    {kind:<26} {statistics.median(a):9.1f} {p(a, 0.99):9.1f} "
            f"{statistics.median(f):9.1f} {p(f, 0.99):9.1f}"
        )


def machine() -> str:
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    return f"nproc {os.cpu_count()}, loadavg {load}"


async def bench(backend: str, server_url: str, reuse: bool, senders: int, requests: int) -> float:
    print(f"\n== {backend} ({machine()})", flush=True)
    url, fresh = await prepare(backend, server_url, reuse)
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, url)
    print(f"migrations: {time.perf_counter() - started:.1f} s", flush=True)
    students, devices = district()
    if fresh:
        started = time.perf_counter()
        if backend == "sqlite":
            await asyncio.to_thread(load_sqlite, students, devices)
        else:
            await load_postgres(url, students, devices)
        print(
            f"load {len(students):,} students, {len(devices):,} devices, "
            f"{STUDENTS + RETURNED:,} assignments: {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    else:
        print("load: reused", flush=True)
    mix = query_mix(students, devices)
    print(f"closed loop, {senders} senders, {requests} queries each run, limit {LIMIT}")
    app, app_s = await run_app(url, senders, mix, requests)
    floor, floor_s = await run_floor(backend, url, senders, mix, requests)
    p99 = report("app", app, app_s)
    report("floor", floor, floor_s)
    by_kind(app, floor)
    print(f"  ({machine()})")
    return p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DEVICECARE_BENCH_PG_URL", PG_DEFAULT),
        help="a PostgreSQL server (asyncpg URL); the benchmark uses its own database there",
    )
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded district")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    over = []
    for backend in backends:
        p99 = asyncio.run(
            bench(backend, args.database_url, args.reuse, args.senders, args.requests)
        )
        if p99 >= TARGET_P99_MS:
            over.append(f"{backend} p99 {p99:.1f} ms")
    print(f"\ntarget p99 < {TARGET_P99_MS:.0f} ms: " + ("; ".join(over) if over else "met"))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
