"""Stripe webhook throughput: signed `checkout.session.*` events posted concurrently.

DeviceCare's web app runs in its own process behind uvicorn (as in production); this process
plays Stripe: `--senders` concurrent clients POST signed events to /webhooks/stripe and time
each answer. About 10 % of the deliveries repeat an event already sent (Stripe retries), and
some checkouts get a second, different event (`async_payment_succeeded` after `completed`).
The webhook keeps each verified event in the outbox and answers; the outbox worker then
applies the kept events (timed separately, one worker in this process). Afterwards the store
is checked: one payment per checkout, every invoice paid exactly what its checkouts paid, one
`payment_events` row per distinct event.

    .venv/bin/python bench/stripe_webhooks.py                    # fresh SQLite file
    .venv/bin/python bench/stripe_webhooks.py --events 2000 --senders 50
    .venv/bin/python bench/stripe_webhooks.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/stripe_webhooks.py --postgres … --web-processes 2

With --postgres the script creates a scratch database on that server and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stripe_fake import (  # noqa: E402
    SECRET_KEY,
    WEBHOOK_SECRET,
    make_event,
    session_object,
    sign,
)

SESSIONS_PER_INVOICE = 3
SESSION_CENTS = 10_000
SECOND_EVENT_SHARE = 0.05  # checkouts that also get async_payment_succeeded
REPLAY_SHARE = 0.10  # deliveries that repeat an event already in the list


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the server (a child process) ----------------------------------------------------------


def serve(port: int, database_url: str) -> None:
    import uvicorn
    from pydantic import SecretStr

    from bot.runtime import build_runtime
    from bot.settings import Settings
    from bot.web.app import create_web_app

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' own keyword
        database_url=database_url,
        secret_key=SecretStr("bench-secret-key"),
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base="http://127.0.0.1:9",  # never called: no Pay button is pressed
        log_level="WARNING",
    )

    async def main() -> None:
        runtime = build_runtime(settings)
        app = create_web_app(runtime)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# --- the district and the events -----------------------------------------------------------


async def prepare(database_url: str, invoices: int) -> list[tuple[int, str]]:
    """Migrate, seed one family per invoice; returns (invoice id, number) pairs."""
    from datetime import UTC, datetime

    from storage import models as m
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.seed import ensure_defaults

    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    made: list[tuple[int, str]] = []
    async with session_factory(engine)() as session:
        await ensure_defaults(session)
        for i in range(invoices):
            student = m.Student(sis_id=f"S-bench-{i}", first_name="Kid", last_name=f"B{i}")
            guardian = m.Guardian(
                first_name="Parent", last_name=f"B{i}", email=f"parent{i}@example.org"
            )
            session.add_all([student, guardian])
            await session.flush()
            session.add(m.Guardianship(guardian_id=guardian.id, student_id=student.id))
            invoice = m.Invoice(
                number=f"INV-B{i:06d}",
                student_id=student.id,
                status="unpaid",
                subtotal_cents=SESSIONS_PER_INVOICE * SESSION_CENTS,
                insurance_cents=0,
                total_cents=SESSIONS_PER_INVOICE * SESSION_CENTS,
                created_at=now,
            )
            session.add(invoice)
            await session.flush()
            made.append((invoice.id, invoice.number))
        await session.commit()
    await engine.dispose()
    return made


def build_events(
    invoices: list[tuple[int, str]], total: int, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`total` deliveries; returns them and each checkout session's invoice."""
    replays = int(total * REPLAY_SHARE)
    originals: list[dict[str, Any]] = []
    session_invoice: dict[str, int] = {}
    sessions = iter(
        (invoice_id, number) for invoice_id, number in invoices for _ in range(SESSIONS_PER_INVOICE)
    )
    while len(originals) < total - replays:
        invoice_id, number = next(sessions)
        session = session_object(
            amount_cents=SESSION_CENTS,
            metadata={"invoice_id": str(invoice_id), "invoice_number": number},
        )
        session_invoice[session["id"]] = invoice_id
        originals.append(make_event("checkout.session.completed", session))
        if rng.random() < SECOND_EVENT_SHARE and len(originals) < total - replays:
            originals.append(make_event("checkout.session.async_payment_succeeded", session))
    deliveries = originals + [rng.choice(originals) for _ in range(replays)]
    rng.shuffle(deliveries)
    return deliveries, session_invoice


# --- load ----------------------------------------------------------------------------------


async def post_all(
    ports: list[int], senders: int, events: list[dict[str, Any]]
) -> tuple[list[float], Counter[str], float]:
    import aiohttp

    # Senders are spread over the web processes, as a load balancer would.
    urls = [f"http://127.0.0.1:{port}/webhooks/stripe" for port in ports]
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    queue = iter(events)
    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def sender(url: str) -> None:
            for event in queue:
                body = json.dumps(event, separators=(",", ":"))
                headers = {
                    "Content-Type": "application/json",
                    # Signed as it is sent, as Stripe does for each delivery attempt.
                    "Stripe-Signature": sign(body, WEBHOOK_SECRET, timestamp=int(time.time())),
                }
                start = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    answer = await response.json()
                    latencies.append((time.perf_counter() - start) * 1000)
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {answer}")
                    outcomes[answer["outcome"]] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender(urls[k % len(urls)]) for k in range(senders)))
        elapsed = time.perf_counter() - started
    return latencies, outcomes, elapsed


