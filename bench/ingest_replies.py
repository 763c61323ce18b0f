"""Reply ingest benchmark: 1,000 parents' emails in a private Dovecot, read by the IMAP reader.

    .venv/bin/python bench/ingest_replies.py [--replies 1000] [--families 50] [--rounds 3]
                                             [--database-url URL] [--profile FILE]

It starts a private Dovecot (tests/mail/dovecot.py: Debian's packages, installed first when
missing and running as root), fills a fresh SQLite file (or an empty database named by
--database-url, migrated first) with N families, each with an invoice whose notice went out,
and APPENDs the replies to a new folder. The mix is what a billing mailbox sees: questions
routed by the signed Reply-To token, payment reports (a pending payment and the family's
acknowledgement), replies routed by In-Reply-To or by the invoice number in the subject,
out-of-office auto-replies and mail about nothing known.

Each round times `ImapReader.run_once()` into a fresh copy of the filled database: log in,
UID SEARCH, fetch in batches, parse, route, store (one transaction per fetched batch, raw bytes
in the blob store), flag the messages on the server and move the reader's position. It prints
messages/second; the exit status is non-zero if a reply is missing or stored twice, or if the
rate is under the 100/s target.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bot.mail.ingest import Ingestor  # noqa: E402
from bot.mail.reader import ImapReader, ReaderConfig  # noqa: E402
from bot.mail.tokens import make_reply_token, reply_address  # noqa: E402
from bot.runtime import build_runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage import models as m  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.seed import ensure_defaults  # noqa: E402
from storage.uow import UnitOfWorkFactory  # noqa: E402
from tests.mail.dovecot import Dovecot, start_dovecot  # noqa: E402
from workflows.clock import FixedClock  # noqa: E402
from workflows.incidents import OpenIncident, open_incident  # noqa: E402
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident  # noqa: E402
from workflows.permissions import Actor  # noqa: E402
from workflows.ports import Context  # noqa: E402

SECRET = "bench-secret"
REPLY_BASE = "billing@bench.example.org"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TARGET = 100.0
GIVEN = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jon", "Kai"]
FAMILY = ["Rivera", "Chen", "Patel", "Okafor", "Novak", "Silva", "Kim", "Haddad", "Berg", "Ito"]


def _family(i: int) -> tuple[str, str, str]:
    first, last = GIVEN[i % len(GIVEN)], FAMILY[(i // len(GIVEN)) % len(FAMILY)]
    return first, last, f"{first.lower()}.{last.lower()}.{i}@families.example.org"


async def fill(url: str, families: int) -> list[dict[str, object]]:
    """Families with an invoice each and its notice sent; returns what the replies need."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = FixedClock(NOW)
    stores = UnitOfWorkFactory(sessions, clock)
    async with sessions() as session:
        await ensure_defaults(session)
        await session.commit()
    admin = Actor.system("bench")
    found: list[dict[str, object]] = []
    for i in range(families):
        first, last, address = _family(i)
        async with stores() as store:
            s = store.session
            household = m.Household(name=f"{last} family")
            s.add(household)
            await s.flush()
            student = m.Student(sis_id=f"S{i}", first_name="Kid", last_name=last,
                                household_id=household.id)  # fmt: skip
            guardian = m.Guardian(first_name=first, last_name=last, email=address,
                                  household_id=household.id)  # fmt: skip
            device = m.Device(serial=f"BENCH{i:05d}", model="HP Chromebook 11 G9", created_at=NOW)
            s.add_all([student, guardian, device])
            await s.flush()
            s.add(m.Guardianship(guardian_id=guardian.id, student_id=student.id))
            s.add(m.DeviceAssignment(device_id=device.id, student_id=student.id,
                                     assigned_at=datetime(2025, 8, 1, tzinfo=UTC)))  # fmt: skip
            await s.flush()
            ctx = Context(store, clock, Settings(_env_file=None).tz)
            opened = await open_incident(
                ctx, admin, OpenIncident(device_id=device.id, occurred_on=date(2026, 2, 20),
                                         flags=("screen",))
            )  # fmt: skip
            created = await create_invoice_for_incident(
                ctx, admin, CreateInvoice(incident_id=opened.incident.id,
                                          custom_lines=(CustomLine("Screen", 12500),))
            )  # fmt: skip
            notice = (
                await s.execute(select(m.Notice).where(m.Notice.invoice_id == created.invoice.id))
            ).scalar_one()
            notice.status, notice.sent_at = "sent", NOW
            token = make_reply_token(created.invoice.id, notice.id, SECRET)
            found.append(
                {
                    "name": f"{first} {last}",
                    "address": address,
                    "reply_to": reply_address(REPLY_BASE, token),
                    "message_id": notice.message_id,
                    "number": created.invoice.number,
                }
            )
            await store.commit()
    await engine.dispose()
    return found


