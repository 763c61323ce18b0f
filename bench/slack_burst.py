"""A Monday-morning burst on the Slack app: 100 senders in a closed loop against a big district.

    .venv/bin/python bench/slack_burst.py --backend sqlite     [--senders 100] [--requests 3000]
    .venv/bin/python bench/slack_burst.py --backend postgres   [--database-url URL]
    BENCH_PROFILE=/tmp/ours.txt .venv/bin/python bench/slack_burst.py ...   # py-spy our server

The district is bench/device_search.py's: 60,000 students holding 100,000 devices (loaded with
the drivers' bulk paths), plus one technician and an open incident for every status change the
run sends. Our web app (uvicorn, the same code as `devicecare web`), a bare bolt app that only
acks, and the fake Slack Web API run in child processes (bench/slack_ack.py's servers).

`--senders` clients each fire their next request the moment the last is answered, drawing
from one shuffled mix of thirds: `/incident` (our app acks, then opens the modal), the status
modal's submission (checked before the ack, written after it) and the device type-ahead
(block_suggestion, answered with up to 100 matches; the queries are device_search's mix of
what technicians type, including no-match ones). The same requests go to our app, then to the
bare app, in the same run.
Target: p99 ack at most 2x bare bolt's and throughput at least half of bare bolt's.

Also printed, as they vary less with other load on the machine than latency does: each
server's CPU time per request (user + system, all its threads, from /proc), and how long after
our last ack the status changes, written after their acks, were all in the database (our CPU
figure includes that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import device_search as ds  # noqa: E402
import slack_ack as ack  # noqa: E402

Request = tuple[str, bytes, dict[str, str]]
WARM_UP = 60
KINDS = ("/incident", "status change", "type-ahead")


async def prepare(backend: str, server_url: str, changes: int) -> tuple[str, list[int]]:
    """A fresh district database: migrated, bulk loaded, a technician and `changes` incidents."""
    # Its own database, so a run never consumes device_search's kept district.
    ds.SQLITE_PATH = Path(tempfile.gettempdir()) / "devicecare_bench_burst.db"
    ds.PG_DATABASE = "devicecare_bench_burst"
    url, _ = await ds.prepare(backend, server_url, reuse=False)
    started = time.perf_counter()
    await asyncio.to_thread(ds.upgrade, url)
    students, devices = ds.district()
    if backend == "sqlite":
        await asyncio.to_thread(ds.load_sqlite, students, devices)
    else:
        await ds.load_postgres(url, students, devices)
    incidents = await seed(url, changes)
    print(
        f"district: {len(students):,} students, {len(devices):,} devices, {changes} open "
        f"incidents, loaded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return url, incidents


async def seed(url: str, count: int) -> list[int]:
    from zoneinfo import ZoneInfo

    from storage import models as m
    from storage.db import create_engine, session_factory
    from storage.seed import ensure_defaults
    from storage.uow import UnitOfWorkFactory
    from tests.builders import add_district, add_staff
    from workflows.clock import SystemClock
    from workflows.incidents import OpenIncident, open_incident
    from workflows.ports import Context

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            await ensure_defaults(session)
            await session.commit()
        stores = UnitOfWorkFactory(session_factory(engine), SystemClock())
        await add_district(stores)  # the fee items the incidents' flags name
        tech = await add_staff(stores, "Admin", "bench.admin@district.org")
        async with stores() as store:
            staff = await store.session.get(m.Staff, tech.staff_id)
            assert staff is not None
            staff.slack_user_id = "U_BENCH"
            await store.commit()
        today = datetime.now(ZoneInfo("America/Chicago")).date()
        ids = []
        for i in range(count):
            async with stores() as store:
                opened = await open_incident(
                    Context(store, SystemClock(), ZoneInfo("America/Chicago")),
                    tech,
                    OpenIncident(
                        device_id=i + 1,  # held by student i + 1
                        occurred_on=today,  # the district's date, not the machine's
                        flags=("screen",),
                        idempotency_key=f"burst-{i}",
                    ),
                )
                ids.append(opened.incident.id)
                await store.commit()
        return ids
    finally:
        await engine.dispose()


def suggestion(query: str) -> dict[str, Any]:
    return {
        "type": "block_suggestion",
        "user": {"id": "U_BENCH"},
        "action_id": ack.DEVICE_ACTION,
        "block_id": ack.DEVICE_ACTION,
        "value": query,
        "view": {"id": "V_BENCH_NEW", "callback_id": "incident.new", "type": "modal"},
    }


def requests(incidents: list[int], count: int, seed: int) -> list[Request]:
    """`count` requests, a third of each kind, shuffled; one status change per incident."""
    students, devices = ds.district()
    queries = [q for _, q in ds.query_mix(students, devices)]
    out: list[Request] = []
    for i in range(count):
        kind = KINDS[i % 3]
        if kind == "/incident":
            body, headers = ack.command_request()
        elif kind == "status change":
            body, headers = ack.interaction_request(ack.status_submission(incidents.pop()))
        else:
            body, headers = ack.interaction_request(suggestion(queries[i % len(queries)]))
        out.append((kind, body, headers))
    random.Random(seed).shuffle(out)
    return out


async def closed_loop(
    port: int, senders: int, batch: list[Request]
) -> tuple[list[tuple[str, float]], float]:
    """(kind, ms) per request, and the wall time: each sender fires again once answered."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/slack/events"
    timed: list[tuple[str, float]] = []
    failed: dict[str, int] = {}
    queue = iter(batch)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders)) as session:

        async def sender() -> None:
            for kind, body, headers in queue:
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    # Bolt answers 404 when a listener hasn't acked within 3 s: Slack would
                    # show the user an error. Counted, and timed like the rest.
                    if response.status != 200:
                        failed[kind] = failed.get(kind, 0) + 1
                timed.append((kind, (time.perf_counter() - start) * 1000))

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        seconds = time.perf_counter() - started
    if failed:
        print(f"  not acked within 3 s (port {port}): {failed}")
    return timed, seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def changes_written(url: str, expected: int, stalled: float = 15.0) -> tuple[float, int]:
    """Seconds until `expected` incidents are In Repair (the status changes, written after
    their acks, are all done), and how many are: it stops waiting once `stalled` seconds pass
    with none written (a change that failed is never written)."""
    from sqlalchemy import text

    from storage.db import create_engine

    engine = create_engine(url)
    started = last_progress = time.perf_counter()
    written = -1
    try:
        while time.perf_counter() - last_progress < stalled:
            async with engine.connect() as conn:
                sql = "SELECT count(*) FROM incidents WHERE status = 'in_repair'"
                count = (await conn.execute(text(sql))).scalar_one()
            if count != written:
                written, last_progress = count, time.perf_counter()
            if written >= expected:
                break
            await asyncio.sleep(0.05)
        return last_progress - started, written
    finally:
        await engine.dispose()


