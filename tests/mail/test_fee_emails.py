"""Bulk fee invoices reach families like any other: through the outbox worker to aiosmtpd."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.mail.sender import notice_handlers
from services.bulk_fees import BulkFeeBiller
from storage import models as m
from storage.db import session_factory
from storage.fee_store import SqlFeeStore
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff, add_students
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_sender import mail_settings
from workflows.clock import FixedClock
from workflows.fees import FeeDefinition, apply_fee, define_fee
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


async def test_each_family_gets_its_fee_invoice_by_email(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    await add_students(stores, 3)
    async with stores() as store:
        fee, _ = await define_fee(
            Context(store, clock, TZ),
            SqlFeeStore.beside(store),
            clerk,
            FeeDefinition("tech-fee", "Technology fee", "2025-2026", 2500),
        )
        await store.commit()
    result = await apply_fee(BulkFeeBiller(session_factory(engine), clock, TZ), clerk, fee.id)
    assert result.notices == 3

    settings = mail_settings(smtp.port)
    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock), clock, notice_handlers(settings, clock)
    )
    while await worker.run_once():
        pass
    received = smtp.recorder.messages
    assert sorted(r.rcpt_tos[0] for r in received) == [
        f"parent.bulk{i}@example.org" for i in range(3)
    ]
    async with stores() as store:
        invoices = {
            i.student_id: i for i in (await store.session.execute(select(m.Invoice))).scalars()
        }
        notices = list((await store.session.execute(select(m.Notice))).scalars())
        await store.commit()
    assert {n.status for n in notices} == {"sent"}
    for got in received:
        message = got.message
        notice = next(n for n in notices if n.message_id == message["Message-ID"])
        number = next(i.number for i in invoices.values() if i.id == notice.invoice_id)
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert number in message["Subject"] or number in text
        assert "Technology fee 2025-2026" in text and "$25.00" in text
        assert message["Auto-Submitted"] == "auto-generated"