def replies(families: list[dict[str, object]], count: int) -> list[bytes]:
    """The mailbox: mostly routed replies, some payments, auto-replies and unknown mail."""
    out: list[bytes] = []
    for i in range(count):
        f = families[i % len(families)]
        kind = i % 20
        to, subject, extra = str(f["reply_to"]), f"Re: Invoice {f['number']}", ""
        body = f"Hello, could you tell me what the charge {i} on the invoice is for?"
        if kind < 4:
            body = f"I mailed check #{1000 + i} for $25 on Monday."
        elif kind == 4:
            body = "We paid $10 cash at the front office today."
        elif kind in (5, 6):
            to, extra = REPLY_BASE, f"In-Reply-To: {f['message_id']}\r\n"
        elif kind == 7:
            to = REPLY_BASE
        elif kind == 8:
            extra, subject = "Auto-Submitted: auto-replied\r\n", "Out of office"
            body = "I am away this week and will reply when I am back."
        elif kind == 9:
            to, subject, body = REPLY_BASE, "Hello", "Is the school open on Friday?"
        quoted = "\r\n".join(f"> line {n} of the original notice" for n in range(12))
        out.append(
            (
                f"From: {f['name']} <{f['address']}>\r\n"
                f"To: {to}\r\n"
                f"Subject: {subject}\r\n"
                "Date: Mon, 02 Mar 2026 09:15:00 -0600\r\n"
                f"Message-ID: <bench-{i}-{time.time_ns()}@families.example.org>\r\n"
                f"{extra}"
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "\r\n"
                f"{body}\r\n\r\n"
                f"On Mon, Mar 2, 2026 at 9:00 AM Billing <{REPLY_BASE}> wrote:\r\n{quoted}\r\n"
            ).encode()
        )
    return out


async def ingest_round(url: str, blob_dir: Path, server: Dovecot, mailbox: str) -> float:
    settings = Settings(
        _env_file=None,
        database_url=url,
        blob_dir=blob_dir,
        secret_key=SECRET,
        imap_host=server.host,
        imap_port=server.imap_port,
        imap_username=server.user,
        imap_password=server.password,
        imap_security="none",
        imap_mailbox=mailbox,
    )
    runtime = build_runtime(settings, FixedClock(NOW))
    reader = ImapReader(
        ReaderConfig.from_settings(settings), Ingestor.from_runtime(runtime), runtime.stores
    )
    try:
        start = time.perf_counter()
        await reader.run_once()
        return time.perf_counter() - start
    finally:
        await runtime.close()


async def count_rows(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            inbound = await session.scalar(select(func.count(m.InboundMessage.id)))
            distinct = await session.scalar(
                select(func.count(func.distinct(m.InboundMessage.message_id)))
            )
            pending = await session.scalar(select(func.count(m.PendingPayment.id)))
            return int(inbound or 0), int(distinct or 0), int(pending or 0)
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--families", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an empty database (default: fresh SQLite)")
    parser.add_argument("--profile", help="write a cProfile of the last round to this file")
    args = parser.parse_args()

    server = start_dovecot()
    ok = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            template = folder / "template.db"
            url = args.database_url or f"sqlite+aiosqlite:///{template}"
            upgrade(url)
            t0 = time.perf_counter()
            families = asyncio.run(fill(url, args.families))
            print(f"filled {args.families} families in {time.perf_counter() - t0:.1f} s")
            rates: list[float] = []
            for round_no in range(1, args.rounds + 1):
                mailbox = server.new_mailbox("bench")
                t0 = time.perf_counter()
                server.append_many(mailbox, replies(families, args.replies))
                appended = time.perf_counter() - t0
                if args.database_url:
                    if round_no > 1:
                        print("(a --database-url runs one round: the database isn't copied)")
                        break
                    round_url = url
                else:
                    db = folder / f"round{round_no}.db"
                    shutil.copy(template, db)
                    round_url = f"sqlite+aiosqlite:///{db}"
                profiler = cProfile.Profile() if args.profile and round_no == args.rounds else None
                if profiler is not None:
                    profiler.enable()
                seconds = asyncio.run(
                    ingest_round(round_url, folder / f"blobs{round_no}", server, mailbox)
                )
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                inbound, distinct, pending = asyncio.run(count_rows(round_url))
                rate = args.replies / seconds
                rates.append(rate)
                print(
                    f"round {round_no}: appended {args.replies} in {appended:.1f} s; ingested "
                    f"{inbound} in {seconds:.2f} s = {rate:.0f} messages/s "
                    f"({pending} pending payments)"
                )
                if inbound != args.replies or distinct != inbound:
                    print(f"  MISMATCH: {inbound} stored, {distinct} distinct")
                    ok = False
            best = max(rates) if rates else 0.0
            median = sorted(rates)[len(rates) // 2] if rates else 0.0
            print(f"messages/second: median {median:.0f}, best {best:.0f} (target {TARGET:.0f})")
            if median < TARGET:
                ok = False
    finally:
        server.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
