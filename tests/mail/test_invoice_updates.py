""" "Your invoice was updated": one email per change of an amount the family already heard
about (a waiver, a refund, a cancellation, a restore), in the family's language, delivered to a
local SMTP server (aiosmtpd) by the outbox worker. Nothing when the family was never told."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_sender import (  # noqa: F401 - `smtp` is a fixture
    TZ,
    drain,
    issue_invoice,
    mail_settings,
    make_worker,
    smtp,
)
from workflows.clock import FixedClock
from workflows.invoices import cancel_invoice, restore_invoice
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment
from workflows.waivers import RequestWaiver, request_waiver


def words(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return " ".join(body.get_content().split())


def updates(smtp: SmtpServer) -> list[EmailMessage]:  # noqa: F811
    return [
        r.message
        for r in smtp.messages
        if "updated" in str(r.message["Subject"]) or "cambió" in str(r.message["Subject"])
    ]


async def test_a_waiver_and_a_refund_each_send_one_update(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    issued = await issue_invoice(stores, clock)  # $29.00 owed after insurance
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await drain(worker) == 1  # the family is told $29.00
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")

    for _ in range(2):  # the same form twice: one waiver, one email
        async with stores() as store:
            await request_waiver(
                Context(store, clock, TZ),
                clerk,
                RequestWaiver(issued.invoice_id, 400, "Late <fee> waived", idempotency_key="w1"),
            )
            await store.commit()
    assert await drain(worker) == 1
    [update] = updates(smtp)
    assert update["Subject"] == "Invoice INV-000001 was updated: $29.00 is now $25.00"
    text = words(update)
    assert "part of the charge was waived" in text
    assert "Amount before $29.00 Amount now $25.00 Reason Late <fee> waived" in text
    assert "Still owed: $25.00" in text
    assert "Late &lt;fee&gt; waived" in str(update.get_body(("html",)).get_content())  # type: ignore[union-attr]

    # A payment lowers the balance, not the amount: a receipt, no update.
    async with stores() as store:
        paid = await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(issued.invoice_id, 2_500, PaymentMethod.CASH, "p1"),
        )
        await store.commit()
    assert await drain(worker) == 1
    assert len(updates(smtp)) == 1

    for _ in range(2):
        async with stores() as store:
            await refund_payment(
                Context(store, clock, TZ),
                director,
                RefundPayment(paid.payment.id, 1_000, "Charger found", "r1"),
            )
            await store.commit()
    assert await drain(worker) == 2  # the refund receipt and one update
    refund_update = updates(smtp)[-1]
    assert refund_update["Subject"] == "Invoice INV-000001 was updated: $25.00 is now $15.00"
    text = words(refund_update)
    assert "we refunded part of a payment and credited the charge" in text
    assert "Nothing is left to pay on this invoice." in text


async def test_a_cancellation_and_a_restore_in_spanish(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    issued = await issue_invoice(stores, clock)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "es"
        await store.commit()
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await drain(worker) == 1
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await cancel_invoice(
            Context(store, clock, TZ), clerk, issued.invoice_id, reason="Factura duplicada"
        )
        await store.commit()
    assert await drain(worker) == 1
    [cancelled] = updates(smtp)
    assert cancelled["Subject"] == "La factura INV-000001 cambió: cancelada, no se debe nada"
    text = words(cancelled)
    assert "la factura fue cancelada" in text and "Motivo Factura duplicada" in text
    assert "Ya no se debe nada en esta factura" in text

    async with stores() as store:
        await restore_invoice(Context(store, clock, TZ), clerk, issued.invoice_id)
        await store.commit()
    assert await drain(worker) == 1
    restored = updates(smtp)[-1]
    assert restored["Subject"] == "La factura INV-000001 cambió: $0.00 ahora es $29.00"
    assert "la factura fue restablecida" in words(restored)


async def test_no_update_when_the_family_was_never_told(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    issued = await issue_invoice(stores, clock)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await request_waiver(
            Context(store, clock, TZ), clerk, RequestWaiver(issued.invoice_id, 400, "Goodwill")
        )
        await store.commit()
    async with stores() as store:
        rows = (await store.session.execute(select(m.Notice.template))).scalars().all()
        await store.commit()
    assert list(rows) == ["invoice_issued"]
    assert await drain(make_worker(engine, clock, mail_settings(smtp.port))) == 1
    [email] = [r.message for r in smtp.messages]
    # The first email already shows the amount as it stands.
    assert "$25.00" in str(email["Subject"])
    assert updates(smtp) == []
