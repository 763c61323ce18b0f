"""Outbox leases: a working worker keeps its rows, a crashed worker's rows come back quickly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.jobs.worker import OutboxWorker
from storage import models as m
from storage.db import session_factory
from storage.outbox import LEASE, claim_batch, settle_sent, write_settled
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_staff
from tests.mail.smtp_server import SmtpServer
from workflows.invoices import InvoiceKind, IssueInvoice, issue_invoice
from workflows.ports import Context, InvoiceLineSpec

TZ = ZoneInfo("America/Chicago")


async def _queue(stores, n: int) -> None:  # type: ignore[no-untyped-def]
    async with stores() as store:
        for i in range(n):
            assert await store.outbox.enqueue("test.note", f"test.note:{i}", {"n": i})
        await store.commit()


async def _rows(engine) -> list[m.OutboxMessage]:  # type: ignore[no-untyped-def]
    async with session_factory(engine)() as session:
        stmt = select(m.OutboxMessage).order_by(m.OutboxMessage.id)
        return list((await session.execute(stmt)).scalars())


async def test_heartbeat_keeps_a_slow_batch_from_other_workers(engine, stores, clock) -> None:
    await _queue(stores, 3)
    sessions = session_factory(engine)
    sent: list[int] = []
    other = OutboxWorker(UnitOfWorkFactory(sessions, clock), clock, {"test.note": lambda p: None})
    stolen: list[int] = []

    async def slow(payload: dict) -> None:  # type: ignore[type-arg]
        if payload["n"] == 0:
            # Most of a lease goes by, a heartbeat renews it, then past the first lease's end.
            clock.advance(seconds=LEASE.total_seconds() * 2 / 3)
            await asyncio.sleep(0.3)
            clock.advance(seconds=LEASE.total_seconds() * 2 / 3)
            stolen.append(await other.run_once())
        sent.append(payload["n"])

    worker = OutboxWorker(
        UnitOfWorkFactory(sessions, clock), clock, {"test.note": slow}, heartbeat_seconds=0.05
    )
    assert await worker.run_once() == 3
    assert stolen == [0], "another worker claimed rows whose lease was being renewed"
    assert sent == [0, 1, 2]
    assert [(r.status, r.attempts) for r in await _rows(engine)] == [("sent", 1)] * 3


async def test_a_worker_whose_lease_lapsed_cannot_settle_rows_claimed_since(
    engine, stores, clock
) -> None:
    await _queue(stores, 2)
    sessions = session_factory(engine)
    async with sessions() as session:
        stale = await claim_batch(session, clock.now(), kinds=frozenset({"test.note"}))
    clock.advance(seconds=LEASE.total_seconds() + 1)
    async with sessions() as session:
        fresh = await claim_batch(session, clock.now(), kinds=frozenset({"test.note"}))
    assert [r.id for r in fresh] == [r.id for r in stale]
    for row in stale:
        settle_sent(row, clock.now())
    async with sessions() as session:
        await write_settled(session, stale)
        await session.commit()
    # The stale worker's "sent" is ignored: the rows belong to the second claim.
    assert [(r.status, r.attempts) for r in await _rows(engine)] == [("pending", 2)] * 2


def _wait(predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def _worker(database_url: str, smtp_port: int, cwd: Path) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "STRIPE_", "DATABASE_URL"))
    }
    env |= {
        "DATABASE_URL": database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "Billing <billing@district.example.org>",
        "SECRET_KEY": "outbox-test-key-0123456789-abcdefghijklmnop",  # mail on: a real key
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def test_a_crashed_workers_notice_is_sent_by_another_worker_within_a_minute(
    database_url, engine, stores, clock, tmp_path
) -> None:
    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await issue_invoice(
            Context(store=store, clock=clock, tz=TZ),
            clerk,
            IssueInvoice(
                student_id=d.student_id,
                kind=InvoiceKind.FEE,
                lines=(InvoiceLineSpec(description="Technology fee", kind="fee", unit_cents=2500),),
                idempotency_key="fee:crash",
            ),
        )
        await store.commit()
    smtp = SmtpServer().start()
    smtp.recorder.delay = 3600  # the first worker hangs in the middle of sending
    first = _worker(database_url, smtp.port, tmp_path)
    second = None
    try:
        _wait(lambda: smtp.connections > 0, 60, "the first worker to start sending")
        await asyncio.sleep(0.5)  # well inside DATA
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        crashed_at = time.monotonic()
        smtp.recorder.delay = 0
        second = _worker(database_url, smtp.port, tmp_path)
        _wait(lambda: len(smtp.messages) >= 1, 90, "the second worker to send")
        delay = time.monotonic() - crashed_at
        print(f"crashed worker's notice resent after {delay:.1f} s (lease {LEASE})")
        assert delay < 60, f"the crashed worker's notice waited {delay:.1f} s"
        for _ in range(100):
            rows = await _rows(engine)
            if all(r.status == "sent" for r in rows):
                break
            await asyncio.sleep(0.1)
        assert [r.status for r in rows] == ["sent"] * len(rows)
        assert len(smtp.messages) == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        smtp.stop()