def pct(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return q[49], q[94], q[98]


def report(
    ours: tuple[list[tuple[str, float]], float], bare: tuple[list[tuple[str, float]], float]
) -> bool:
    print(f"{'':16}{'ours p50 / p95 / p99 ms':>28}{'bare p50 / p95 / p99 ms':>28}{'p99 ratio':>11}")
    for kind in (*KINDS, "all"):
        if not any(kind in (k, "all") for k, _ in ours[0]):
            continue
        row = []
        for timed, _ in (ours, bare):
            row.append(pct([ms for k, ms in timed if kind in (k, "all")]))
        (o50, o95, o99), (b50, b95, b99) = row
        print(
            f"{kind:16}{o50:10.1f} /{o95:7.1f} /{o99:7.1f}{b50:10.1f} /{b95:7.1f} /{b99:7.1f}"
            f"{o99 / b99:10.2f}x"
        )
    ours_rate, bare_rate = len(ours[0]) / ours[1], len(bare[0]) / bare[1]
    all_ours, all_bare = pct([ms for _, ms in ours[0]])[2], pct([ms for _, ms in bare[0]])[2]
    print(
        f"throughput      ours {ours_rate:7.1f} req/s   bare {bare_rate:7.1f} req/s"
        f"   ratio {ours_rate / bare_rate:4.2f}"
    )
    met = all_ours <= 2 * all_bare and ours_rate >= bare_rate / 2
    print(
        f"target (p99 <= 2x bare, throughput >= half of bare): {'met' if met else 'MISSED'}"
        f"  (p99 {all_ours / all_bare:.2f}x, throughput {ours_rate / bare_rate:.2f}x)"
    )
    return met


async def run(args: argparse.Namespace) -> bool:
    print(f"== {args.backend}, {args.senders} senders, {args.requests} requests ({ds.machine()})")
    changes = args.requests // 3 + WARM_UP
    url, incidents = await prepare(args.backend, args.database_url, changes)
    warm = requests(incidents[:WARM_UP], WARM_UP * 3, seed=1)
    # Each status change needs its own open incident; the bare app writes nothing, so it gets
    # the same requests (signed afresh would change nothing it does).
    batch = requests(incidents[WARM_UP:], args.requests, seed=2)
    if args.only:
        batch = [r for r in batch if r[0] == args.only]
    sent_changes = sum(1 for kind, _, _ in batch if kind == "status change")
    fake_port, ours_port, bare_port = ack.free_port(), ack.free_port(), ack.free_port()
    api_url = f"http://127.0.0.1:{fake_port}/api/"
    servers = [
        ack.start("--serve", "fake", "--port", str(fake_port)),
        ack.start(
            "--serve",
            "ours",
            "--port",
            str(ours_port),
            "--database-url",
            url,
            "--api-url",
            api_url,
        ),
        ack.start("--serve", "bare", "--port", str(bare_port), "--api-url", api_url),
    ]
    try:
        for port in (fake_port, ours_port, bare_port):
            await ack.wait_ready(port)
        await closed_loop(ours_port, 10, warm)
        await closed_loop(bare_port, 10, warm)
        written = await changes_written(url, WARM_UP)
        sampler = ack.profile(servers[1].pid)
        ours_cpu = cpu_seconds(servers[1].pid)
        ours = await closed_loop(ours_port, args.senders, batch)
        drained = await changes_written(url, WARM_UP + sent_changes)
        ours_cpu = cpu_seconds(servers[1].pid) - ours_cpu
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(timeout=60)
        bare_cpu = cpu_seconds(servers[2].pid)
        bare = await closed_loop(bare_port, args.senders, batch)
        bare_cpu = cpu_seconds(servers[2].pid) - bare_cpu
        met = report(ours, bare)
        n = len(batch)
        print(
            f"server CPU      ours {ours_cpu * 1000 / n:5.2f} ms/req   bare "
            f"{bare_cpu * 1000 / n:5.2f} ms/req   ratio {ours_cpu / bare_cpu:4.1f}x"
        )
        done, count = drained
        print(
            f"status changes  {count - written[1]} of {sent_changes} written, the last "
            f"{done:.1f} s after the last ack"
        )
        print(f"  ({ds.machine()})")
        return met
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DEVICECARE_BENCH_PG_URL", ds.PG_DEFAULT),
        help="a PostgreSQL server (asyncpg URL); the benchmark uses its own database there",
    )
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--only", choices=KINDS, help="send only this kind (a third of --requests) to see its cost"
    )
    args = parser.parse_args(argv)
    return 0 if asyncio.run(run(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
