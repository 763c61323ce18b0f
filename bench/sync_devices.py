"""Device sync benchmark: 50,000 devices with AppleCare coverage from the Apple School Manager
stand-in, read by the real client and written by the real device sync.

    .venv/bin/python bench/sync_devices.py                      # 50,000 devices, SQLite file
    .venv/bin/python bench/sync_devices.py --devices 5000 --concurrency 16
    .venv/bin/python bench/sync_devices.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/sync_devices.py --read-only          # the client's read alone

The stand-in (tests/sync_standins/apple.py) runs in a child process, as Apple's servers are
another machine: it checks the client assertion, pages the devices 1,000 at a time and answers
one coverage request per device (Macs and iPads have a Limited Warranty, half of them
AppleCare+ as well; Apple TVs have none).

In one run:
1. the read: `AppleSchoolManager.fetch()` (sign-in, every page, every device's coverage with
   the client's bounded concurrency), in devices a second and coverage calls;
2. the floor: the same page and coverage GETs sent with bare httpx (same connection limit and
   concurrency, the same token), parsed with json and nothing else: what the HTTP library and
   the stand-in cost without DeviceCare's retries, checks and mapping;
3. the full sync into an empty store (DeviceSyncJob: read, compare, apply, commit), then a
   rerun with nothing changed from the cursor the first run left (the listing in full, no
   coverage read, since no device changed), which must write nothing (INSERT/UPDATE/DELETE
   statements are counted).
Targets: full sync under 2 minutes, no-change rerun under 20 s with no writes.

With --postgres the script creates a scratch database on that server and drops it at the end;
the SQLite file is a temporary one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from bot.sync.apple import AppleSchoolManager  # noqa: E402
from tests.sync_standins.apple import CLIENT_ID, KEY_ID, new_key  # noqa: E402

FULL_SYNC_TARGET = 120.0
RERUN_TARGET = 20.0


# --- the stand-in (a child process) --------------------------------------------------------


class StandIn:
    def __init__(self, devices: int, public_pem: bytes) -> None:
        self._key_file = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)
        self._key_file.write(public_pem)
        self._key_file.close()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.sync_standins.apple",
                "--devices",
                str(devices),
                "--public-key",
                self._key_file.name,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"the stand-in didn't start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        Path(self._key_file.name).unlink(missing_ok=True)


# --- 1. the client's read ------------------------------------------------------------------


def client(args: argparse.Namespace, base_url: str, key: Any) -> AppleSchoolManager:
    return AppleSchoolManager(
        client_id=CLIENT_ID,
        key_id=KEY_ID,
        private_key=key,
        api_url=base_url,
        token_url=f"{base_url}/auth/oauth2/token",
        concurrency=args.concurrency,
        page_size=args.page_size,
    )


async def timed_read(source: AppleSchoolManager) -> float:
    started = time.perf_counter()
    snapshot = await source.fetch()
    seconds = time.perf_counter() - started
    stats = source.stats
    covered = sum(1 for d in snapshot.devices if d.coverages)
    print(
        f"read: {len(snapshot.devices):,} devices in {seconds:.1f} s "
        f"({len(snapshot.devices) / seconds:,.0f} devices/s); {stats.pages} pages, "
        f"{stats.coverage_requests:,} coverage calls ({stats.coverage_requests / seconds:,.0f}/s), "
        f"{stats.token_requests} token request(s); {covered:,} devices with coverage"
    )
    return seconds


# --- 2. the floor: bare httpx --------------------------------------------------------------


async def floor(args: argparse.Namespace, base_url: str, token: str) -> float:
    """The same GETs with httpx alone: pages in turn while workers read coverage."""
    limits = httpx.Limits(
        max_connections=args.concurrency + 2, max_keepalive_connections=args.concurrency + 2
    )
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    queue: asyncio.Queue[str | None] = asyncio.Queue(args.page_size * 2)
    calls = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as http:

        async def pages() -> None:
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": args.page_size}
                if cursor:
                    params["cursor"] = cursor
                body = json.loads(
                    (await http.get(f"{base_url}/v1/orgDevices", params=params)).content
                )
                for item in body["data"]:
                    await queue.put(item["id"])
                cursor = body["meta"]["paging"].get("nextCursor")
                if not cursor:
                    break
            for _ in range(args.concurrency):
                await queue.put(None)

        async def worker() -> None:
            nonlocal calls
            while (device_id := await queue.get()) is not None:
                url = f"{base_url}/v1/orgDevices/{device_id}/appleCareCoverage"
                json.loads((await http.get(url)).content)
                calls += 1

        await asyncio.gather(pages(), *(worker() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    print(f"floor, bare httpx GETs of the same pages and {calls:,} coverage calls: {seconds:.1f} s")
    return seconds


# --- 3. the sync into the store ------------------------------------------------------------


async def prepare_database(args: argparse.Namespace) -> tuple[str, Any]:
    """A migrated scratch database; returns its URL and a function that drops it."""
    from storage.migrate import upgrade

    if args.postgres:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        from storage.db import create_engine

        name = f"devicecare_bench_sync_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)

        async def drop() -> None:
            engine = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            async with engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await engine.dispose()

    else:
        folder = tempfile.mkdtemp(prefix="devicecare_bench_sync_")
        url = f"sqlite+aiosqlite:///{folder}/sync.db"

        async def drop() -> None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    await asyncio.to_thread(upgrade, url)
    return url, drop


async def timed_sync(
    job: Any,
    database_url: str,
    cursor: str | None,
    *,
    label: str,
    target: float,
    must_not_write: bool,
) -> str | None:
    """One run as the runner makes it (read from the last cursor, compare, apply, commit);
    returns the cursor the runner would keep."""
    from sqlalchemy import event

    from storage.db import create_engine, session_factory
    from workflows.clock import SystemClock

    engine = create_engine(database_url)
    writes = 0

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        nonlocal writes
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    now = SystemClock().now()
    try:
        started = time.perf_counter()
        snapshot = await job.read(cursor)
        read_s = time.perf_counter() - started
        async with session_factory(engine)() as session:
            mark = time.perf_counter()
            plan = await job.compare(session, snapshot, now)
            compare_s = time.perf_counter() - mark
            mark = time.perf_counter()
            if plan.changes:
                await job.apply(session, snapshot, plan, now)
            await session.commit()
            apply_s = time.perf_counter() - mark
        total = time.perf_counter() - started
    finally:
        await engine.dispose()
    counts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(plan.counts.items()))
    verdict = "met" if total < target and not (must_not_write and writes) else "MISSED"
    print(
        f"{label}: {total:.1f} s (read {read_s:.1f}, compare {compare_s:.1f}, apply and commit "
        f"{apply_s:.1f}); {counts or 'nothing'}; {writes:,} writing statements; target "
        f"{target:.0f} s{' with no writes' if must_not_write else ''}: {verdict}"
    )
    return snapshot.cursor


# --- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    key = new_key()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    standin = StandIn(args.devices, public_pem)
    print(
        f"{args.devices:,} devices from the stand-in at {standin.base_url}; "
        f"{args.page_size} a page, {args.concurrency} coverage calls at once"
    )
    try:
        source = client(args, standin.base_url, key)
        await timed_read(source)
        async with httpx.AsyncClient() as http:
            token = await source.token.get(http)  # still fresh: the same sign-in as the read
        await floor(args, standin.base_url, token)
        if args.read_only:
            print("--read-only: the store was not touched")
            return 0

        # ---- the storage side: compare and apply, timed when the device sync exists --------
        try:
            device_sync = importlib.import_module("storage.device_sync")
        except ImportError:
            print("storage/device_sync.py is not in this checkout: only the read was timed")
            return 0
        database_url, drop = await prepare_database(args)
        try:
            job = device_sync.DeviceSyncJob(client(args, standin.base_url, key))
            cursor = await timed_sync(
                job,
                database_url,
                None,
                label="full sync",
                target=FULL_SYNC_TARGET,
                must_not_write=False,
            )
            # The next night, from the cursor the runner kept: the listing in full, coverage
            # only for devices Apple shows as changed (none here).
            await timed_sync(
                job,
                database_url,
                cursor,
                label="no-change rerun",
                target=RERUN_TARGET,
                must_not_write=True,
            )
        finally:
            await drop()
    finally:
        standin.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8, help="coverage calls at once")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server for the store")
    parser.add_argument("--read-only", action="store_true", help="time the read and the floor")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
