"""The refund receipt and the waived/refunded lines of invoice emails, delivered to a local SMTP
server (aiosmtpd) by the outbox worker."""

from __future__ import annotations

from email.message import EmailMessage

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
    queue_more,
    smtp,
)
from workflows.clock import FixedClock
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment
from workflows.waivers import RequestWaiver, request_waiver


def plain_lines(message: EmailMessage) -> list[str]:
    body = message.get_body(("plain",))
    assert body is not None
    return [" ".join(line.split()) for line in body.get_content().splitlines()]


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


async def test_refund_receipt_and_waiver_lines_reach_the_family(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    issued = await issue_invoice(stores, clock)  # $29.00 owed after insurance
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        ctx = Context(store, clock, TZ)
        paid = await record_payment(
            ctx,
            clerk,
            RecordPayment(issued.invoice_id, 2_000, PaymentMethod.CHECK, "p1", reference="1043"),
        )
        await request_waiver(ctx, clerk, RequestWaiver(issued.invoice_id, 400, "Late fee waived"))
        await refund_payment(
            ctx,
            director,
            RefundPayment(paid.payment.id, 1_500, "Charger found <in the cart>", "r1"),
        )
        await store.commit()
    worker = make_worker(engine, clock, mail_settings(smtp.port))
    assert await drain(worker) == 3  # the invoice, the payment receipt, the refund receipt
    refund = smtp.messages[-1].message
    assert refund["Subject"] == "Refund: $15.00 for invoice INV-000001"
    lines = plain_lines(refund)
    for expected in (
        "Amount refunded $15.00",
        "Reason Charger found <in the cart>",
        "From your payment $20.00 by check #1043",
        "Received on March 2, 2026",
        "Remaining balance $5.00",
    ):
        assert expected in lines, lines
    assert "Charger found &lt;in the cart&gt;" in html_of(refund)

    # Later invoice emails show the waiver and the refund beside the payment.
    await queue_more(stores, issued.invoice_id, 1)
    assert await drain(worker) == 1
    reminder = plain_lines(smtp.messages[-1].message)
    for expected in (
        "Paid so far −$20.00",
        "Waived −$4.00",
        "Refunded to you (charge credited) $15.00",
        "Remaining balance $5.00",
    ):
        assert expected in reminder, reminder
    assert "&minus;$4.00" in html_of(smtp.messages[-1].message)


async def test_refund_receipt_in_spanish(
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
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        ctx = Context(store, clock, TZ)
        paid = await record_payment(
            ctx, director, RecordPayment(issued.invoice_id, 2_900, PaymentMethod.CASH, "p1")
        )
        await refund_payment(
            ctx, director, RefundPayment(paid.payment.id, 2_900, "Dispositivo encontrado", "r1")
        )
        await store.commit()
    assert await drain(make_worker(engine, clock, mail_settings(smtp.port))) == 3
    refund = smtp.messages[-1].message
    assert refund["Subject"] == "Reembolso: $29.00 de la factura INV-000001"
    lines = plain_lines(refund)
    assert "Monto reembolsado $29.00" in lines and "De su pago $29.00 en efectivo" in lines
    assert "No se debe nada en esta factura." in lines
