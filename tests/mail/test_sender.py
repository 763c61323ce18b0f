"""Sending notices through the real outbox worker to a real SMTP server (aiosmtpd).

Every case runs on SQLite and on PostgreSQL: the invoice is made by the workflow, the notice
queued with it, and `devicecare worker`'s handler delivers it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.mail.render import NoticeRenderer, RenderedNotice, build_context
from bot.mail.sender import WIRE_POLICY, NoticeSender, build_message, flatten, notice_handlers
from bot.mail.tokens import ReplyToken, token_from_address, verify_reply_token
from bot.settings import Settings
from storage import models as m
from storage.db import session_factory
from storage.notice_queries import delivery_summary, load_notices, notices_for_invoice
from storage.notices import THREAD_KEY, reply_thread
from storage.outbox import MAX_ATTEMPTS
from storage.uow import UnitOfWorkFactory
from tests.builders import District, add_district, add_policy, add_staff
from tests.mail.smtp_server import Received, SmtpServer
from tests.mail.test_render import _data as _render_data
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, create_invoice_for_incident
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
SECRET = "test-secret-key"
FROM = "billing@district.org"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def mail_settings(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_from": FROM,
        "smtp_timeout": 5.0,
        "secret_key": SECRET,
        "district_timezone": "America/Chicago",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def make_worker(
    engine: AsyncEngine, clock: FixedClock, settings: Settings, **kw: Any
) -> OutboxWorker:
    return OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock),
        clock,
        notice_handlers(settings, clock),
        **kw,
    )


async def drain(worker: OutboxWorker) -> int:
    total = 0
    while handled := await worker.run_once():
        total += handled
    return total


@dataclass
class Issued:
    district: District
    invoice_id: int


async def issue_invoice(stores: UnitOfWorkFactory, clock: FixedClock) -> Issued:
    """The AppleCare-style invoice ($125.00, $29 co-pay), made by the workflow."""
    d = await add_district(stores)
    await add_policy(stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2)
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        opened = await open_incident(
            Context(store, clock, TZ),
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 20), flags=("screen",)),
        )
        await store.commit()
    async with stores() as store:
        created = await create_invoice_for_incident(
            Context(store, clock, TZ),
            tech,
            CreateInvoice(incident_id=opened.incident.id, fee_item_ids=(d.fee_screen_id,)),
        )
        await store.commit()
    return Issued(d, created.invoice.id)


async def queue_more(stores: UnitOfWorkFactory, invoice_id: int, n: int, start: int = 0) -> None:
    async with stores() as store:
        for i in range(start, start + n):
            queued = await store.outbox.queue_notice(
                "due_reminder", invoice_id, f"test-reminder:{i}"
            )
            assert queued == 1
        await store.commit()


async def notices(engine: AsyncEngine) -> list[m.Notice]:
    async with session_factory(engine)() as session:
        return list((await session.execute(select(m.Notice).order_by(m.Notice.id))).scalars())


async def outbox(engine: AsyncEngine) -> list[m.OutboxMessage]:
    async with session_factory(engine)() as session:
        stmt = select(m.OutboxMessage).order_by(m.OutboxMessage.id)
        return list((await session.execute(stmt)).scalars())


def message_ids(received: list[Received]) -> list[str]:
    return [str(r.message["Message-ID"]) for r in received]


# --- end to end -----------------------------------------------------------------------------


async def test_invoice_notice_reaches_the_smtp_server(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0

    [notice] = await notices(engine)
    [got] = smtp.messages
    assert (got.mail_from, got.rcpt_tos) == (FROM, ["maria@example.org"])
    msg = got.message
    assert msg["Message-ID"] == notice.message_id
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    # No district name is set: the sender's address alone, and no placeholder name anywhere.
    assert msg["From"].addresses[0].display_name == ""
    assert msg["From"].addresses[0].addr_spec == FROM
    assert msg["To"].addresses[0].addr_spec == "maria@example.org"
    assert msg["To"].addresses[0].display_name == "Maria Rivera"
    assert msg["Date"].datetime == clock.now()
    assert msg["Subject"].startswith("Invoice INV-000001: $29.00")
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("billing+") and reply_to.endswith("@district.org")
    token = token_from_address(reply_to)
    assert token is not None
    assert verify_reply_token(token, SECRET) == ReplyToken(issued.invoice_id, notice.id)
    assert verify_reply_token(token, "another-secret") is None

    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    lines = [" ".join(line.split()) for line in text.get_content().splitlines()]
    for expected in (
        "Screen replacement $125.00",
        "Original subtotal $125.00",
        "Insurance applied: AppleCare+ (2025-2026) −$96.00",
        "Amount owed $29.00",
        "Remaining balance $29.00",
        "Please pay $29.00 by May 31, 2026.",
    ):
        assert expected in lines
    assert "&minus;$96.00" in html.get_content()

    assert (notice.status, notice.sent_at, notice.last_error) == ("sent", clock.now(), None)
    [row] = await outbox(engine)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, clock.now())

    async with session_factory(engine)() as session:
        summary = delivery_summary(await notices_for_invoice(session, issued.invoice_id), TZ)
    assert summary == "Invoice emailed to maria@… Mar 2"


async def test_receipt_goes_out_in_the_guardians_language(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "es"
        await store.commit()
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=issued.invoice_id,
                amount_cents=1000,
                method=PaymentMethod.CHECK,
                reference="1043",
                idempotency_key="pay-1",
            ),
        )
        await store.commit()
    assert await drain(make_worker(engine, clock, mail_settings(smtp.port))) == 2
    invoice_mail, receipt = (r.message for r in smtp.messages)
    assert invoice_mail["Subject"].startswith("Factura INV-000001")
    assert receipt["Subject"] == "Recibo: $10.00 recibidos para la factura INV-000001"
    assert receipt["Content-Language"] == "es"
    body = receipt.get_body(("plain",))
    assert body is not None
    text = " ".join(body.get_content().split())
    assert "con el cheque n.º 1043" in text and "Saldo pendiente $19.00" in text


async def test_a_batch_of_20_uses_one_connection(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    await queue_more(stores, issued.invoice_id, 19)
    worker = make_worker(engine, clock, mail_settings(smtp.port), batch_size=50)
    assert await worker.run_once() == 20
    assert len(smtp.messages) == 20 and len(set(message_ids(smtp.messages))) == 20
    assert smtp.connections == 1
    # The next batch reuses it too.
    await queue_more(stores, issued.invoice_id, 5, start=19)
    assert await worker.run_once() == 5
    assert (len(smtp.messages), smtp.connections) == (25, 1)
    assert {n.status for n in await notices(engine)} == {"sent"}
    await worker.close()


async def test_a_dropped_connection_is_reopened(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 1
    smtp.stop()  # the server goes away and closes our connection
    smtp.start()
    await asyncio.sleep(0.05)
    await queue_more(stores, issued.invoice_id, 3)
    assert await worker.run_once() == 3
    assert (len(smtp.messages), smtp.connections) == (4, 2)
    assert {(r.status, r.attempts) for r in await outbox(engine)} == {("sent", 1)}


# --- failures -------------------------------------------------------------------------------


async def test_smtp_down_then_back_delivers_everything_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    smtp.stop()
    issued = await issue_invoice(stores, clock)
    await queue_more(stores, issued.invoice_id, 4)
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 5
    rows = await outbox(engine)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all("can't reach SMTP server" in (r.last_error or "") for r in rows)
    assert {r.next_attempt_at for r in rows} == {clock.now() + timedelta(seconds=30)}
    queued = await notices(engine)
    assert {n.status for n in queued} == {"queued"}
    assert all("can't reach SMTP server" in (n.last_error or "") for n in queued)
    async with session_factory(engine)() as session:
        summary = delivery_summary(await notices_for_invoice(session, issued.invoice_id))
    assert summary.startswith("Invoice to maria@… retrying (SmtpUnavailable: can't reach")

    assert await worker.run_once() == 0  # backing off
    clock.advance(seconds=31)
    assert await worker.run_once() == 5  # still down: second attempt, longer wait
    assert {(r.status, r.attempts) for r in await outbox(engine)} == {("pending", 2)}

    smtp.start()
    clock.advance(seconds=61)
    assert await drain(worker) == 5
    assert sorted(message_ids(smtp.messages)) == sorted(n.message_id for n in queued)
    assert {(r.status, r.attempts) for r in await outbox(engine)} == {("sent", 3)}
    assert {(n.status, n.last_error) for n in await notices(engine)} == {("sent", None)}

    clock.advance(hours=5)
    assert await drain(worker) == 0
    assert len(smtp.messages) == 5


async def test_giving_up_fails_the_notice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    smtp.stop()
    await issue_invoice(stores, clock)
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    for _ in range(MAX_ATTEMPTS):
        assert await worker.run_once() == 1
        clock.advance(hours=2)
    assert await worker.run_once() == 0
    [row] = await outbox(engine)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    [notice] = await notices(engine)
    assert notice.status == "failed" and "can't reach SMTP server" in (notice.last_error or "")


async def test_a_guardian_without_an_address_fails_at_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.email = None
        await store.commit()
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 1
    [row] = await outbox(engine)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "Maria Rivera has no email address on file any more"
    [notice] = await notices(engine)
    assert (notice.status, notice.last_error) == ("failed", row.last_error)
    assert smtp.messages == [] and smtp.connections == 0
    clock.advance(hours=5)
    assert await worker.run_once() == 0


async def test_a_refused_mailbox_fails_that_notice_only(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    d = await add_district(stores)
    async with stores() as store:
        other = m.Guardian(
            first_name="Sam",
            last_name="Rivera",
            email="sam@example.org",
            household_id=d.household_id,
        )
        store.session.add(other)
        await store.session.flush()
        store.session.add(m.Guardianship(guardian_id=other.id, student_id=d.student_id))
        await store.commit()
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        opened = await open_incident(
            Context(store, clock, TZ),
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 20), flags=("screen",)),
        )
        created = await create_invoice_for_incident(
            Context(store, clock, TZ),
            tech,
            CreateInvoice(incident_id=opened.incident.id, fee_item_ids=(d.fee_screen_id,)),
        )
        await store.commit()
    smtp.refuse("sam@example.org")
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 2
    assert [r.rcpt_tos for r in smtp.messages] == [["maria@example.org"]]
    maria, sam = await notices(engine)
    assert maria.status == "sent"
    assert sam.status == "failed"
    assert sam.last_error == "mailbox unavailable: 550 5.1.1 Mailbox unavailable"
    assert {r.status for r in await outbox(engine)} == {"sent", "failed"}
    async with session_factory(engine)() as session:
        summary = delivery_summary(await notices_for_invoice(session, created.invoice.id), TZ)
    assert summary == (
        "Invoice emailed to maria@… Mar 2 · "
        "Invoice to sam@… failed (mailbox unavailable: 550 5.1.1 Mailbox unavailable)"
    )


async def test_a_sent_notice_is_never_sent_again(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    await issue_invoice(stores, clock)
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await worker.run_once() == 1
    async with stores() as store:  # someone requeues the row by hand
        row = (await store.session.execute(select(m.OutboxMessage))).scalar_one()
        row.status, row.next_attempt_at = "pending", clock.now()
        await store.commit()
    assert await worker.run_once() == 1
    assert len(smtp.messages) == 1


async def test_a_stop_mid_batch_loses_nothing_and_repeats_nothing(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    """SIGTERM cancels the worker: the message on the wire is finished and recorded, what was
    sent is committed, the rest of the batch goes straight back to the queue."""
    issued = await issue_invoice(stores, clock)
    await queue_more(stores, issued.invoice_id, 9)
    smtp.recorder.delay = 0.05  # the server takes its time accepting each message
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    task = asyncio.create_task(worker.run_once())
    while len(smtp.messages) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)  # cancel while a message is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    received = message_ids(smtp.messages)
    sent = [n for n in await notices(engine) if n.status == "sent"]
    assert 3 <= len(received) < 10
    assert sorted(n.message_id for n in sent) == sorted(received)
    rows = await outbox(engine)
    assert sum(r.status == "sent" for r in rows) == len(received)
    untouched = [r for r in rows if r.status == "pending"]
    assert all(r.attempts == 0 and r.next_attempt_at == clock.now() for r in untouched)

    smtp.recorder.delay = 0
    assert await drain(make_worker(engine, clock, mail_settings(smtp.port))) == len(untouched)
    ids = message_ids(smtp.messages)
    assert len(ids) == 10 and len(set(ids)) == 10
    await worker.close()


async def test_the_batch_loader_reads_what_the_models_read(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    """`load_notices` reads plain rows; each must show every column and property the model's
    object shows (templates and the sender read them the same way)."""
    issued = await issue_invoice(stores, clock)
    [notice] = await notices(engine)
    async with session_factory(engine)() as session:
        data = (await load_notices(session, [notice.id]))[notice.id]
        models = {
            "notice": await session.get(m.Notice, notice.id),
            "guardian": await session.get(m.Guardian, issued.district.guardian_id),
            "invoice": await session.get(m.Invoice, issued.invoice_id),
        }
        invoice = models["invoice"]
        assert isinstance(invoice, m.Invoice)
        models["student"] = await session.get(m.Student, invoice.student_id)
        models["device"] = await session.get(m.Device, invoice.device_id)
    for field, model in models.items():
        record = getattr(data, field)
        assert model is not None and record is not None
        for column in m.Base.metadata.tables[type(model).__tablename__].columns:
            assert getattr(record, column.key) == getattr(model, column.key), (field, column)
    assert data.guardian is not None and data.guardian.full_name == "Maria Rivera"
    assert data.invoice is not None
    assert data.invoice.balance_cents == invoice.balance_cents == 2900
    assert [line.description for line in data.invoice.lines] == [
        line.description for line in invoice.lines
    ]
    assert data.district_name == ""  # not set yet


# --- addresses and encoding -----------------------------------------------------------------


async def test_names_and_subjects_are_encoded_for_the_wire(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        settings_row = await store.session.get(m.DistrictSettings, 1)
        assert guardian is not None and settings_row is not None
        guardian.first_name = "María José\r\nBcc: evil@example.net"
        guardian.last_name = "Núñez"
        guardian.preferred_language = "es"
        settings_row.district_name = 'Distrito Escolar de Añasco, "Norte"'
        await store.commit()
    assert await make_worker(engine, clock, mail_settings(smtp.port)).run_once() == 1
    [got] = smtp.messages
    assert got.data.isascii()  # encoded words and 7-bit parts only
    assert max(len(line) for line in got.data.split(b"\r\n")) <= 78
    msg = got.message
    assert "Bcc" not in msg and got.rcpt_tos == ["maria@example.org"]
    assert msg["To"].addresses[0].display_name == "María José Bcc: evil@example.net Núñez"
    assert msg["From"].addresses[0].display_name == 'Distrito Escolar de Añasco, "Norte"'
    assert msg["Reply-To"].addresses[0].display_name == (
        'Distrito Escolar de Añasco, "Norte" Billing Office'
    )
    assert msg["Subject"].startswith("Factura INV-000001 de Distrito Escolar de Añasco")
    body = msg.get_body(("plain",))
    assert body is not None
    assert "Estimado/a María José Bcc: evil@example.net Núñez:" in body.get_content()


async def test_an_unusable_address_fails_the_notice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.email = "maria@example.org>\r\nBcc: evil@example.net"
        await store.commit()
    assert await make_worker(engine, clock, mail_settings(smtp.port)).run_once() == 1
    [notice] = await notices(engine)
    assert notice.status == "failed" and "is not an address we can send to" in (
        notice.last_error or ""
    )
    assert smtp.messages == []


async def test_an_internationalised_address_goes_with_smtputf8(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    server = SmtpServer(smtputf8=True).start()
    try:
        issued = await issue_invoice(stores, clock)
        async with stores() as store:
            guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
            assert guardian is not None
            guardian.email = "josé@correo.example"
            await store.commit()
        assert await make_worker(engine, clock, mail_settings(server.port)).run_once() == 1
        [got] = server.messages
        assert got.rcpt_tos == ["josé@correo.example"]
        assert "\r\nTo: Maria Rivera <josé@correo.example>\r\n".encode() in got.data
        [notice] = await notices(engine)
        assert (notice.status, notice.to_address) == ("sent", "josé@correo.example")
    finally:
        server.stop()


async def test_a_changed_address_is_the_one_used(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.email = "maria.rivera@example.org"
        await store.commit()
    assert await make_worker(engine, clock, mail_settings(smtp.port)).run_once() == 1
    assert [r.rcpt_tos for r in smtp.messages] == [["maria.rivera@example.org"]]
    [notice] = await notices(engine)
    assert notice.to_address == "maria.rivera@example.org"


# --- several workers ------------------------------------------------------------------------


async def test_two_workers_deliver_each_notice_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    await queue_more(stores, issued.invoice_id, 39)
    settings = mail_settings(smtp.port)
    workers = [make_worker(engine, clock, settings, batch_size=4) for _ in range(2)]
    counts = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(counts) == 40
    ids = message_ids(smtp.messages)
    assert len(ids) == 40 and len(set(ids)) == 40
    assert sorted(ids) == sorted(n.message_id for n in await notices(engine))
    assert {(r.status, r.attempts) for r in await outbox(engine)} == {("sent", 1)}
    for w in workers:
        await w.close()


# --- TLS and login --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


# aiosmtpd only counts STARTTLS as TLS, so over implicit TLS it warns about plain-text AUTH.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_with_login(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    ca: trustme.CA,
    tmp_path: Path,
    security: str,
) -> None:
    context = _server_context(ca)
    server = SmtpServer(
        starttls=context if security == "starttls" else None,
        implicit_tls=context if security == "tls" else None,
        logins={"notices": "s3cret"},
    ).start()
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        await issue_invoice(stores, clock)
        settings = mail_settings(
            server.port,
            smtp_security=security,
            smtp_username="notices",
            smtp_password="s3cret",
            smtp_ca_file=ca_file,
        )
        assert await make_worker(engine, clock, settings).run_once() == 1
        [got] = server.messages
        assert got.login == "notices"
        assert {n.status for n in await notices(engine)} == {"sent"}
    finally:
        server.stop()


async def test_a_wrong_password_or_untrusted_certificate_sends_nothing(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    server = SmtpServer(starttls=_server_context(ca), logins={"notices": "s3cret"}).start()
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        await issue_invoice(stores, clock)
        wrong = mail_settings(
            server.port,
            smtp_security="starttls",
            smtp_username="notices",
            smtp_password="nope",
            smtp_ca_file=ca_file,
        )
        assert await make_worker(engine, clock, wrong).run_once() == 1
        [row] = await outbox(engine)
        assert row.status == "pending" and "SMTP login refused: 535" in (row.last_error or "")
        clock.advance(minutes=1)
        untrusted = mail_settings(
            server.port, smtp_security="starttls", smtp_username="notices", smtp_password="s3cret"
        )
        assert await make_worker(engine, clock, untrusted).run_once() == 1
        [row] = await outbox(engine)
        assert row.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in (row.last_error or "")
        assert server.messages == []
    finally:
        server.stop()


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_wire_format_matches_the_email_package(language: str) -> None:
    """The bytes `flatten` writes for build_message's message are ASCII, CRLF, folded to 78
    columns, and the email package reads back the headers, the parts and the names."""
    data = _render_data()
    assert data.guardian is not None
    data.guardian.first_name = "María José"
    data.guardian.preferred_language = language
    rendered = NoticeRenderer().render(
        "invoice_issued", build_context(data, today=date(2026, 3, 2), tz=TZ), language
    )
    msg = build_message(
        data, rendered, from_address=FROM, from_name=None,
        reply_to="billing+i7n11.abcdefghijklmnopqrst@district.org",
        to_address="maria@example.org", now=datetime(2026, 3, 2, 15, tzinfo=UTC), tz=TZ,
    )  # fmt: skip
    fast, slow = flatten(msg), msg.as_bytes(policy=WIRE_POLICY)
    assert fast.isascii() and b"\n" not in fast.replace(b"\r\n", b"")
    assert max(len(line) for line in fast.split(b"\r\n")) <= 78
    ours, theirs = (email.message_from_bytes(b, policy=email.policy.default) for b in (fast, slow))
    assert list(ours.items()) == list(theirs.items())
    for kind in ("plain", "html"):
        a, b = ours.get_body((kind,)), theirs.get_body((kind,))
        assert a is not None and b is not None
        assert a.get_content() == b.get_content()
    text = ours.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert ours["To"].addresses[0].display_name == "María José Rivera"


WIRE_CASES = {
    "plain": ("Maria", "Invoice INV-000007 from Lincoln Unified: $29.00", "Dear Maria,\n"),
    "accents": ("María José", "Factura INV-000007: $29.00 para el dispositivo de Ana", "Señora\n"),
    "quotes": ('Maria "Mia"', "Invoice " + "word " * 30, "a line \nwith trailing space \n"),
    "carriage returns": ("Maria", "Invoice", "a\rb\r\nc\r"),
    "long lines": ("Maria", "Invoice", "x" * 200 + "\n" + "é" * 100),
}


@pytest.mark.parametrize("case", list(WIRE_CASES))
def test_the_wire_bytes_are_flatten_s_bytes(case: str) -> None:
    """On awkward names, subjects and bodies the sender's bytes are `flatten`'s bytes for the
    message `build_message` makes: ASCII, CRLF only, the headers read back as they were set."""
    name, subject, text = WIRE_CASES[case]
    data = _render_data()
    assert data.guardian is not None
    data.guardian.first_name = name
    sender = NoticeSender.from_settings(mail_settings(2525), FixedClock(datetime.now(UTC)))
    now = datetime(2026, 3, 2, 15, tzinfo=UTC)
    for html in ("", "<p>Hi</p>\n", "<p>" + "ñ" * 500 + "</p>"):
        rendered = RenderedNotice(subject, text, html, "es")
        message = sender.message(data, rendered, now, to_address="maria@example.org")
        wire = sender.wire(data, rendered, now, "maria@example.org")
        assert wire == flatten(message)
        parsed = email.message_from_bytes(wire, policy=email.policy.default)
        assert list(parsed.items()) == list(message.items())
        assert wire.isascii() and b"\n" not in wire.replace(b"\r\n", b"")


def test_settings_wire_the_sender() -> None:
    settings = mail_settings(
        2525,
        smtp_from="Lincoln Billing <billing@lincoln.k12.us>",
        mail_reply_address="replies@lincoln.k12.us",
    )
    [(kind, sender)] = notice_handlers(settings, FixedClock.__new__(FixedClock)).items()
    assert kind == "email.notice" and isinstance(sender, NoticeSender)
    assert (sender.from_address, sender.from_name) == ("billing@lincoln.k12.us", "Lincoln Billing")
    assert sender.reply_base == "replies@lincoln.k12.us"
    assert mail_settings(2525).reply_base_address == FROM
    with pytest.raises(ValueError):
        NoticeSender.from_settings(Settings(_env_file=None), FixedClock.__new__(FixedClock))


def test_a_notice_answering_a_familys_email_threads_with_it() -> None:
    """In-Reply-To, References (folded when long) and "Re: <their subject>", the same on the
    wire, in the email package's message and in the SMTPUTF8 one."""
    data = _render_data()
    refs = [f"<{n:02d}.{'r' * 40}@mail.example.org>" for n in range(4)]
    parent = "<parent.reply@mail.example.org>"
    data.notice.context = {
        **(data.notice.context or {}),
        THREAD_KEY: reply_thread(parent, refs, "Re: Invoice INV-000007"),
    }
    sender = NoticeSender.from_settings(mail_settings(2525), FixedClock(datetime.now(UTC)))
    now = datetime(2026, 3, 2, 15, tzinfo=UTC)
    rendered = RenderedNotice("We got your message", "Thanks.\n", "<p>Thanks.</p>\n", "en")
    wire = sender.wire(data, rendered, now, "maria@example.org")
    assert wire == flatten(sender.message(data, rendered, now, to_address="maria@example.org"))
    assert max(len(line) for line in wire.split(b"\r\n")) <= 78
    for raw in (wire, sender.message(data, rendered, now, utf8=True,
                                     to_address="josé@correo.example").as_bytes()):  # fmt: skip
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["In-Reply-To"] == parent
        assert str(parsed["References"]).split() == [*refs, parent]
        assert parsed["Subject"] == "Re: Invoice INV-000007"
    # A notice that answers nobody has neither header.
    data.notice.context = {}
    plain = email.message_from_bytes(sender.wire(data, rendered, now, "maria@example.org"))
    assert plain["In-Reply-To"] is None and plain["References"] is None
    assert plain["Subject"] == "We got your message"
