"""A parent's whole path, in a real browser: the emailed link, the page, paying, the receipt.

Everything runs for real on this machine: the web app behind uvicorn, the outbox worker sending
through an SMTP server (aiosmtpd), the stand-in for Stripe (tests/stripe_fake.py) that creates
Checkout Sessions for the official SDK and posts signed webhooks, and Debian's Chromium driven
by Playwright. The test reads the link out of the email that was sent, opens it on a phone-sized
and a desktop-sized screen (screenshots kept under test-artifacts/browser/), reads the amounts,
pays part and then the rest, and sees the invoice paid and both receipts delivered.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.mail.sender import notice_handlers
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.web.app import create_web_app
from bot.web.stripe_webhooks import outbox_handlers
from storage import models as m
from storage.db import session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_policy, add_staff
from tests.mail.smtp_server import SmtpServer, free_port
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, FakeStripe
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, create_invoice_for_incident
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
SECRET = "browser-test-secret"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LINK = re.compile(r"http://127\.0\.0\.1:\d+/family/[A-Za-z0-9._-]+")


@dataclass
class Service:
    runtime: Runtime
    stripe: FakeStripe
    smtp: SmtpServer
    worker: OutboxWorker
    invoice_id: int

    async def run_worker(self) -> None:
        """Apply received Stripe events and send queued email, until nothing is left."""
        while await self.worker.run_once():
            pass

    def sent(self, subject_part: str) -> list[EmailMessage]:
        return [r.message for r in self.smtp.messages if subject_part in str(r.message["Subject"])]


async def issue_invoice(stores: UnitOfWorkFactory, clock: FixedClock) -> int:
    """A screen and a keyboard ($170.00) under AppleCare+: the family owes the $29.00 co-pay."""
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
            CreateInvoice(
                incident_id=opened.incident.id, fee_item_ids=(d.fee_screen_id, d.fee_keyboard_id)
            ),
        )
        await store.commit()
    return created.invoice.id


@pytest.fixture
async def service(
    database_url: str, engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> AsyncIterator[Service]:
    smtp = SmtpServer().start()
    app_port = free_port()
    stripe = FakeStripe(
        webhook_url=f"http://127.0.0.1:{app_port}/webhooks/stripe",
        now=lambda: clock.now().timestamp(),
    )
    await stripe.start()
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=SECRET,
        district_timezone="America/Chicago",
        public_base_url=f"http://127.0.0.1:{app_port}",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
        smtp_from="billing@district.org",
        smtp_timeout=5.0,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe.base_url,
    )
    runtime = build_runtime(settings, clock)
    invoice_id = await issue_invoice(stores, clock)
    server = uvicorn.Server(
        uvicorn.Config(
            create_web_app(runtime), host="127.0.0.1", port=app_port, log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the web app didn't start"
        await asyncio.sleep(0.02)
    handlers = {**notice_handlers(settings, clock), **outbox_handlers(runtime)}
    worker = OutboxWorker(UnitOfWorkFactory(session_factory(engine), clock), clock, handlers)
    try:
        yield Service(runtime, stripe, smtp, worker, invoice_id)
    finally:
        server.should_exit = True
        await serving
        await stripe.stop()
        await runtime.close()
        smtp.stop()


def link_in(message: EmailMessage) -> str:
    """The family page link in the plain-text part of a sent email (and the same in HTML)."""
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    links = set(LINK.findall(text_part.get_content()))
    assert len(links) == 1, links
    link = links.pop()
    assert link in html_part.get_content()
    return link


async def open_page(browser: Browser, url: str, viewport: dict[str, int], **kw: object) -> Page:
    context = await browser.new_context(viewport=viewport, **kw)  # type: ignore[arg-type]
    page = await context.new_page()
    response = await page.goto(url)
    assert response is not None and response.status == 200, response and response.status
    return page


def money(text: str) -> Decimal:
    return Decimal(text.strip().replace("$", "").replace(",", "").replace("\u2212", "-"))


async def row_amount(page: Page, label: str) -> Decimal:
    row = page.locator("tr", has=page.locator("th", has_text=label)).first
    return money(await row.locator("td.amount").inner_text())


async def payments_recorded(engine: AsyncEngine, invoice_id: int) -> list[m.Payment]:
    async with session_factory(engine)() as session:
        stmt = select(m.Payment).where(m.Payment.invoice_id == invoice_id).order_by(m.Payment.id)
        return list((await session.execute(stmt)).scalars())


async def test_a_parent_pays_from_the_emailed_link(
    service: Service, browser: Browser, engine: AsyncEngine, screenshots: Path
) -> None:
    # The invoice email goes out through SMTP; its link is the way in.
    await service.run_worker()
    issued = service.sent("INV-")
    assert len(issued) == 1, [str(r.message["Subject"]) for r in service.smtp.messages]
    link = link_in(issued[0])

    # On a phone: the page reads right and fits the screen.
    phone = await open_page(browser, link, PHONE, is_mobile=True, has_touch=True)
    await expect(phone.locator("h1")).to_contain_text("Maria Rivera")
    assert await row_amount(phone, "Original subtotal") == Decimal("170.00")
    insurance = phone.locator("tr.credit", has_text="Insurance applied: AppleCare+")
    await expect(insurance).to_contain_text("2025-2026")
    assert money(await insurance.locator("td.amount").inner_text()) == Decimal("-141.00")
    assert await row_amount(phone, "Subtotal owed") == Decimal("29.00")
    assert await row_amount(phone, "Remaining balance") == Decimal("29.00")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px)"
    await phone.screenshot(path=str(screenshots / "phone.png"), full_page=True)
    await phone.context.close()

    # Opening the link recorded "viewed" on the email that carried it.
    async with session_factory(engine)() as session:
        viewed = await session.scalar(
            select(func.count()).select_from(m.Notice).where(m.Notice.viewed_at.is_not(None))
        )
    assert viewed == 1

    # On a desktop: pay $10.00 of it with the keyboard only, through the Stripe stand-in.
    page = await open_page(browser, link, DESKTOP)
    await page.screenshot(path=str(screenshots / "desktop.png"), full_page=True)
    amount = page.get_by_label("Amount to pay (dollars)")
    await amount.focus()
    await page.keyboard.type("10.00")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{service.stripe.base_url}/pay/*")
    await expect(page.locator("#amount")).to_have_text("$10.00")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"/family/.+\?paid=INV-"))
    await expect(page.locator(".banner")).to_contain_text("payment for invoice")
    await service.run_worker()  # applies the webhook's event and sends the receipt
    assert [p.amount_cents for p in await payments_recorded(engine, service.invoice_id)] == [1000]

    # The rest, leaving the amount empty: the full remaining balance.
    await page.goto(link)
    assert await row_amount(page, "Remaining balance") == Decimal("19.00")
    await page.get_by_role("button", name="Pay online").click()
    await page.wait_for_url(f"{service.stripe.base_url}/pay/*")
    await expect(page.locator("#amount")).to_have_text("$19.00")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"\?paid=INV-"))
    await service.run_worker()

    await page.goto(link)
    await expect(page.locator("h3 .status")).to_have_text("Paid")
    assert await row_amount(page, "Remaining balance") == Decimal("0.00")
    await expect(page.get_by_role("button", name="Pay online")).to_have_count(0)
    await page.screenshot(path=str(screenshots / "desktop-paid.png"), full_page=True)

    # Paid once per checkout, whatever Stripe redelivers; the invoice is settled.
    payments = await payments_recorded(engine, service.invoice_id)
    assert [(p.amount_cents, p.method) for p in payments] == [(1000, "online"), (1900, "online")]
    for session_id in list(service.stripe.sessions):
        delivery = await service.stripe.send(service.stripe.event_for(session_id))
        assert delivery.status == 200
    await service.run_worker()
    assert len(await payments_recorded(engine, service.invoice_id)) == 2
    async with session_factory(engine)() as session:
        invoice = await session.get(m.Invoice, service.invoice_id)
        assert invoice is not None and invoice.status == "paid"

    # Both receipts reach the parent.
    await service.run_worker()
    receipts = [r.message for r in service.smtp.messages if "maria@example.org" in r.rcpt_tos]
    receipt_bodies = [
        str(msg.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
        for msg in receipts[1:]
    ]
    assert len(receipt_bodies) == 2, [str(msg["Subject"]) for msg in receipts]
    assert "$10.00" in receipt_bodies[0] and "$19.00" in receipt_bodies[1]


async def test_a_bad_link_shows_a_clear_page_with_a_way_to_get_a_new_one(
    service: Service, browser: Browser, screenshots: Path
) -> None:
    await service.run_worker()
    link = link_in(service.sent("INV-")[0])
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    response = await page.goto(tampered)
    assert response is not None and response.status == 404
    await expect(page.locator("main")).not_to_contain_text("Rivera")
    await page.get_by_label(re.compile("email", re.IGNORECASE)).fill("maria@example.org")
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_contain_text("new link")
    await page.screenshot(path=str(screenshots / "bad-link.png"), full_page=True)
    await context.close()

    # The new link goes out by email and opens the page.
    await service.run_worker()
    fresh = service.sent("link")
    assert len(fresh) == 1, [str(r.message["Subject"]) for r in service.smtp.messages]
    page = await open_page(browser, link_in(fresh[0]), DESKTOP)
    await expect(page.locator("h1")).to_contain_text("Maria Rivera")


async def test_a_vietnamese_reading_parent_gets_the_email_and_the_page_in_vietnamese(
    service: Service, browser: Browser, engine: AsyncEngine
) -> None:
    async with session_factory(engine)() as session, session.begin():
        guardian = (await session.execute(select(m.Guardian))).scalars().one()
        guardian.preferred_language = "vi"
    await service.run_worker()
    issued = service.sent("INV-")
    assert len(issued) == 1
    assert str(issued[0]["Subject"]).startswith("Hóa đơn INV-")
    assert issued[0]["Content-Language"] == "vi"

    phone = await open_page(browser, link_in(issued[0]), PHONE, is_mobile=True, has_touch=True)
    assert await phone.get_attribute("html", "lang") == "vi"
    await expect(phone.locator("h1")).to_have_text("Hóa đơn của Maria Rivera")
    assert await row_amount(phone, "Tổng phụ ban đầu") == Decimal("170.00")
    assert await row_amount(phone, "Số tiền còn lại") == Decimal("29.00")
    await expect(phone.locator("button[type=submit]")).to_have_text("Thanh toán trực tuyến")
    # Vietnamese runs longer than English: the page must still fit a phone.
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px)"
    await phone.context.close()
