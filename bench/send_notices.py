"""Notice delivery benchmark: the real outbox worker against bare aiosmtplib.

    .venv/bin/python bench/send_notices.py [--notices 1000] [--rounds 3] [--batch-size 50]
                                           [--server process|thread] [--database-url URL]

It fills a fresh SQLite file (or an empty database named by --database-url, migrated first)
with N invoices, each with its guardian's invoice notice queued by `storage.notices.queue_notice`
(half of them with an insurance snapshot, so the audit lines are rendered). A local aiosmtpd
server that accepts and counts messages runs in its own process (or, with --server thread, in a
thread of this one). Each round:

1. worker: `OutboxWorker` with the `email.notice` handler (`bot.mail.sender`) drains the outbox:
   claim, load, render, write the message, send over one SMTP connection, commit;
2. bare: the same N messages, rendered and built before the clock starts, are sent with bare
   aiosmtplib `send_message` on one connection (aiosmtplib flattens each one, as it would for
   any application handing it EmailMessages);
3. bytes: the same messages flattened before the clock starts, sent with `sendmail`: the floor
   (nothing but the SMTP conversation), printed for reference.

Between rounds the notices and their outbox rows are put back to queued. It prints
messages/second for both, and their ratio; the exit status is non-zero if any message was lost
or sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from bot.jobs.worker import COMMIT_EVERY, OutboxWorker
from bot.mail.sender import NoticeSender, flatten, notice_handlers
from bot.settings import Settings
from storage import models as m
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.notice_queries import load_notices
from storage.notices import NOTICE_KIND, queue_notice
from storage.seed import ensure_defaults
from storage.uow import UnitOfWorkFactory
from workflows.clock import SystemClock

FROM = "billing@bench.example.org"
GIVEN = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jon", "Kai"]
FAMILY = ["Rivera", "Chen", "Patel", "Okafor", "Novak", "Silva", "Kim", "Haddad", "Berg", "Ito"]


# --- the SMTP server ------------------------------------------------------------------------


class Counter:
    """aiosmtpd handler: accept everything, count messages and distinct Message-IDs."""

    def __init__(self, shared: Any = None) -> None:
        self.shared = shared
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.shared is not None:
            with self.shared.get_lock():
                self.shared.value += 1
        else:
            self.count += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, shared: Any, ready: Any, stop: Any) -> None:
    controller = Controller(Counter(shared), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Server:
    def __init__(self, mode: str) -> None:
        self.port = _free_port()
        self.mode = mode
        if mode == "process":
            ctx = multiprocessing.get_context("spawn")
            self._shared = ctx.Value("i", 0)
            self._stop = ctx.Event()
            ready = ctx.Event()
            self._process = ctx.Process(
                target=_serve, args=(self.port, self._shared, ready, self._stop), daemon=True
            )
            self._process.start()
            if not ready.wait(30):
                raise RuntimeError("the SMTP server did not start")
        else:
            self._counter = Counter()
            self._controller = Controller(self._counter, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    @property
    def received(self) -> int:
        if self.mode == "process":
            return int(self._shared.value)
        return self._counter.count

    def close(self) -> None:
        if self.mode == "process":
            self._stop.set()
            self._process.join(10)
        else:
            self._controller.stop()


# --- the data -------------------------------------------------------------------------------


async def fill(url: str, n: int, now: datetime) -> None:
    """N students with one guardian each, one invoice each, and its notice queued."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s:
        await ensure_defaults(s)
        settings = await s.get(m.DistrictSettings, 1)
        assert settings is not None
        settings.district_name = "Lincoln Unified School District"
        # Every fact set, so each email renders its check address and office lines.
        settings.check_mailing_address = "Business Office\n200 Elm St\nLincoln, NE 68508"
        settings.office_phone = "(555) 010-2030"
        settings.office_hours = "Mon-Fri 8:00-4:00"
        settings.office_email = "billing@lincoln.example"
        students = [
            m.Student(
                sis_id=f"S{i:05d}",
                first_name=GIVEN[i % len(GIVEN)],
                last_name=FAMILY[i % len(FAMILY)],
                grade="7",
            )
            for i in range(n)
        ]
        guardians = [
            m.Guardian(
                sis_id=f"G{i:05d}",
                first_name=GIVEN[(i + 3) % len(GIVEN)],
                last_name=FAMILY[i % len(FAMILY)],
                email=f"guardian{i:05d}@families.example.org",
                preferred_language="es" if i % 10 == 0 else "en",
            )
            for i in range(n)
        ]
        device = m.Device(serial="BENCH0001", model="HP Chromebook 11 G9", created_at=now)
        s.add_all([*students, *guardians, device])
        await s.flush()
        s.add_all(
            m.Guardianship(guardian_id=g.id, student_id=st.id)
            for g, st in zip(guardians, students, strict=True)
        )
        invoices = []
        for i, st in enumerate(students):
            insured = i % 2 == 0
            invoice = m.Invoice(
                number=f"INV-{i + 1:06d}",
                student_id=st.id,
                device_id=device.id,
                status="unpaid",
                subtotal_cents=12500,
                insurance_cents=9600 if insured else 0,
                total_cents=2900 if insured else 12500,
                paid_cents=0,
                due_date=date(2026, 5, 31),
                insurance_snapshot=(
                    {
                        "policy_name": "AppleCare+",
                        "term_label": "2025-2026",
                        "coverage_applied": True,
                        "cap_reached": False,
                        "override_applied": False,
                        "claim_number": 1,
                        "max_claims": 2,
                    }
                    if insured
                    else None
                ),
                created_at=now,
            )
            invoice.lines = [
                m.InvoiceLine(position=1, description="Screen replacement", kind="part",
                              quantity=1, unit_cents=12500, amount_cents=12500)
            ]  # fmt: skip
            invoices.append(invoice)
        s.add_all(invoices)
        await s.flush()
        for invoice in invoices:
            await queue_notice(
                s,
                now,
                template="invoice_issued",
                invoice_id=invoice.id,
                dedupe_key=f"invoice-issued:{invoice.id}",
                context={},
                mail_domain="bench.example.org",
            )
        await s.commit()
    await engine.dispose()


