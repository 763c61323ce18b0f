"""The reader stores each fetched batch in one transaction. What that must keep: a message is
marked on the server only once it is committed; a Message-ID is stored once, within a batch,
across batches and when a batch is fetched again after a crash; a message the database refuses
holds up neither the messages before it nor, once accepted, itself; replies keep their order.

Every case runs on SQLite and on PostgreSQL. Failures are real: a database trigger that refuses
a message, a reader process killed as its batch commits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.mail.reader import KEYWORD
from bot.slack.reply_blocks import ReplyPostKind
from storage import models as m
from storage.inbox import REPLY_POST_KIND
from tests.mail.conftest import BILLING_CHANNEL, MailHarness, billed_family, email_bytes
from workflows.invoices import NoticeTemplate

MARKS = {"\\Seen", KEYWORD}
ROOT = Path(__file__).resolve().parents[2]
CRASHED = 70


async def state_of(mail: MailHarness) -> m.MailboxState | None:
    async with mail.runtime.stores() as store:
        result = await store.session.get(m.MailboxState, mail.config().state_key)
        await store.commit()
        return result


async def count(mail: MailHarness, model: Any, *where: Any) -> int:
    async with mail.runtime.stores() as store:
        found = await store.session.scalar(select(func.count()).select_from(model).where(*where))
        await store.commit()
        return int(found or 0)


def marked(mail: MailHarness) -> list[int]:
    """The UIDs flagged processed on the server."""
    return sorted(uid for uid, flags in mail.dovecot.flags(mail.mailbox).items() if flags >= MARKS)


@asynccontextmanager
async def commits_counted(engine: AsyncEngine) -> AsyncIterator[Callable[[], int]]:
    seen = 0

    def on_commit(_conn: Any) -> None:
        nonlocal seen
        seen += 1

    event.listen(engine.sync_engine, "commit", on_commit)
    try:
        yield lambda: seen
    finally:
        event.remove(engine.sync_engine, "commit", on_commit)


@asynccontextmanager
async def database_refuses(engine: AsyncEngine, subject: str) -> AsyncIterator[None]:
    """Until the block ends, the database refuses to store a message with this subject (a
    trigger raising a constraint error, as a broken row would)."""
    if engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER refuse_subject BEFORE INSERT ON inbound_messages "
            f"WHEN NEW.subject = '{subject}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        drop = ["DROP TRIGGER refuse_subject"]
    else:
        create = [
            "CREATE FUNCTION refuse_subject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.subject = '{subject}' THEN "
            "RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER refuse_subject BEFORE INSERT ON inbound_messages "
            "FOR EACH ROW EXECUTE FUNCTION refuse_subject()",
        ]
        drop = ["DROP TRIGGER refuse_subject ON inbound_messages", "DROP FUNCTION refuse_subject()"]
    async with engine.begin() as conn:
        for sql in create:
            await conn.exec_driver_sql(sql)
    try:
        yield
    finally:
        async with engine.begin() as conn:
            for sql in drop:
                await conn.exec_driver_sql(sql)


# The reader as `devicecare mail` runs it, in a process that dies (os._exit: no cleanup, no
# more IMAP) just before or just after the first commit that stores messages.
READER_THAT_CRASHES = """
import asyncio, json, os, sys
from datetime import datetime
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from bot.mail.reader import build_reader
from bot.runtime import build_runtime
from bot.settings import Settings
from workflows.clock import FixedClock

values = json.loads(sys.argv[1])
moment, status = values.pop("moment"), values.pop("status")
now = datetime.fromisoformat(values.pop("now"))
storing = False

@event.listens_for(Engine, "before_cursor_execute")
def _watch(conn, cursor, statement, *args):
    global storing
    storing = storing or statement.startswith("INSERT INTO inbound_messages")

@event.listens_for(Session, moment + "_commit")
def _crash(session):
    if storing:
        os._exit(status)

async def main():
    runtime = build_runtime(Settings(_env_file=None, **values), FixedClock(now))
    await build_reader(runtime).run_once()