async def apply_all(database_url: str) -> tuple[int, float]:
    """Run the outbox worker's Stripe handler until every kept event is applied."""
    from pydantic import SecretStr

    from bot.jobs.worker import OutboxWorker
    from bot.runtime import build_runtime
    from bot.settings import Settings
    from bot.web.stripe_webhooks import outbox_handlers

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' own keyword
        database_url=database_url,
        secret_key=SecretStr("bench-secret-key"),
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    worker = OutboxWorker(runtime.stores, runtime.clock, outbox_handlers(runtime))
    applied = 0
    started = time.perf_counter()
    try:
        while handled := await worker.run_once():
            applied += handled
    finally:
        await runtime.close()
    return applied, time.perf_counter() - started


async def verify(
    database_url: str, events: list[dict[str, Any]], session_invoice: dict[str, int]
) -> list[str]:
    """What went wrong in the store, if anything."""
    from sqlalchemy import func, select

    from storage import models as m
    from storage.db import create_engine, session_factory

    problems: list[str] = []
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        payments = (await session.execute(select(m.Payment))).scalars().all()
        keys = Counter(p.idempotency_key for p in payments)
        if len(payments) != len(session_invoice):
            problems.append(f"{len(payments)} payments for {len(session_invoice)} checkouts")
        doubled = [k for k, n in keys.items() if n > 1]
        if doubled:
            problems.append(f"checkouts paid twice: {doubled[:5]}")
        expected: Counter[int] = Counter()
        for invoice_id in session_invoice.values():
            expected[invoice_id] += SESSION_CENTS
        paid = dict((await session.execute(select(m.Invoice.id, m.Invoice.paid_cents))).all())
        wrong = [i for i, cents in expected.items() if paid.get(i) != cents]
        if wrong:
            problems.append(f"{len(wrong)} invoices with the wrong paid amount")
        event_rows = (
            await session.execute(select(func.count()).select_from(m.PaymentEvent))
        ).scalar_one()
        distinct = len({e["id"] for e in events})
        if event_rows != distinct:
            problems.append(f"{event_rows} payment_events rows for {distinct} distinct events")
    await engine.dispose()
    return problems


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


async def scratch_postgres(server_url: str) -> tuple[str, str]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from storage.db import create_engine

    name = f"devicecare_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), name


async def drop_postgres(server_url: str, name: str) -> None:
    from sqlalchemy import text

    from storage.db import create_engine

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def run(args: argparse.Namespace) -> int:
    scratch: str | None = None
    if args.postgres:
        database_url, scratch = await scratch_postgres(args.postgres)
    else:
        folder = Path(tempfile.mkdtemp(prefix="devicecare-bench-"))
        database_url = f"sqlite+aiosqlite:///{folder}/bench.db"
    rng = random.Random(args.seed)
    invoices_needed = args.events // SESSIONS_PER_INVOICE + 1
    try:
        invoices = await prepare(database_url, invoices_needed)
        events, session_invoice = build_events(invoices, args.events, rng)
        ports = [free_port() for _ in range(args.web_processes)]
        servers = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve", "--port", str(port), "--url", database_url],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for port in ports
        ]
        try:
            for port in ports:
                await wait_ready(port)
            cpu_before = sum(cpu_seconds(server.pid) for server in servers)
            latencies, outcomes, elapsed = await post_all(ports, args.senders, events)
            server_cpu = sum(cpu_seconds(server.pid) for server in servers) - cpu_before
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                server.wait(timeout=20)
        applied, apply_seconds = await apply_all(database_url)
        problems = await verify(database_url, events, session_invoice)
    finally:
        if scratch is not None:
            await drop_postgres(args.postgres, scratch)

    backend = "PostgreSQL" if args.postgres else "SQLite"
    rate = len(events) / elapsed
    print(
        f"{len(events)} webhook deliveries ({len(session_invoice)} checkouts, "
        f"{len({e['id'] for e in events})} distinct events), {args.senders} concurrent senders, "
        f"{args.web_processes} web process(es), {backend}"
    )
    print(
        f"throughput {rate:7.1f} events/s   p50 {percentile(latencies, 50):6.1f} ms   "
        f"p99 {percentile(latencies, 99):6.1f} ms   max {max(latencies):6.1f} ms"
    )
    print(
        f"server CPU {server_cpu / len(events) * 1000:6.2f} ms per event "
        f"({server_cpu / elapsed:.0%} of one core while posting)"
    )
    print(
        f"applied    {applied} kept events by the outbox worker in {apply_seconds:.1f} s "
        f"({applied / max(apply_seconds, 1e-9):.0f} events/s, one worker)"
    )
    print(f"load avg   {os.getloadavg()[0]:.1f} (other work on this machine skews the figures)")
    print("outcomes   " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())))
    if problems:
        print("DUPLICATES OR LOSSES: " + "; ".join(problems))
        return 1
    print(f"verified   one payment per checkout ({len(session_invoice)}), no duplicates")
    verdict = "meets" if rate >= args.target else "MISSES"
    print(f"target     {verdict} {args.target:g} events/s")
    return 0


async def wait_ready(port: int) -> None:
    import aiohttp

    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz"):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} never came up")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="deliveries, replays included")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--postgres", help="asyncpg URL of a server to make a scratch database on")
    parser.add_argument(
        "--web-processes",
        type=int,
        default=1,
        help="web replicas (as the Procfile allows on PostgreSQL); senders are spread over them",
    )
    parser.add_argument("--target", type=float, default=200.0, help="events/s to meet")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.url)
        return
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