async def requeue(url: str, now: datetime) -> None:
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        await s.execute(update(m.Notice).values(status="queued", sent_at=None, last_error=None))
        await s.execute(
            update(m.OutboxMessage)
            .where(m.OutboxMessage.kind == NOTICE_KIND)
            .values(status="pending", attempts=0, next_attempt_at=now, sent_at=None)
        )
        await s.commit()
    await engine.dispose()


async def sent_count(url: str) -> int:
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        stmt = select(func.count()).select_from(m.Notice).where(m.Notice.status == "sent")
        count = int((await s.execute(stmt)).scalar_one())
    await engine.dispose()
    return count


# --- the two runs ---------------------------------------------------------------------------


async def run_worker(
    url: str, settings: Settings, batch_size: int, commit_every: int
) -> tuple[float, float]:
    engine = create_engine(url)
    clock = SystemClock()
    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock),
        clock,
        notice_handlers(settings, clock),
        batch_size=batch_size,
        commit_every=commit_every,
    )
    start, cpu = time.perf_counter(), time.process_time()
    while await worker.run_once():
        pass
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await worker.close()
    await engine.dispose()
    return elapsed, cpu


async def prerender(url: str, settings: Settings) -> list[tuple[EmailMessage, str]]:
    """The same messages the worker sends, rendered and built up front."""
    engine = create_engine(url)
    sender = NoticeSender.from_settings(settings, SystemClock())
    now = datetime.now(UTC)
    async with session_factory(engine)() as s:
        ids = list((await s.execute(select(m.Notice.id).order_by(m.Notice.id))).scalars())
        loaded = await load_notices(s, ids)
    await engine.dispose()
    messages = []
    for notice_id in ids:
        data = loaded[notice_id]
        message = sender.message(data, sender.render(data, now), now)
        messages.append((message, data.notice.to_address))
    return messages


