"""Billing digests: a guardian with several billing-run notices on one day gets one email.

The render tests build the context from model rows in memory. The end-to-end tests run the
billing run for a day, deliver the outbox with the real worker and sender to an aiosmtpd server,
and read the invoices' delivery state back from the store; replies and bounces go through the
real ingest pipeline and the Slack app's outbox handlers. They run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2 import UndefinedError
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.mail.ingest import Ingestor
from bot.mail.render import NoticeRenderer, build_context
from bot.mail.sender import notice_handlers
from bot.settings import Settings
from services.billing_run import DIGEST_TEMPLATE
from storage import models as m
from storage.db import session_factory
from storage.notice_queries import (
    DigestItem,
    NoticeData,
    NoticeDelivery,
    delivery_summary,
    load_notices,
    notices_for_invoice,
)
from storage.uow import UnitOfWorkFactory
from tests.integration.billing_helpers import add_family, add_invoice, at_run_time, runner
from tests.mail.conftest import email_bytes
from tests.mail.smtp_server import Received, SmtpServer
from tests.mail.test_ingest import billing_posts, dsn, shown
from tests.slack.conftest import SlackHarness
from workflows.clock import FixedClock
from workflows.district_facts import DistrictFacts

TZ = ZoneInfo("America/Chicago")
SECRET = "test-secret-key"  # the Slack harness's SECRET_KEY, so its ingest verifies our tokens
FROM = "billing@district.org"
TODAY = date(2026, 3, 18)
RUN_DAY = TODAY
DUE = date(2026, 4, 1)  # 14 days after the run day: the first pre-due reminder
LATE_DUE = date(2026, 3, 11)  # 7 days before it: the first overdue notice
BILLING_TEMPLATES = ("due_reminder", "overdue_first", "overdue_second", "overdue_final")


@pytest.fixture(scope="module")
def renderer() -> NoticeRenderer:
    return NoticeRenderer()


def _norm(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


# --- rendering, from rows in memory ---------------------------------------------------------


def _invoice(
    invoice_id: int,
    due: date,
    *,
    total_cents: int = 10_000,
    paid_cents: int = 0,
    insured: bool = False,
    cap_reached: bool = False,
    description: str = "Screen replacement",
) -> m.Invoice:
    """An invoice owing `total_cents`; when `insured`, AppleCare+ absorbed $96.00 of its cost."""
    snapshot = None
    if insured or cap_reached:
        snapshot = {
            "policy_name": "AppleCare+",
            "term_label": "2025-2026",
            "coverage_applied": insured,
            "cap_reached": cap_reached,
            "override_applied": False,
            "claim_number": 3 if cap_reached else 1,
            "max_claims": 2,
        }
    subtotal = total_cents + (9600 if insured else 0)
    invoice = m.Invoice(
        id=invoice_id,
        number=f"INV-{invoice_id:06d}",
        student_id=invoice_id,
        device_id=None,
        status="unpaid",
        subtotal_cents=subtotal,
        insurance_cents=9600 if insured else 0,
        total_cents=total_cents,
        paid_cents=paid_cents,
        waived_cents=0,
        refunded_cents=0,
        kind="incident",
        due_date=due,
        override_applied=False,
        insurance_snapshot=snapshot,
        created_at=datetime(2026, 1, 5, 16, tzinfo=UTC),
    )
    invoice.lines = [
        m.InvoiceLine(
            position=1,
            description=description,
            kind="part",
            quantity=1,
            unit_cents=subtotal,
            amount_cents=subtotal,
        )
    ]
    return invoice


def _notice(notice_id: int, template: str, invoice: m.Invoice, **kw: Any) -> m.Notice:
    return m.Notice(
        id=notice_id,
        invoice_id=invoice.id,
        guardian_id=3,
        template=template,
        dedupe_key=f"k{notice_id}",
        to_address="maria@example.org",
        message_id=f"<n{notice_id}@district.org>",
        context=kw.pop("context", {}),
        status=kw.pop("status", "digested"),
        digest_id=kw.pop("digest_id", 100),
        created_at=datetime(2026, 3, 18, 11, tzinfo=UTC),
    )


def _digest_data(
    entries: list[tuple[str, m.Invoice]],
    *,
    student_name: str = "Ana",
    language: str = "en",
) -> NoticeData:
    items = []
    for n, (template, invoice) in enumerate(entries):
        student = m.Student(
            id=invoice.student_id,
            sis_id=f"S{n}",
            first_name=student_name if n == 0 else f"Leo{n}",
            last_name="Rivera",
        )
        device = m.Device(id=n, serial=f"SN{n}", asset_tag=f"LMS-000{n}", model="HP 11 G9")
        items.append(
            DigestItem(_notice(200 + n, template, invoice), invoice, student, device if n else None)
        )
    first = items[0]
    digest = _notice(
        100,
        DIGEST_TEMPLATE,
        first.invoice,
        status="queued",
        digest_id=None,
        context={"notice_ids": [i.notice.id for i in items]},
    )
    return NoticeData(
        notice=digest,
        district_name="Lincoln Unified",
        guardian=m.Guardian(
            id=3,
            first_name="Maria",
            last_name="Rivera",
            email="maria@example.org",
            preferred_language=language,
        ),
        invoice=first.invoice,
        student=first.student,
        device=first.device,
        payment=None,
        pending=None,
        digest_items=tuple(items),
        district=DistrictFacts(
            name="Lincoln Unified", check_address="PO Box 100 / Lincoln, NE 68501"
        ),
    )


def _every_kind() -> NoticeData:
    return _digest_data(
        [
            ("due_reminder", _invoice(1, date(2026, 3, 25), total_cents=2900, insured=True)),
            ("overdue_first", _invoice(2, date(2026, 3, 11), total_cents=4550)),
            ("overdue_second", _invoice(3, date(2026, 3, 4), total_cents=1000, cap_reached=True)),
            ("overdue_final", _invoice(4, date(2026, 2, 1), total_cents=7500, paid_cents=2500)),
        ]
    )


def _context(data: NoticeData) -> dict[str, Any]:
    return build_context(data, today=TODAY, tz=TZ)


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_digest_renders_in_both_languages(renderer: NoticeRenderer, language: str) -> None:
    out = renderer.render(DIGEST_TEMPLATE, _context(_every_kind()), language)
    assert out.language == language
    assert out.subject and "\n" not in out.subject and len(out.subject) < 150
    assert "4" in out.subject and "$134.50" in out.subject  # 29 + 45.50 + 10 + (75 - 25)
    for part in (out.text, out.html):
        for number in ("INV-000001", "INV-000002", "INV-000003", "INV-000004"):
            assert number in part
        assert "Lincoln Unified" in part and "Maria Rivera" in part
        assert "None" not in part and "{{" not in part and "{%" not in part
    assert out.html.lstrip().startswith("<!DOCTYPE html>") and out.html.rstrip().endswith("</html>")
    assert f'<html lang="{language}">' in out.html
    assert "<" not in out.text
    assert max(len(line) for line in out.text.splitlines()) <= 80


def test_each_entry_says_what_its_own_notice_would_have(renderer: NoticeRenderer) -> None:
    out = renderer.render(DIGEST_TEMPLATE, _context(_every_kind()))
    text = " ".join(out.text.split())
    assert out.subject == (
        "FINAL NOTICE included: 4 invoices from Lincoln Unified: $134.50 owed for school devices"
    )
    assert "1) Reminder: due in 7 days (March 25, 2026)" in text
    assert "2) 1st overdue notice: 7 days past due (due March 11, 2026)" in text
    assert "3) 2nd overdue notice: 14 days past due (due March 4, 2026)" in text
    assert "4) FINAL NOTICE: 45 days past due (due February 1, 2026)" in text
    assert "may refer this debt to a collections agency" in text
    assert text.count("collections agency") == 1  # only the final entry warns
    lines = _norm(out.text)
    # Each invoice as the single notices show it: lines, insurance audit, balance.
    assert "Invoice INV-000001 for Ana Rivera" in lines
    assert "Insurance applied: AppleCare+ (2025-2026) −$96.00" in lines
    assert "Invoice INV-000002 for Leo1 Rivera" in lines
    assert "Device: HP 11 G9 (asset tag LMS-0001)" in lines
    assert "Remaining balance $45.50" in lines
    assert any("AppleCare+ (2025-2026) had already covered its limit" in line for line in lines)
    assert "Paid so far −$25.00" in lines and "Remaining balance $50.00" in lines
    assert "Total owed on these 4 invoices $134.50" in lines
    assert "How to pay" in lines
    assert "invoice number INV-000001, INV-000002, INV-000003, INV-000004 on it" in text

    html = " ".join(out.html.split())
    assert "1. Reminder: due in 7 days (March 25, 2026)</p>" in html
    assert "4. Final notice: 45 days past due (due February 1, 2026)</p>" in html
    assert "Insurance applied: AppleCare+ (2025-2026)</td>" in html and "&minus;$96.00" in html
    assert "Total owed on these 4 invoices</td>" in html and ">$134.50</td>" in html
    assert "write invoice number INV-000001, INV-000002, INV-000003, INV-000004 on it" in html


def test_the_spanish_digest(renderer: NoticeRenderer) -> None:
    out = renderer.render(DIGEST_TEMPLATE, _context(_every_kind()), "es-MX")
    text = " ".join(out.text.split())
    assert out.subject == (
        "AVISO FINAL incluido: 4 facturas de Lincoln Unified: $134.50 pendientes por "
        "dispositivos escolares"
    )
    assert text.startswith("Estimado/a Maria Rivera:")
    assert "1) Recordatorio: vence en 7 días (25 de marzo de 2026)" in text
    assert "2) Primer aviso de atraso: 7 días de atraso (venció el 11 de marzo de 2026)" in text
    assert "3) Segundo aviso de atraso: 14 días de atraso (venció el 4 de marzo de 2026)" in text
    assert "4) AVISO FINAL: 45 días de atraso (venció el 1 de febrero de 2026)" in text
    assert "agencia de cobranza" in text
    lines = _norm(out.text)
    assert "Factura INV-000002 de Leo1 Rivera" in lines
    assert "Seguro aplicado: AppleCare+ (2025-2026) −$96.00" in lines
    assert "Total pendiente de estas 4 facturas $134.50" in lines
    assert "Cómo pagar" in lines
    assert "Total pendiente de estas 4 facturas</td>" in " ".join(out.html.split())


def test_two_reminders_and_the_day_phrases(renderer: NoticeRenderer) -> None:
    data = _digest_data(
        [
            ("due_reminder", _invoice(1, date(2026, 3, 19))),
            ("due_reminder", _invoice(2, TODAY)),
        ]
    )
    out = renderer.render(DIGEST_TEMPLATE, _context(data))
    assert out.subject == "2 invoices from Lincoln Unified: $200.00 owed for school devices"
    assert "final notice" not in out.text.lower() and "collections" not in out.text
    text = " ".join(out.text.split())
    assert "1) Reminder: due tomorrow (March 19, 2026)" in text
    assert "2) Reminder: due today (March 18, 2026)" in text
    es = renderer.render(DIGEST_TEMPLATE, _context(data), "es")
    es_text = " ".join(es.text.split())
    assert "1) Recordatorio: vence mañana (19 de marzo de 2026)" in es_text
    assert "2) Recordatorio: vence hoy (18 de marzo de 2026)" in es_text


def test_a_digest_left_with_one_invoice_reads_as_one(renderer: NoticeRenderer) -> None:
    data = _digest_data([("overdue_final", _invoice(1, date(2026, 2, 1)))])
    out = renderer.render(DIGEST_TEMPLATE, _context(data))
    assert out.subject.startswith("FINAL NOTICE included: 1 invoice from Lincoln Unified")
    assert "It is a FINAL NOTICE" in out.text
    assert "Total owed on this invoice $100.00" in _norm(out.text)


def test_a_missing_variable_fails_the_digest(renderer: NoticeRenderer) -> None:
    for language in ("en", "es"):
        ctx = _context(_every_kind())
        del ctx["digest"]
        with pytest.raises(UndefinedError):
            renderer.render(DIGEST_TEMPLATE, ctx, language)
        ctx = _context(_every_kind())
        del ctx["digest"]["entries"][1]["invoice"]["balance_cents"]
        with pytest.raises(UndefinedError):
            renderer.render(DIGEST_TEMPLATE, ctx, language)
        ctx = _context(_every_kind())
        del ctx["digest"]["entries"][0]["days_until_due"]
        with pytest.raises(UndefinedError):
            renderer.render(DIGEST_TEMPLATE, ctx, language)


def test_the_digest_escapes_what_people_typed(renderer: NoticeRenderer) -> None:
    data = _digest_data(
        [
            ("due_reminder", _invoice(1, DUE, description="<img src=x onerror=alert(1)>")),
            ("due_reminder", _invoice(2, DUE)),
        ],
        student_name="<script>x</script>",
    )
    out = renderer.render(DIGEST_TEMPLATE, _context(data))
    assert "<script>" not in out.html and "<img" not in out.html
    assert "&lt;script&gt;x&lt;/script&gt; Rivera" in out.html
    assert "<script>x</script> Rivera" in out.text


def test_other_notices_have_no_digest() -> None:
    data = _every_kind()
    data.digest_items = ()
    assert _context(data)["digest"] is None
    ctx = _context(_every_kind())
    assert ctx["invoice"]["number"] == "INV-000001"  # the digest's own invoice is the first
    assert [e["kind"] for e in ctx["digest"]["entries"]] == ["reminder", "first", "second", "final"]
    assert ctx["digest"]["numbers"] == ["INV-000001", "INV-000002", "INV-000003", "INV-000004"]
    assert (ctx["digest"]["count"], ctx["digest"]["balance_cents"]) == (4, 13_450)


@pytest.mark.parametrize("template", BILLING_TEMPLATES)
def test_the_billing_cycle_in_spanish(renderer: NoticeRenderer, template: str) -> None:
    invoice = _invoice(1, date(2026, 3, 25) if template == "due_reminder" else date(2026, 2, 1))
    data = _digest_data([(template, invoice)], language="es")
    data.notice, data.digest_items = data.digest_items[0].notice, ()
    ctx = _context(data)
    out = renderer.render(template, ctx, "es")
    assert out.language == "es"
    assert "INV-000001" in out.subject and "\n" not in out.subject
    for part in (out.text, out.html):
        assert "Estimado/a Maria Rivera:" in part
        assert "None" not in part and "{{" not in part
        assert "Saldo pendiente" in part and "Cómo pagar" in part
    assert "<" not in out.text and max(len(line) for line in out.text.splitlines()) <= 80
    text = " ".join(out.text.split())
    expected = {
        "due_reminder": "vence el 25 de marzo de 2026 (en 7 días)",
        "overdue_first": "(45 días de atraso)",
        "overdue_second": "SEGUNDO AVISO",
        "overdue_final": "AVISO FINAL",
    }[template]
    assert expected in text
    assert ("agencia de cobranza" in text) == (template == "overdue_final")
    for key in ("days_until_due" if template == "due_reminder" else "days_overdue", "invoice"):
        broken = dict(ctx)
        del broken[key]
        with pytest.raises(UndefinedError):
            renderer.render(template, broken, "es")


def test_delivery_summary_of_digest_members() -> None:
    at = datetime(2026, 3, 18, 15, tzinfo=UTC)

    def member(status: str, **kw: Any) -> NoticeDelivery:
        return NoticeDelivery(
            id=1,
            template=kw.pop("template", "due_reminder"),
            to_address="maria@example.org",
            status=status,
            created_at=at,
            sent_at=at if status == "sent" else None,
            bounced_at=kw.pop("bounced_at", None),
            last_error=kw.pop("last_error", None),
            attempts=1,
            digest_id=kw.pop("digest_id", 9),
            digest_with=kw.pop("digest_with", ("INV-000002",)),
        )

    assert delivery_summary([member("sent")], TZ) == (
        "Reminder emailed to maria@… Mar 18 (in a digest with INV-000002)"
    )
    assert delivery_summary(
        [
            member("failed", template="overdue_first", last_error="mailbox unavailable"),
            member("bounced", bounced_at=at, digest_with=("INV-000002", "INV-000003")),
            member("queued", digest_with=()),
            member("digested", digest_id=None, digest_with=()),
        ],
        TZ,
    ) == (
        "1st overdue to maria@… failed (mailbox unavailable) (in a digest with INV-000002) · "
        "Reminder to maria@… bounced Mar 18 (in a digest with INV-000002, INV-000003) · "
        "Reminder to maria@… queued (in a digest) · "
        "Reminder to maria@… not sent (its digest was removed)"
    )


# --- end to end: the billing run, the worker, the SMTP server -------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def mail_settings(port: int) -> Settings:
    return Settings(
        _env_file=None,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from=FROM,
        smtp_timeout=5.0,
        secret_key=SECRET,
        district_timezone="America/Chicago",
    )


async def deliver(engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer) -> int:
    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock),
        clock,
        notice_handlers(mail_settings(smtp.port), clock),
    )
    total = 0
    try:
        while handled := await worker.run_once():
            total += handled
    finally:
        await worker.close()
    return total


@dataclass
class Billed:
    """Three families billed on the same day (see `bill_three_families`)."""

    rivera: tuple[int, int]  # two students' invoices, two guardians
    garcia: tuple[int, int]  # a reminder and a first overdue notice, a Spanish-speaking guardian
    chen: int  # one invoice, one guardian
    numbers: dict[int, str]


async def bill_three_families(stores: UnitOfWorkFactory) -> Billed:
    rivera_students, _ = await add_family(stores, "Rivera", guardians=2, students=2)
    garcia_students, (garcia_guardian,) = await add_family(stores, "Garcia", students=2)
    (chen_student,), _ = await add_family(stores, "Chen")
    created = date(2026, 1, 5)
    rivera = (
        await add_invoice(stores, rivera_students[0], created=created, due=DUE),
        await add_invoice(stores, rivera_students[1], created=created, due=DUE, total_cents=4550),
    )
    garcia = (
        await add_invoice(stores, garcia_students[0], created=created, due=DUE, total_cents=2900),
        await add_invoice(
            stores, garcia_students[1], created=created, due=LATE_DUE, total_cents=7500
        ),
    )
    chen = await add_invoice(stores, chen_student, created=created, due=DUE, total_cents=6000)
    async with stores() as store:
        await store.session.execute(
            update(m.Guardian)
            .where(m.Guardian.id == garcia_guardian)
            .values(preferred_language="es")
        )
        rows = await store.session.execute(select(m.Invoice.id, m.Invoice.number))
        numbers = {invoice_id: number for invoice_id, number in rows.all()}
        await store.commit()
    return Billed(rivera, garcia, chen, numbers)


async def run_the_day(engine: AsyncEngine, clock: FixedClock) -> None:
    clock.set(at_run_time(RUN_DAY))
    result = await runner(engine, clock).run(RUN_DAY)
    assert result.ran and result.totals is not None
    # Rivera: one digest each for two guardians; Garcia: one digest; Chen: the reminder itself.
    assert (result.totals.emails_queued, result.totals.digests) == (4, 3)


def by_recipient(received: list[Received]) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for r in received:
        for to in r.rcpt_tos:
            found.setdefault(to, []).append(r.message)
    return found


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return " ".join(text.get_content().split()), " ".join(html.get_content().split())


async def summary(engine: AsyncEngine, invoice_id: int) -> str:
    async with session_factory(engine)() as session:
        return delivery_summary(await notices_for_invoice(session, invoice_id), TZ)


async def test_one_email_per_guardian_for_the_day(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    billed = await bill_three_families(stores)
    await run_the_day(engine, clock)
    assert await deliver(engine, clock, smtp) == 4
    assert await deliver(engine, clock, smtp) == 0

    mail = by_recipient(smtp.messages)
    assert sorted(mail) == [
        "chen0@example.org",
        "garcia0@example.org",
        "rivera0@example.org",
        "rivera1@example.org",
    ]
    assert all(len(messages) == 1 for messages in mail.values())
    n = billed.numbers

    # The Riveras: both students' invoices in one email each, in English.
    for address in ("rivera0@example.org", "rivera1@example.org"):
        [msg] = mail[address]
        assert msg["Content-Language"] == "en"
        assert str(msg["Subject"]).startswith("2 invoices: ")  # no district name is set
        assert "$145.50 owed" in str(msg["Subject"])
        text, html = parts(msg)
        for part in (text, html):
            assert n[billed.rivera[0]] in part and n[billed.rivera[1]] in part
            assert "$100.00" in part and "$45.50" in part and "$145.50" in part
            assert "Reminder: due in 14 days (April 1, 2026)" in part
        assert "Total owed on these 2 invoices $145.50" in text
        assert f"Invoice {n[billed.rivera[1]]} for Kid1 Rivera" in text

    # The Garcias: a reminder and a first overdue notice, in Spanish.
    [garcia] = mail["garcia0@example.org"]
    assert garcia["Content-Language"] == "es"
    assert str(garcia["Subject"]) == ("2 facturas: $104.00 pendientes por dispositivos escolares")
    text, html = parts(garcia)
    for part in (text, html):
        assert n[billed.garcia[0]] in part and n[billed.garcia[1]] in part
        assert "Recordatorio: vence en 14 días (1 de abril de 2026)" in part
        assert "Primer aviso de atraso: 7 días de atraso (venció el 11 de marzo de 2026)" in part
        assert "$29.00" in part and "$75.00" in part and "$104.00" in part
    assert "Cómo pagar" in text and "Estimado/a Parent0 Garcia:" in text

    # The Chens: one invoice, so the ordinary reminder.
    [chen] = mail["chen0@example.org"]
    assert str(chen["Subject"]) == (
        f"Reminder: invoice {n[billed.chen]} ($60.00) is due in 14 days"
    )

    # Every invoice's delivery line shows the email that carried it.
    r0, r1 = (n[i] for i in billed.rivera)
    assert await summary(engine, billed.rivera[0]) == (
        f"Reminder emailed to rivera0@… Mar 18 (in a digest with {r1}) · "
        f"Reminder emailed to rivera1@… Mar 18 (in a digest with {r1})"
    )
    assert await summary(engine, billed.rivera[1]) == (
        f"Reminder emailed to rivera0@… Mar 18 (in a digest with {r0}) · "
        f"Reminder emailed to rivera1@… Mar 18 (in a digest with {r0})"
    )
    assert await summary(engine, billed.garcia[1]) == (
        f"1st overdue emailed to garcia0@… Mar 18 (in a digest with {n[billed.garcia[0]]})"
    )
    assert await summary(engine, billed.chen) == "Reminder emailed to chen0@… Mar 18"

    # The run's members stay "digested" (its counts rely on it); the digests were sent.
    async with session_factory(engine)() as session:
        rows = (
            await session.execute(select(m.Notice.template, m.Notice.status).order_by(m.Notice.id))
        ).all()
    assert sorted(set(rows)) == [
        ("billing_digest", "sent"),
        ("due_reminder", "digested"),
        ("due_reminder", "sent"),
        ("overdue_first", "digested"),
    ]


async def test_a_refused_digest_fails_on_every_invoice_it_covered(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    billed = await bill_three_families(stores)
    await run_the_day(engine, clock)
    smtp.refuse("rivera1@example.org")
    assert await deliver(engine, clock, smtp) == 4
    r0, r1 = (billed.numbers[i] for i in billed.rivera)
    line = await summary(engine, billed.rivera[1])
    assert line.startswith(f"Reminder emailed to rivera0@… Mar 18 (in a digest with {r0}) · ")
    assert "Reminder to rivera1@… failed (" in line and "550" in line
    assert line.endswith(f"(in a digest with {r0})")
    assert "Reminder to rivera1@… failed (" in await summary(engine, billed.rivera[0])


async def test_loading_digests_takes_the_same_queries_for_any_batch(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await bill_three_families(stores)
    await run_the_day(engine, clock)
    async with session_factory(engine)() as session:
        queued = list(
            (
                await session.execute(
                    select(m.Notice.id).where(m.Notice.status == "queued").order_by(m.Notice.id)
                )
            ).scalars()
        )
        templates = list(
            (
                await session.execute(
                    select(m.Notice.template).where(m.Notice.id.in_(queued)).order_by(m.Notice.id)
                )
            ).scalars()
        )
    assert templates.count(DIGEST_TEMPLATE) == 3 and len(queued) == 4

    async def queries_to_load(ids: list[int]) -> tuple[int, dict[int, NoticeData]]:
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            async with session_factory(engine)() as session:
                loaded = await load_notices(session, ids)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        return len(statements), loaded

    single = queued[templates.index("due_reminder")]
    first_digest = queued[templates.index(DIGEST_TEMPLATE)]
    plain, _ = await queries_to_load([single])
    one, _ = await queries_to_load([first_digest])
    every, loaded = await queries_to_load(queued)
    assert one == every == plain + 1  # the digests' members, all in one query
    digests = [d for d in loaded.values() if d.notice.template == DIGEST_TEMPLATE]
    assert sorted(len(d.digest_items) for d in digests) == [2, 2, 2]
    for data in digests:
        assert data.invoice is not None
        assert data.digest_items[0].invoice.id == data.invoice.id  # the first is its own
        assert all(item.notice.digest_id == data.notice.id for item in data.digest_items)
        assert all(item.student is not None for item in data.digest_items)


# --- replies and bounces --------------------------------------------------------------------


async def test_a_reply_to_a_digest_names_its_invoices_and_a_bounce_reaches_them(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,
    slack: SlackHarness,
) -> None:
    billed = await bill_three_families(stores)
    await run_the_day(engine, clock)
    await deliver(engine, clock, smtp)
    [sent] = by_recipient(smtp.messages)["rivera0@example.org"]
    r0, r1 = (billed.numbers[i] for i in billed.rivera)
    ingestor = Ingestor.from_runtime(slack.runtime)

    # A reply to the digest's Reply-To routes to its own (first) invoice, from a guardian.
    reply_to = parseaddr(str(sent["Reply-To"]))[1]
    result = await ingestor.ingest(
        email_bytes(
            to=reply_to,
            sender="Parent0 Rivera <rivera0@example.org>",
            subject=f"Re: {sent['Subject']}",
            in_reply_to=str(sent["Message-ID"]),
            body="Can we pay these at the school office on Friday?",
        )
    )
    assert (result.route, result.status, result.invoice_id) == (
        "token",
        "routed",
        billed.rivera[0],
    )
    # In-Reply-To alone routes the same way.
    result = await ingestor.ingest(
        email_bytes(
            to=FROM,
            sender="Parent0 Rivera <rivera0@example.org>",
            in_reply_to=str(sent["Message-ID"]),
            body="And one more question.",
        )
    )
    assert (result.route, result.status, result.invoice_id) == (
        "thread",
        "routed",
        billed.rivera[0],
    )
    await slack.deliver_outbox()
    posts = [shown(p) for p in billing_posts(slack) if "Reply from" in shown(p)]
    assert len(posts) == 2  # (the run's own summary is posted there too)
    for post in posts:
        assert f"A reply to one email about 2 invoices ({r0}, {r1}); filed under {r0}." in post

    # The digest bounces: every invoice it covered shows it.
    bounce = await ingestor.ingest(dsn("rivera0@example.org", str(sent["Message-ID"])))
    assert (bounce.kind, bounce.status, bounce.invoice_id) == (
        "bounce",
        "recorded",
        billed.rivera[0],
    )
    for invoice_id, other in ((billed.rivera[0], r1), (billed.rivera[1], r0)):
        line = await summary(engine, invoice_id)
        assert line.startswith(f"Reminder to rivera0@… bounced Mar 18 (in a digest with {other})")
        assert line.endswith(f"Reminder emailed to rivera1@… Mar 18 (in a digest with {other})")


async def test_reminders_for_invoices_settled_before_sending_are_withdrawn(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    billed = await bill_three_families(stores)
    await run_the_day(engine, clock)
    # Before the worker gets to them: the Chens pay in full and one Rivera invoice is paid.
    async with stores() as store:
        for invoice_id in (billed.chen, billed.rivera[1]):
            invoice = await store.invoices.get(invoice_id)
            assert invoice is not None
            invoice.paid_cents, invoice.status = invoice.total_cents, "paid"
        await store.commit()
    assert await deliver(engine, clock, smtp) == 4  # every row settled, one way or the other

    mail = by_recipient(smtp.messages)
    assert "chen0@example.org" not in mail
    [rivera] = mail["rivera0@example.org"]
    text, _html = parts(rivera)
    n = billed.numbers
    assert n[billed.rivera[0]] in text and n[billed.rivera[1]] not in text
    # The digest keeps only what is still owed.
    assert str(rivera["Subject"]) == "1 invoice: $100.00 owed for school devices"
    assert "not sent: the invoice was settled first" in await summary(engine, billed.chen)


async def test_a_crash_after_sending_then_a_rerun_sends_nothing_twice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    await bill_three_families(stores)
    await run_the_day(engine, clock)
    assert await deliver(engine, clock, smtp) == 4
    # The process dies after the emails went out but before the run was marked complete.
    async with stores() as store:
        run = await store.session.get(m.BillingRun, RUN_DAY)
        assert run is not None
        run.status, run.finished_at = "running", None
        await store.commit()
    again = await runner(engine, clock).run(RUN_DAY)
    assert again.ran and again.totals is not None
    assert await deliver(engine, clock, smtp) == 0
    assert len(smtp.messages) == 4
