"""The IMAP reader against a real Dovecot: new mail is ingested once, marked on the server only
after it is stored, and the reader survives drops, restarts and a rebuilt folder.

Every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select, update

from bot.mail.reader import KEYWORD, ImapError, parse_fetch, parse_search, uid_set
from bot.slack.reply_blocks import ReplyPostKind
from storage import models as m
from tests.mail.conftest import (
    BILLING_CHANNEL,
    MailHarness,
    billed_family,
    email_bytes,
    eventually,
    photo_bytes,
)


async def state_of(mail: MailHarness) -> m.MailboxState | None:
    async with mail.runtime.stores() as store:
        result = await store.session.get(m.MailboxState, mail.config().state_key)
        await store.commit()
        return result


async def test_a_reply_is_ingested_routed_and_shown_in_the_invoice_thread(
    mail: MailHarness,
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to, body="Can we pay in two parts?"))

    ingested = await mail.reader().run_once()

    assert ingested == 1
    [row] = await mail.inbound()
    assert (row.route, row.status, row.invoice_id) == ("token", "routed", billed.invoice_id)
    assert row.sender_trusted and row.guardian_id == billed.district.guardian_id
    assert row.uid == 1 and row.uidvalidity == mail.dovecot.uidvalidity(mail.mailbox)
    # Marked on the server only now that it is stored.
    assert mail.dovecot.flags(mail.mailbox)[1] >= {"\\Seen", KEYWORD}
    state = await state_of(mail)
    assert state is not None and state.last_uid == 1

    await mail.deliver_outbox()
    [post] = [
        c for c in mail.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]
    assert "Reply from Maria Rivera" in str(post.args["blocks"])
    assert "two parts" in str(post.args["blocks"])
    async with mail.runtime.stores() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, billed.invoice_id)
        await store.commit()
    assert thread is not None and thread.channel == BILLING_CHANNEL


async def test_a_reply_with_a_photo_comes_through_whole(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    photo = photo_bytes((1600, 1200))
    mail.append(
        email_bytes(
            to=billed.reply_to,
            body="The screen after the fall.",
            attachments=(("IMG_0042.jpg", "image/jpeg", photo),),
        )
    )
    await mail.reader().run_once()
    async with mail.runtime.stores() as store:
        [stored] = (await store.session.execute(select(m.Photo))).scalars().all()
        await store.commit()
    assert (stored.incident_id, stored.width, stored.height) == (billed.incident_id, 1600, 1200)
    kept = await mail.runtime.blobs.get(stored.blob_key)  # re-encoded, never kept as sent
    assert Image.open(io.BytesIO(kept)).size == (1600, 1200) and len(kept) == stored.size_bytes


async def test_later_replies_go_in_the_thread_the_first_one_started(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to, body="First question."))
    await mail.reader().run_once()
    await mail.deliver_outbox()
    mail.append(email_bytes(to=billed.reply_to, body="Second question."))
    await mail.reader().run_once()
    await mail.deliver_outbox()

    first, second = mail.fake.calls_to("chat.postMessage")
    assert "thread_ts" not in first.args
    async with mail.runtime.stores() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, billed.invoice_id)
        await store.commit()
    assert thread is not None
    assert second.args["thread_ts"] == thread.ts and second.args["channel"] == thread.channel
    assert "Second question" in str(second.args["blocks"])


async def test_the_same_message_fetched_twice_is_processed_once(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to, body="Paid it."))
    reader = mail.reader()
    assert await reader.run_once() == 1

    # Forget how far the reader got: it fetches the message again.
    async with mail.runtime.stores() as store:
        await store.session.execute(update(m.MailboxState).values(last_uid=0))
        await store.commit()
    assert await reader.run_once() == 0
    assert reader.stats.fetched == 2 and reader.stats.duplicates == 1

    assert len(await mail.inbound()) == 1
    assert await mail.deliver_outbox() == 1  # one Slack post, not two


async def test_a_copy_of_a_message_under_a_new_uid_is_processed_once(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    raw = email_bytes(to=billed.reply_to, message_id="<same-reply@mail.example.org>")
    mail.append(raw)
    reader = mail.reader()
    await reader.run_once()
    mail.append(raw)  # the same Message-ID again (a client re-sent it, a filter copied it)
    await reader.run_once()
    assert len(await mail.inbound()) == 1
    assert reader.stats.duplicates == 1
    assert mail.dovecot.flags(mail.mailbox)[2] >= {"\\Seen", KEYWORD}


async def test_messages_without_a_message_id_get_a_stable_one(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    raw = email_bytes(to=billed.reply_to).replace(b"Message-ID:", b"X-Old-Message-ID:")
    mail.append(raw, raw)
    await mail.reader().run_once()
    [row] = await mail.inbound()
    assert row.message_id.endswith("@no-message-id.devicecare.invalid>")


async def test_idle_wakes_the_reader_when_mail_arrives(
    mail: MailHarness, running_reader: object
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    reader = running_reader
    assert hasattr(reader, "stats")
    await eventually(lambda: _true(reader.stats.sessions >= 1), what="the reader to connect")
    # In IDLE, not still catching up: what arrives now can only be found by a push (or a poll).
    await eventually(lambda: _true(_idling(reader)), what="the reader to IDLE")
    await asyncio.sleep(0.2)  # the server has answered the IDLE command
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.to_thread(mail.append, email_bytes(to=billed.reply_to, body="Hello"))
    await mail.wait_for_inbound(1, timeout=10)
    assert loop.time() - started < 5  # pushed (about 1 s), not found by the 2 s poll later
    assert reader.stats.wakeups >= 1


def _idling(reader: Any) -> bool:
    client = reader.client
    return client is not None and client.has_pending_idle()


async def _true(value: bool) -> bool:
    return value


async def test_without_idle_the_reader_polls(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    reader = mail.reader(use_idle=False, poll_seconds=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await eventually(lambda: _true(reader.stats.sessions >= 1), what="a session")
        await asyncio.to_thread(mail.append, email_bytes(to=billed.reply_to))
        await mail.wait_for_inbound(1, timeout=10)
        assert reader.stats.wakeups == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_dropped_connection_is_reopened_and_reading_goes_on(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    reader = mail.reader()
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        mail.append(email_bytes(to=billed.reply_to, body="one"))
        await mail.wait_for_inbound(1)
        # The client's socket dies under it (a NAT timeout, a network blip).
        assert reader.client is not None
        reader.client.protocol.transport.abort()
        await eventually(lambda: _true(reader.stats.sessions >= 2), what="a new session")
        mail.append(email_bytes(to=billed.reply_to, body="two"))
        await mail.wait_for_inbound(2)

        # The server hangs up (BYE) on every session of the user.
        await asyncio.to_thread(mail.dovecot.kick)
        await eventually(lambda: _true(reader.stats.sessions >= 3), what="a third session")
        mail.append(email_bytes(to=billed.reply_to, body="three"))
        rows = await mail.wait_for_inbound(3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert reader.stats.drops >= 2
    assert [r.body_text for r in rows] == ["one", "two", "three"]


async def test_the_reader_rides_out_a_server_restart(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    reader = mail.reader(reconnect_max=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await eventually(lambda: _true(reader.stats.sessions >= 1), what="a session")
        await asyncio.to_thread(mail.dovecot.restart)
        mail.append(email_bytes(to=billed.reply_to, body="after the restart"))
        rows = await mail.wait_for_inbound(1, timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert rows[0].body_text == "after the restart"
    assert reader.stats.sessions >= 2 and reader.stats.drops >= 1


async def test_a_new_uidvalidity_rereads_the_folder_without_repeating_anything(
    mail: MailHarness,
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    first = email_bytes(to=billed.reply_to, body="first")
    mail.append(first)
    reader = mail.reader()
    await reader.run_once()
    before = await state_of(mail)
    assert before is not None

    # The folder is rebuilt (restored from a backup): new UIDVALIDITY, UIDs from 1 again,
    # the old message back plus a new one.
    mail.dovecot.recreate_mailbox(mail.mailbox)
    mail.append(first, email_bytes(to=billed.reply_to, body="second"))
    assert mail.dovecot.uidvalidity(mail.mailbox) != before.uidvalidity
    assert await reader.run_once() == 1

    rows = await mail.inbound()
    assert [r.body_text for r in rows] == ["first", "second"]
    after = await state_of(mail)
    assert after is not None
    assert after.uidvalidity == mail.dovecot.uidvalidity(mail.mailbox) and after.last_uid == 2
    assert rows[1].uidvalidity == after.uidvalidity
    assert reader.stats.duplicates == 1


async def test_a_message_is_not_marked_until_it_is_stored(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to))
    reader = mail.reader()
    calls = 0

    async def failing(prepared: object, *, uidvalidity: int, uid: int) -> object:
        nonlocal calls
        calls += 1
        raise ConnectionError("database unreachable")

    async def failing_batch(items: object, *, uidvalidity: int) -> object:
        nonlocal calls
        calls += 1
        raise ConnectionError("database unreachable")

    reader.pipeline.store = failing  # type: ignore[method-assign]
    reader.pipeline.store_batch = failing_batch  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await reader.run_once()
    assert calls == 2  # the batch, then the message alone
    assert mail.dovecot.flags(mail.mailbox)[1] & {"\\Seen", KEYWORD} == set()
    state = await state_of(mail)
    assert state is None or state.last_uid == 0


async def test_a_message_that_keeps_failing_is_left_for_a_person(mail: MailHarness) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(
        email_bytes(to=billed.reply_to, body="poison"),
        email_bytes(to=billed.reply_to, body="fine"),
    )
    reader = mail.reader()
    real_store = reader.pipeline.store

    async def store(prepared: Any, *, uidvalidity: int, uid: int) -> Any:
        if uid == 1:
            raise ValueError("a bug this message triggers")
        return await real_store(prepared, uidvalidity=uidvalidity, uid=uid)

    real_store_batch = reader.pipeline.store_batch

    async def store_batch(items: Any, *, uidvalidity: int) -> Any:
        if any(uid == 1 for _, uid in items):
            raise ValueError("a bug this message triggers")
        return await real_store_batch(items, uidvalidity=uidvalidity)

    reader.pipeline.store = store  # type: ignore[method-assign]
    reader.pipeline.store_batch = store_batch  # type: ignore[method-assign]
    for _ in range(2):  # each attempt ends the session; the next one tries again
        with pytest.raises(ValueError):
            await reader.run_once()
    assert await reader.run_once() == 1  # the third failure gives up on it and goes on
    assert reader.stats.skipped == 1
    assert [r.body_text for r in await mail.inbound()] == ["fine"]
    flags = mail.dovecot.flags(mail.mailbox)
    assert flags[1] & {"\\Seen", KEYWORD} == set()  # unread, for a person to look at
    assert flags[2] >= {"\\Seen", KEYWORD}
    state = await state_of(mail)
    assert state is not None and state.last_uid == 2


async def test_a_refused_login_is_reported(mail: MailHarness) -> None:
    reader = mail.reader(password="wrong")
    with pytest.raises(ImapError, match="login refused"):
        await reader.run_once()


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_encrypted_connections(mail: MailHarness, security: str) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to))
    port = mail.dovecot.imaps_port if security == "tls" else mail.dovecot.imap_port
    reader = mail.reader(security=security, port=port, ssl_context=mail.dovecot.ssl_context())
    assert await reader.run_once() == 1


async def test_an_untrusted_certificate_is_refused(mail: MailHarness) -> None:
    reader = mail.reader(security="tls", port=mail.dovecot.imaps_port)
    with pytest.raises(ssl.SSLError):
        await reader.run_once()


def test_protocol_helpers() -> None:
    assert uid_set([9, 1, 2, 3, 7, 10]) == "1:3,7,9:10"
    assert parse_search([b"3 5 7", b"Search completed"]) == [3, 5, 7]
    assert parse_search([b"", b"Search completed"]) == []
    items = parse_fetch(
        [
            b"1 FETCH (UID 4 RFC822.SIZE 12 BODY[] {3}",
            bytearray(b"abc"),
            b")",
            b"2 FETCH (FLAGS (\\Seen))",  # someone else's flag change, no UID
            b"3 FETCH (BODY[] {2}",
            bytearray(b"hi"),
            b" UID 9)",
            b"Fetch completed.",
        ]
    )
    assert [(i.uid, i.size, i.body) for i in items] == [(4, 12, b"abc"), (9, None, b"hi")]