async def run_bare(
    port: int, messages: list[tuple[EmailMessage, str]] | list[tuple[bytes, str]]
) -> tuple[float, float]:
    """EmailMessages go through `send_message` (aiosmtplib flattens them); bytes through
    `sendmail` as they are."""
    start, cpu = time.perf_counter(), time.process_time()
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    for message, to in messages:
        if isinstance(message, bytes):
            await smtp.sendmail(FROM, [to], message)
        else:
            await smtp.send_message(message, sender=FROM, recipients=[to])
    await smtp.quit()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--commit-every", type=int, default=COMMIT_EVERY)
    parser.add_argument("--server", choices=["process", "thread"], default="process")
    parser.add_argument("--database-url", help="an empty database (default: fresh SQLite)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        now = datetime.now(UTC) - timedelta(seconds=1)
        t0 = time.perf_counter()
        asyncio.run(fill(url, args.notices, now))
        backend = url.split(":")[0]
        print(f"queued {args.notices} notices in {time.perf_counter() - t0:.1f} s ({backend})")

        server = Server(args.server)
        values: dict[str, Any] = {
            "_env_file": None,
            "database_url": url,
            "smtp_host": "127.0.0.1",
            "smtp_port": server.port,
            "smtp_security": "none",
            "smtp_from": FROM,
            "secret_key": "bench-secret",
        }
        settings = Settings(**values)
        messages = asyncio.run(prerender(url, settings))
        flattened = [(flatten(message), to) for message, to in messages]
        worker_rates: list[float] = []
        bare_rates: list[float] = []
        worker_cpus: list[float] = []
        bare_cpus: list[float] = []
        raw_rates: list[float] = []
        ok = True
        try:
            for round_no in range(1, args.rounds + 1):
                if round_no > 1:
                    asyncio.run(requeue(url, datetime.now(UTC) - timedelta(seconds=1)))
                before = server.received
                worker_s, worker_cpu = asyncio.run(
                    run_worker(url, settings, args.batch_size, args.commit_every)
                )
                delivered = server.received - before
                sent = asyncio.run(sent_count(url))
                before = server.received
                bare_s, bare_cpu = asyncio.run(run_bare(server.port, messages))
                bare_delivered = server.received - before
                before = server.received
                raw_s, _ = asyncio.run(run_bare(server.port, flattened))
                if server.received - before != args.notices:
                    ok = False
                raw_rates.append(args.notices / raw_s)
                if delivered != args.notices or sent != args.notices:
                    ok = False
                if bare_delivered != args.notices:
                    ok = False
                worker_rates.append(args.notices / worker_s)
                bare_rates.append(args.notices / bare_s)
                worker_cpus.append(worker_cpu / args.notices * 1000)
                bare_cpus.append(bare_cpu / args.notices * 1000)
                print(
                    f"round {round_no}: worker {worker_s:.2f} s ({worker_rates[-1]:.0f}/s, "
                    f"{worker_cpus[-1]:.2f} ms CPU/msg, {delivered} received, {sent} marked "
                    f"sent) | bare {bare_s:.2f} s ({bare_rates[-1]:.0f}/s, "
                    f"{bare_cpus[-1]:.2f} ms CPU/msg, {bare_delivered} received) | bytes "
                    f"{raw_s:.2f} s ({raw_rates[-1]:.0f}/s)"
                )
        finally:
            server.close()

    worker_rate = statistics.median(worker_rates)
    bare_rate = statistics.median(bare_rates)
    ratio = bare_rate / worker_rate
    print(
        f"median over {args.rounds} rounds, SMTP server in a {args.server}, "
        f"batch size {args.batch_size}, commit every {args.commit_every}:"
    )
    print(
        f"  worker (render + send + commit): {worker_rate:7.0f} messages/s  (target >= 200), "
        f"{statistics.median(worker_cpus):.2f} ms CPU each"
    )
    print(
        f"  bare aiosmtplib, pre-rendered:   {bare_rate:7.0f} messages/s, "
        f"{statistics.median(bare_cpus):.2f} ms CPU each"
    )
    print(f"  ratio bare / worker:             {ratio:7.2f}x  (target <= 1.5)")
    raw_rate = statistics.median(raw_rates)
    print(
        f"  bare aiosmtplib, pre-flattened bytes (sendmail): {raw_rate:.0f} messages/s, "
        f"ratio {raw_rate / worker_rate:.2f}x"
    )
    if not ok:
        print("MISMATCH: a message was lost or sent twice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
