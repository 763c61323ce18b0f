"""The district's facts in every email, the ways to pay each only when available, and every
kind of notice in Spanish for a Spanish-speaking guardian."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.mail.render import FamilyLinks, NoticeRenderer, build_context
from services.billing_run import DIGEST_TEMPLATE
from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_billing_digest import _every_kind as digest_of_every_kind
from tests.mail.test_render import INSTALLMENT, LINKS, SPANISH, TODAY, TZ, full_context
from tests.mail.test_render import _data as render_data
from tests.mail.test_sender import drain, issue_invoice, mail_settings, make_worker
from workflows.administration import change_district_facts
from workflows.clock import FixedClock
from workflows.district_facts import DistrictFacts
from workflows.invoices import NoticeTemplate
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

FACTS = DistrictFacts(
    name="Lakeview Unified",
    check_payable_to="Lakeview Unified School District",
    check_address="Business Office\n410 Harbor Rd\nLakeview, MN 55001",
    office_phone="(555) 010-4477",
    office_hours="Mon-Fri 8:00-4:00",
    office_email="billing@lakeview.example",
)
ADDRESS = "Business Office, 410 Harbor Rd, Lakeview, MN 55001"
KINDS = [*NoticeTemplate, DIGEST_TEMPLATE]
HOW_TO_PAY = {
    NoticeTemplate.INVOICE_ISSUED,
    NoticeTemplate.DUE_REMINDER,
    NoticeTemplate.OVERDUE_FIRST,
    NoticeTemplate.OVERDUE_SECOND,
    NoticeTemplate.OVERDUE_FINAL,
    NoticeTemplate.PAYMENT_PLAN_CONFIRMATION,
    NoticeTemplate.INSTALLMENT_MISSED,
    DIGEST_TEMPLATE,
}
PLACEHOLDERS = re.compile(
    r"Our District|None|payable to ,| to ,|\(\)|(Phone|Email|Office hours): *$", re.MULTILINE
)


@pytest.fixture(scope="module")
def renderer() -> NoticeRenderer:
    return NoticeRenderer()


def context(
    template: str, facts: DistrictFacts, links: FamilyLinks | None = LINKS
) -> dict[str, Any]:
    if template == DIGEST_TEMPLATE:
        data = dataclasses.replace(digest_of_every_kind(), district=facts)
        return build_context(data, today=TODAY, tz=TZ, links=links)
    base = full_context(notice_extra=INSTALLMENT if template == "installment_missed" else None)
    data = render_data(template, context=base["extra"])
    data = dataclasses.replace(data, district=facts)
    return build_context(data, today=TODAY, tz=TZ, links=links)


def flat(text: str) -> str:
    return " ".join(text.split())


# --- the facts in every email -------------------------------------------------------------


@pytest.mark.parametrize("template", KINDS)
@pytest.mark.parametrize("language", ["en", "es"])
def test_every_email_names_the_district_and_its_office(
    renderer: NoticeRenderer, template: str, language: str
) -> None:
    out = renderer.render(template, context(template, FACTS), language)
    for body in (out.text, out.html):
        assert "Lakeview Unified" in body
        assert "(555) 010-4477" in body
        assert "billing@lakeview.example" in body
        assert "Mon-Fri 8:00-4:00" in body
        assert "Our District" not in body
    if template in HOW_TO_PAY:
        assert ADDRESS in flat(out.text) and ADDRESS in flat(out.html)
        assert "Lakeview Unified School District" in flat(out.text)


@pytest.mark.parametrize("template", KINDS)
@pytest.mark.parametrize("language", ["en", "es"])
def test_a_fact_not_set_leaves_its_sentence_out(
    renderer: NoticeRenderer, template: str, language: str
) -> None:
    no_links = FamilyLinks("https://devicecare.lincoln.example", "s", 45)
    out = renderer.render(template, context(template, DistrictFacts(), no_links), language)
    for body in (out.subject, out.text):
        assert not PLACEHOLDERS.search(body), PLACEHOLDERS.search(body)
    for body in (out.text, out.html):
        assert "Our District" not in body and "None" not in body
        assert "Phone:" not in body and "Teléfono:" not in body
        assert "payable to" not in body and "a nombre de" not in body
        assert "By mail" not in body and "Por correo postal" not in body
        assert "In person" not in body and "En persona" not in body
    assert "from :" not in out.subject and " de :" not in out.subject
    if template in HOW_TO_PAY:
        # Nothing is set up: the family is asked to reply, and no way to pay is made up.
        assert (
            "tell you how you can pay" in out.text
            if language == "en"
            else "le diremos cómo puede pagar" in out.text
        )


def test_the_name_alone_changes_the_subject_and_footer(renderer: NoticeRenderer) -> None:
    named = renderer.render("invoice_issued", context("invoice_issued", DistrictFacts("Lakeview")))
    bare = renderer.render("invoice_issued", context("invoice_issued", DistrictFacts()))
    assert named.subject.startswith("Invoice INV-000007 from Lakeview: $29.00")
    assert bare.subject.startswith("Invoice INV-000007: $29.00")
    assert "sent automatically by Lakeview about" in flat(named.text)
    assert "sent automatically about a student device" in flat(bare.text)
    assert "Replies go to the billing office" in flat(bare.text)


def test_checks_are_payable_to_the_name_unless_told_otherwise(renderer: NoticeRenderer) -> None:
    facts = DistrictFacts(name="Lakeview Unified", check_address="PO Box 12\nLakeview, MN 55001")
    text = flat(renderer.render("invoice_issued", context("invoice_issued", facts)).text)
    assert (
        "By mail: send a check payable to Lakeview Unified to PO Box 12, Lakeview, MN 55001, "
        "and write invoice number INV-000007 on it." in text
    )
    # Without a name or payee, the check line still gives the address and no empty payee.
    facts = DistrictFacts(check_address="PO Box 12\nLakeview, MN 55001")
    text = flat(renderer.render("invoice_issued", context("invoice_issued", facts)).text)
    assert "By mail: send a check to PO Box 12, Lakeview, MN 55001, and write" in text


# --- a way to pay only when it is available ---------------------------------------------------

LINES = {
    "en": {
        "online": "- Online: see the invoice and pay at",
        "portal": "- Pay at RevTrak:",
        "check_by_mail": "- By mail: send a check",
        "in_person": "- In person: cash or a check at the business office (Mon-Fri 8:00-4:00).",
        "none": "- Reply to this email and we'll tell you how you can pay.",
    },
    "es": {
        "online": "- En línea: vea la factura y pague en",
        "portal": "- Pague en RevTrak:",
        "check_by_mail": "- Por correo postal: envíe un cheque",
        "in_person": "- En persona: en efectivo o con cheque en la oficina de finanzas "
        "(Mon-Fri 8:00-4:00).",
        "none": "- Responda a este correo y le diremos cómo puede pagar.",
    },
}
HTML = {
    "en": {
        "online": "<strong>Online:</strong>",
        "portal": "<strong>Pay at RevTrak</strong>",
        "check_by_mail": "<strong>By mail:</strong>",
        "in_person": "<strong>In person:</strong>",
        "none": "we'll tell you how you can pay",
    },
    "es": {
        "online": "<strong>En línea:</strong>",
        "portal": "<strong>Pague en RevTrak</strong>",
        "check_by_mail": "<strong>Por correo postal:</strong>",
        "in_person": "<strong>En persona:</strong>",
        "none": "le diremos cómo puede pagar",
    },
}
COMBINATIONS = list(itertools.product([False, True], repeat=4))


def _ids(combo: tuple[bool, ...]) -> str:
    names = ("online", "portal", "mail", "office")
    return "+".join(n for n, on in zip(names, combo, strict=True) if on) or "nothing"


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("combo", COMBINATIONS, ids=_ids)
def test_each_way_to_pay_shows_only_when_available(
    renderer: NoticeRenderer, language: str, combo: tuple[bool, bool, bool, bool]
) -> None:
    stripe, portal, address, hours = combo
    facts = DistrictFacts(
        name="Lakeview Unified",
        check_address=FACTS.check_address if address else "",
        office_hours=FACTS.office_hours if hours else "",
    )
    links = dataclasses.replace(
        LINKS,
        stripe=stripe,
        pay_online=stripe or portal,
        portal_template=LINKS.portal_template if portal else None,
    )
    out = renderer.render("invoice_issued", context("invoice_issued", facts, links), language)
    text = out.text[out.text.index("Cómo pagar" if language == "es" else "How to pay") :]
    html = out.html
    expected = {
        "online": stripe or portal,  # the family page offers Stripe's form or the portal
        "portal": portal,
        "check_by_mail": address,
        "in_person": hours,
        "none": not any(combo),
    }
    for way, shown in expected.items():
        assert (flat(LINES[language][way]) in flat(text)) is shown, (way, text)
        assert (HTML[language][way] in html) is shown, (way, html)
    if address:
        assert ADDRESS in flat(text)


@pytest.mark.parametrize("language", ["en", "es"])
def test_digest_offers_the_same_ways(renderer: NoticeRenderer, language: str) -> None:
    links = dataclasses.replace(LINKS, stripe=False, pay_online=False, portal_template=None)
    facts = DistrictFacts(check_address="PO Box 12\nLakeview, MN 55001")
    out = renderer.render(DIGEST_TEMPLATE, context(DIGEST_TEMPLATE, facts, links), language)
    assert LINES[language]["check_by_mail"] in flat(out.text)
    assert LINES[language]["online"].split(":")[0] + ":" not in out.text
    assert LINES[language]["in_person"].split(":")[0] + ":" not in out.text


# --- every kind in the family's language -------------------------------------------------------


@pytest.mark.parametrize("template", KINDS)
def test_a_spanish_speaking_guardian_gets_spanish_for_every_kind(
    renderer: NoticeRenderer, template: str
) -> None:
    out = renderer.render(template, context(template, FACTS), "es-MX")
    assert out.language == "es"
    assert "Estimado/a" in out.text and "Dear " not in out.text
    assert "Questions?" not in out.text and "¿Preguntas?" in out.text
    assert '<html lang="es">' in out.html


def test_every_kind_ships_in_spanish() -> None:
    assert {*SPANISH, DIGEST_TEMPLATE} == set(KINDS)


# --- through the worker and a real SMTP server ----------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def _bodies(received: Any) -> tuple[str, str]:
    msg = received.message
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("language", ["en", "es"])
async def test_facts_set_by_staff_reach_the_family(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,
    language: str,
) -> None:
    issued = await issue_invoice(stores, clock)
    admin = await add_staff(stores, "SuperAdmin")
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        guardian.preferred_language = language
        await change_district_facts(
            Context(store, clock, TZ),
            admin,
            {
                "name": FACTS.name,
                "check_address": "Business Office / 410 Harbor Rd / Lakeview, MN 55001",
                "office_phone": FACTS.office_phone,
                "office_hours": FACTS.office_hours,
                "office_email": FACTS.office_email,
            },
        )
        await store.commit()
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=issued.invoice_id,
                amount_cents=900,
                method=PaymentMethod.CHECK,
                reference="1043",
                idempotency_key="part",
            ),
        )
        await store.commit()
    settings = mail_settings(smtp.port, public_base_url="https://devicecare.lakeview.example")
    assert await drain(make_worker(engine, clock, settings)) == 2
    invoice_mail, receipt = smtp.messages
    assert invoice_mail.message["Content-Language"] == language
    assert receipt.message["Content-Language"] == language
    assert "Lakeview Unified" in str(invoice_mail.message["Subject"])
    for received in (invoice_mail, receipt):
        text, html = _bodies(received)
        for body in (text, html):
            assert "(555) 010-4477" in body and "billing@lakeview.example" in body
            assert "Our District" not in body
    text, html = _bodies(invoice_mail)
    assert ADDRESS in flat(text) and ADDRESS in flat(html)
    # Stripe and the portal are off: online payment isn't offered.
    assert LINES[language]["online"] not in text
    assert flat(LINES[language]["in_person"]) in flat(text)