asyncio.run(main())
"""


async def run_reader_that_crashes(mail: MailHarness, moment: str) -> int:
    settings = mail.runtime.settings
    assert settings.imap_password is not None
    values = {
        "moment": moment,
        "status": CRASHED,
        "now": mail.clock.now().isoformat(),
        "database_url": settings.database_url,
        "blob_dir": str(settings.blob_dir),
        "secret_key": settings.secret_key.get_secret_value(),
        "imap_host": settings.imap_host,
        "imap_port": settings.imap_port,
        "imap_username": settings.imap_username,
        "imap_password": settings.imap_password.get_secret_value(),
        "imap_security": settings.imap_security,
        "imap_mailbox": settings.imap_mailbox,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER_THAT_CRASHES, json.dumps(values), cwd=ROOT
    )
    return await asyncio.wait_for(process.wait(), 60)


async def test_a_batch_is_stored_in_one_transaction_and_each_message_id_once(
    mail: MailHarness,
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    earlier = email_bytes(to=billed.reply_to, body="Asked before.", message_id="<early@x.org>")
    assert not (await mail.ingestor().ingest(earlier)).duplicate  # stored some other way
    mail.append(
        email_bytes(to=billed.reply_to, body="First question."),
        earlier,  # in the store already
        email_bytes(to=billed.reply_to, body="Sent twice.", message_id="<twice@x.org>"),
        email_bytes(to=billed.reply_to, body="Sent twice!", message_id="<twice@x.org>"),
        email_bytes(to=billed.reply_to, body="I mailed check #1043 for $50 on Monday."),
    )
    reader = mail.reader()

    async with commits_counted(mail.runtime.engine) as commits:
        assert await reader.run_once() == 3
    # The position read, the batch, the position moved: not a transaction per message.
    assert commits() == 3
    assert reader.stats.duplicates == 2

    rows = await mail.inbound()
    assert [(r.uid, r.body_text) for r in rows] == [
        (None, "Asked before."),
        (1, "First question."),
        (3, "Sent twice."),
        (5, "I mailed check #1043 for $50 on Monday."),
    ]
    assert marked(mail) == [1, 2, 3, 4, 5]
    state = await state_of(mail)
    assert state is not None and state.last_uid == 5
    assert await count(mail, m.OutboxMessage, m.OutboxMessage.kind == REPLY_POST_KIND) == 4
    assert await count(mail, m.PendingPayment) == 1
    acks = m.Notice.template == NoticeTemplate.PENDING_PAYMENT_ACK.value
    assert await count(mail, m.Notice, acks) == 1


async def test_a_message_nobody_can_read_is_held_and_its_batch_goes_on(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(
        email_bytes(to=billed.reply_to, body="Before."),
        b"\xff\xfe not an email \x80\x81\r\n\r\n\xc3(",
        email_bytes(to=billed.reply_to, body="After."),
    )
    assert await mail.reader().run_once() == 3
    rows = await mail.inbound()
    assert [(r.uid, r.status) for r in rows] == [(1, "routed"), (2, "held"), (3, "routed")]
    assert marked(mail) == [1, 2, 3]


@pytest.mark.parametrize("moment", ["before", "after"])
async def test_a_crash_as_a_batch_commits_loses_nothing_and_stores_nothing_twice(
    mail: MailHarness, moment: str
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(
        email_bytes(to=billed.reply_to, body="Can we pay in two parts?"),
        email_bytes(to=billed.reply_to, body="I mailed check #1043 for $50 on Monday."),
        email_bytes(to=billed.reply_to, body="Also, the charger was fine."),
    )

    assert await run_reader_that_crashes(mail, moment) == CRASHED
    # Committed or not, nothing was marked on the server and the position didn't move.
    assert len(await mail.inbound()) == (3 if moment == "after" else 0)
    assert marked(mail) == []
    state = await state_of(mail)
    assert state is None or state.last_uid == 0

    # Started again, the reader fetches the batch again.
    reader = mail.reader()
    await reader.run_once()
    assert (reader.stats.ingested, reader.stats.duplicates) == (
        (0, 3) if moment == "after" else (3, 0)
    )
    rows = await mail.inbound()
    assert [r.uid for r in rows] == [1, 2, 3]
    assert marked(mail) == [1, 2, 3]
    state = await state_of(mail)
    assert state is not None and state.last_uid == 3
    assert await count(mail, m.OutboxMessage, m.OutboxMessage.kind == REPLY_POST_KIND) == 3
    assert await count(mail, m.PendingPayment) == 1
    acks = m.Notice.template == NoticeTemplate.PENDING_PAYMENT_ACK.value
    assert await count(mail, m.Notice, acks) == 1


async def test_a_message_the_database_refuses_holds_up_only_itself_and_what_follows(
    mail: MailHarness,
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(
        email_bytes(to=billed.reply_to, body="Before it."),
        email_bytes(to=billed.reply_to, body="The refused one.", subject="refuse me"),
        email_bytes(to=billed.reply_to, body="After it."),
    )
    reader = mail.reader()
    async with database_refuses(mail.runtime.engine, subject="refuse me"):
        # The batch fails; stored one by one, what came before is stored and marked, the
        # refused message and those after it wait unmarked (a database error: never skipped).
        with pytest.raises(IntegrityError):
            await reader.run_once()
        assert [r.body_text for r in await mail.inbound()] == ["Before it."]
        assert marked(mail) == [1]
        state = await state_of(mail)
        assert state is not None and state.last_uid == 1
        with pytest.raises(IntegrityError):
            await reader.run_once()
        assert marked(mail) == [1]

    # Once the database takes it, the rest follows; nothing is stored twice.
    assert await reader.run_once() == 2
    assert [r.body_text for r in await mail.inbound()] == [
        "Before it.",
        "The refused one.",
        "After it.",
    ]
    assert marked(mail) == [1, 2, 3]
    assert reader.stats.skipped == 0


async def test_replies_keep_their_order_across_batches(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    bodies = [f"Reply number {n}." for n in range(1, 8)]
    mail.append(*(email_bytes(to=billed.reply_to, body=b) for b in bodies))
    reader = mail.reader(fetch_batch=3)  # three batches, each prepared while one is stored

    assert await reader.run_once() == 7
    rows = await mail.inbound()
    assert [(r.uid, r.body_text) for r in rows] == list(enumerate(bodies, start=1))

    await mail.deliver_outbox()
    posts = [
        c for c in mail.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]
    shown = [next(b for b in bodies if b in str(p.args["blocks"])) for p in posts]
    assert shown == bodies
    async with mail.runtime.stores() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, billed.invoice_id)
        await store.commit()
    assert thread is not None
    assert "thread_ts" not in posts[0].args
    assert all(p.args["thread_ts"] == thread.ts for p in posts[1:])


async def test_two_readers_at_once_store_each_message_once(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(*(email_bytes(to=billed.reply_to, body=f"Reply {n}.") for n in range(24)))
    one, two = mail.reader(fetch_batch=8), mail.reader(fetch_batch=8)

    ingested = await asyncio.gather(one.run_once(), two.run_once())

    assert sum(ingested) == 24
    rows = await mail.inbound()
    assert sorted(r.uid for r in rows) == list(range(1, 25))
    assert len({r.message_id for r in rows}) == 24
    assert await count(mail, m.OutboxMessage, m.OutboxMessage.kind == REPLY_POST_KIND) == 24
    assert marked(mail) == list(range(1, 25))
