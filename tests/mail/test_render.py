"""Notice templates: every one renders in text and HTML, fails loudly, escapes, and adds up."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2 import UndefinedError

from bot.mail.render import (
    DEFAULT_TEMPLATES_DIR,
    FamilyLinks,
    NoticeRenderer,
    TemplateMissing,
    build_context,
    format_long_date,
    language_candidates,
    money,
    wrap_text,
)
from storage import models as m
from storage.notice_queries import NoticeData, NoticeDelivery, delivery_summary
from workflows.invoices import NoticeTemplate

TZ = ZoneInfo("America/Chicago")
TODAY = date(2026, 3, 2)
SPANISH = set(NoticeTemplate)
# Variables each template can't do without (deleting one must fail the render).
NEEDS: dict[str, tuple[str, ...]] = {
    NoticeTemplate.INVOICE_ISSUED: (),
    NoticeTemplate.DUE_REMINDER: ("days_until_due",),
    NoticeTemplate.OVERDUE_FIRST: ("days_overdue",),
    NoticeTemplate.OVERDUE_SECOND: ("days_overdue",),
    NoticeTemplate.OVERDUE_FINAL: ("days_overdue",),
    NoticeTemplate.PAYMENT_RECEIPT: ("payment",),
    NoticeTemplate.PENDING_PAYMENT_ACK: ("pending",),
    NoticeTemplate.PAYMENT_PLAN_CONFIRMATION: ("plan",),
    NoticeTemplate.INSTALLMENT_MISSED: ("installment",),
    NoticeTemplate.REFUND_RECEIPT: ("extra",),
    NoticeTemplate.ENROLLMENT_CONFIRMATION: ("extra",),
    NoticeTemplate.COVERAGE_EXPIRING: ("extra",),
    NoticeTemplate.FAMILY_LINK: ("page_url", "page_expires_on"),
    NoticeTemplate.INVOICE_UPDATED: ("extra",),
}
COMMON = ("district", "guardian", "student", "invoice")
# A refund receipt states the balance as it was at the refund (stored with the notice); the
# coverage reminder is about the policy, not a balance.
NO_LIVE_BALANCE = {NoticeTemplate.REFUND_RECEIPT, NoticeTemplate.COVERAGE_EXPIRING}


# Every template is rendered with the family page and portal links, as the sender renders it.
LINKS = FamilyLinks(
    base_url="https://devicecare.lincoln.example",
    secret="test-secret-key",
    days=45,
    pay_online=True,
    portal_template="https://pay.lincoln.example/item?invoice={invoice_number}&amount={amount}",
    portal_name="RevTrak",
)


@pytest.fixture(scope="module")
def renderer() -> NoticeRenderer:
    return NoticeRenderer()


def _norm(text: str) -> list[str]:
    """Lines with runs of spaces collapsed, so padded columns compare as plain phrases."""
    return [" ".join(line.split()) for line in text.splitlines()]


def _invoice(
    *,
    override: bool = False,
    paid_cents: int = 0,
    description: str = "Screen replacement",
    snapshot: bool = True,
) -> m.Invoice:
    """The AppleCare-style example: $125.00, $29 co-pay, the policy absorbs $96.00."""
    snap = {
        "policy_name": "AppleCare+",
        "term_label": "2025-2026",
        "coverage_applied": True,
        "cap_reached": override,
        "override_applied": override,
        "claim_number": 3 if override else 1,
        "max_claims": 2,
        "audit_lines": [],
    }
    invoice = m.Invoice(
        id=7,
        number="INV-000007",
        student_id=1,
        status="unpaid",
        subtotal_cents=12500,
        insurance_cents=9600 if snapshot else 0,
        total_cents=2900 if snapshot else 12500,
        paid_cents=paid_cents,
        waived_cents=0,
        refunded_cents=0,
        kind="incident",
        due_date=date(2026, 5, 31),
        override_applied=override,
        insurance_snapshot=snap if snapshot else None,
        created_at=datetime(2026, 3, 2, 15, tzinfo=UTC),
    )
    invoice.lines = [
        m.InvoiceLine(
            position=1,
            description=description,
            kind="part",
            quantity=1,
            unit_cents=12500,
            amount_cents=12500,
        )
    ]
    return invoice


def _data(
    template: str = "invoice_issued",
    *,
    invoice: m.Invoice | None = None,
    guardian_name: str = "Maria",
    context: dict[str, Any] | None = None,
) -> NoticeData:
    invoice = invoice or _invoice()
    notice = m.Notice(
        id=11,
        invoice_id=invoice.id,
        guardian_id=3,
        template=template,
        dedupe_key="k",
        to_address="maria@example.org",
        message_id="<abc@district.org>",
        context=context or {},
        status="queued",
        created_at=datetime(2026, 3, 2, 15, tzinfo=UTC),
    )
    return NoticeData(
        notice=notice,
        district_name="Lincoln Unified",
        guardian=m.Guardian(
            id=3,
            first_name=guardian_name,
            last_name="Rivera",
            email="maria@example.org",
            preferred_language="en",
        ),
        invoice=invoice,
        student=m.Student(id=1, sis_id="S1", first_name="Ana", last_name="Rivera"),
        device=m.Device(
            id=1, serial="5CD1234XYZ", asset_tag="LMS-0001", model="HP Chromebook 11 G9"
        ),
        payment=m.Payment(
            id=5,
            invoice_id=7,
            amount_cents=1500,
            method="check",
            reference="1043",
            received_on=date(2026, 3, 5),
        ),
        pending=m.PendingPayment(
            id=6,
            invoice_id=7,
            amount_cents=5000,
            method="check",
            reference="1043",
            paid_on=date(2026, 3, 2),
        ),
    )


# What a notice about one installment of a plan stores (a missed one, or a plan's reminder).
INSTALLMENT = {
    "installment": {
        "position": 1,
        "count": 2,
        "due_on": "2026-03-01",
        "amount_cents": 1450,
        "due_cents": 1450,
    }
}


def template_context(template: str) -> dict[str, Any]:
    """`full_context`, with the installment for the notice that is about one."""
    if template == NoticeTemplate.INSTALLMENT_MISSED:
        return full_context(notice_extra=INSTALLMENT)
    return full_context()


def full_context(notice_extra: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    data = _data(
        context={
            "installments": [
                {"due_on": "2026-04-01", "amount_cents": 1450},
                {"due_on": "2026-05-01", "amount_cents": 1450},
            ],
            "note": "First payment by April 1.",
            # refund receipts
            "amount_cents": 1000,
            "reason": "Device found",
            "payment_cents": 1500,
            "method": "check",
            "reference": "1043",
            "balance_cents": 1400,
            # enrollment notices
            "policy_name": "District Device Protection",
            "term_label": "2025-2026",
            "term_end": "2026-06-30",
            "covered_from": "2025-08-15",
            "days_left": 30,
            "premium_waived": False,
            # "your invoice was updated"
            "old_cents": 12500,
            "new_cents": 2900,
            **(notice_extra or {}),
        }
    )
    ctx = build_context(data, today=TODAY, tz=TZ, links=LINKS)
    ctx.update(overrides)
    return ctx


# --- every template -------------------------------------------------------------------------


@pytest.mark.parametrize("template", list(NoticeTemplate))
@pytest.mark.parametrize("language", ["en", "es"])
def test_every_template_renders_text_and_html(
    renderer: NoticeRenderer, template: str, language: str
) -> None:
    out = renderer.render(template, template_context(template), language)
    assert out.language == (language if template in SPANISH else "en")
    assert out.subject and "\n" not in out.subject and len(out.subject) < 150
    assert "INV-000007" in out.subject + out.text
    for part in (out.text, out.html):
        assert "Lincoln Unified" in part
        assert "Rivera" in part
        assert "None" not in part and "{{" not in part and "{%" not in part
    assert out.html.lstrip().startswith("<!DOCTYPE html>") and out.html.rstrip().endswith("</html>")
    assert "<" not in out.text  # the plain-text part carries no markup
    # Prose is wrapped; a link stands alone on its line, whole, however long it is.
    prose = [line for line in out.text.splitlines() if not line.strip().startswith("https://")]
    assert max(len(line) for line in prose) <= 80


@pytest.mark.parametrize("template", list(NoticeTemplate))
def test_a_missing_variable_fails_the_render(renderer: NoticeRenderer, template: str) -> None:
    for key in COMMON + NEEDS[template]:
        ctx = template_context(template)
        del ctx[key]
        with pytest.raises(UndefinedError):
            renderer.render(template, ctx)
    if template in NO_LIVE_BALANCE:
        return
    ctx = template_context(template)
    del ctx["invoice"]["balance_cents"]
    with pytest.raises(UndefinedError):
        renderer.render(template, ctx)


def test_receipt_and_acknowledgement_need_their_payment(renderer: NoticeRenderer) -> None:
    with pytest.raises(UndefinedError):
        renderer.render("payment_receipt", full_context(payment=None))
    with pytest.raises(UndefinedError):
        renderer.render("pending_payment_ack", full_context(pending=None))
    with pytest.raises(UndefinedError):
        renderer.render("payment_plan_confirmation", full_context(plan=None))


def test_unknown_template_is_an_error(renderer: NoticeRenderer) -> None:
    with pytest.raises(TemplateMissing):
        renderer.render("no_such_notice", full_context())
    with pytest.raises(TemplateMissing):
        renderer.render("../base", full_context())


# --- what the invoice notice shows ----------------------------------------------------------


def test_invoice_notice_shows_the_insurance_audit_lines(renderer: NoticeRenderer) -> None:
    ctx = build_context(_data(invoice=_invoice()), today=TODAY, tz=TZ)
    out = renderer.render("invoice_issued", ctx)
    lines = _norm(out.text)
    for expected in (
        "Screen replacement $125.00",
        "Original subtotal $125.00",
        "Insurance applied: AppleCare+ (2025-2026) −$96.00",
        "Amount owed $29.00",
        "Remaining balance $29.00",
    ):
        assert expected in lines, expected
    assert "Please pay $29.00 by May 31, 2026." in lines
    assert not any("override" in line for line in lines)
    assert "billing office" in out.text and "How to pay" in out.text
    html = " ".join(out.html.split())
    assert "Original subtotal</td>" in html and ">$125.00</td>" in html
    assert "Insurance applied: AppleCare+ (2025-2026)</td>" in html
    assert "&minus;$96.00" in html
    assert "Amount owed</td>" in html and "Remaining balance</td>" in html
    assert "Claim-cap override applied" not in html
    assert out.subject == (
        "Invoice INV-000007 from Lincoln Unified: $29.00 for Ana's device, due May 31, 2026"
    )


def test_override_badge_and_remaining_balance_after_a_payment(renderer: NoticeRenderer) -> None:
    ctx = build_context(_data(invoice=_invoice(override=True, paid_cents=1000)), today=TODAY, tz=TZ)
    out = renderer.render("invoice_issued", ctx)
    lines = _norm(out.text)
    assert "Amount owed $29.00" in lines
    assert "Paid so far −$10.00" in lines
    assert "Remaining balance $19.00" in lines
    assert "** Claim-cap override applied **" in lines
    assert "Claim-cap override applied</span>" in out.html


def test_invoice_without_insurance_has_no_insurance_line(renderer: NoticeRenderer) -> None:
    ctx = build_context(_data(invoice=_invoice(snapshot=False)), today=TODAY, tz=TZ)
    out = renderer.render("invoice_issued", ctx)
    assert "Insurance" not in out.text and "Insurance" not in out.html
    assert "Amount owed $125.00" in _norm(out.text)


def test_html_escapes_what_people_typed(renderer: NoticeRenderer) -> None:
    invoice = _invoice(description='<img src=x onerror="alert(1)">')
    data = _data(invoice=invoice, guardian_name="<script>alert('hi')</script>")
    out = renderer.render("invoice_issued", build_context(data, today=TODAY, tz=TZ))
    assert "<script>" not in out.html and "<img" not in out.html
    assert "&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt; Rivera" in out.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in out.html
    assert "<script>alert('hi')</script> Rivera" in out.text  # text is never interpreted


def test_receipt_pending_and_plan_details(renderer: NoticeRenderer) -> None:
    ctx = full_context()
    receipt = renderer.render("payment_receipt", ctx)
    assert receipt.subject == "Receipt: $15.00 received for invoice INV-000007"
    assert "Paid by check #1043" in _norm(receipt.text)
    assert "Received on March 5, 2026" in _norm(receipt.text)
    ack = renderer.render("pending_payment_ack", ctx)
    assert "you paid $50.00 by check #1043 on March 2, 2026" in " ".join(ack.text.split())
    assert "confirm" in ack.text and "receipt" in ack.text
    plan = renderer.render("payment_plan_confirmation", ctx)
    assert "April 1, 2026 $14.50" in _norm(plan.text)
    assert "Total $29.00" in _norm(plan.text)


def test_pending_details_can_come_from_the_notice_context(renderer: NoticeRenderer) -> None:
    data = _data(
        "pending_payment_ack",
        context={"amount_cents": 2500, "method": "cash", "paid_on": "2026-03-01"},
    )
    data.pending = None
    out = renderer.render("pending_payment_ack", build_context(data, today=TODAY, tz=TZ))
    assert "you paid $25.00 in cash on March 1, 2026" in " ".join(out.text.split())


SPLIT_ACK = {
    "pending_payment_id": 1,
    "amount_given": True,
    "reported_cents": 20000,
    "owed_cents": 14550,
    "over_cents": 5450,
    "parts": [
        {"number": "INV-000007", "amount_cents": 10000, "balance_cents": 10000},
        {"number": "INV-000008", "amount_cents": 4550, "balance_cents": 4550},
        {"number": "INV-000009", "amount_cents": 0, "balance_cents": 0},
    ],
}


@pytest.mark.parametrize("language", ["en", "es"])
def test_an_acknowledgement_over_several_invoices_names_each_share(
    renderer: NoticeRenderer, language: str
) -> None:
    ctx = full_context(extra=SPLIT_ACK)
    ctx["pending"]["amount_cents"] = 20000
    out = renderer.render("pending_payment_ack", ctx, language)
    text = " ".join(out.text.split())
    if language == "en":
        assert out.subject == "We got your message about paying $200.00 on 2 invoices"
        assert "INV-000007: $100.00 (of $100.00 owed)" in text
        assert "INV-000008: $45.50 (of $45.50 owed)" in text
        assert "That is $54.50 more than the $145.50 owed" in text
    else:
        assert out.subject == "Recibimos su mensaje sobre el pago de $200.00 para 2 facturas"
        assert "INV-000008: $45.50 (de $45.50 pendientes)" in text
        assert "Son $54.50 más de los $145.50 que se deben" in text
    assert "INV-000009" not in text + out.html  # an invoice that gets nothing isn't named
    assert "INV-000008" in out.html


@pytest.mark.parametrize("language", ["en", "es"])
def test_an_acknowledgement_without_an_amount(renderer: NoticeRenderer, language: str) -> None:
    ctx = full_context(extra={"amount_given": False, "parts": [], "over_cents": 0})
    ctx["pending"]["method"], ctx["pending"]["reference"] = "online", None
    out = renderer.render("pending_payment_ack", ctx, language)
    assert "$50.00" not in out.subject + out.text + out.html
    said = {"en": "You didn't say how much you paid", "es": "No nos dijo cuánto pagó"}
    assert said[language] in " ".join(out.text.split())


@pytest.mark.parametrize("language", ["en", "es"])
def test_an_acknowledgement_without_a_method(renderer: NoticeRenderer, language: str) -> None:
    ctx = full_context()
    ctx["pending"]["method"], ctx["pending"]["reference"] = "", None
    text = " ".join(renderer.render("pending_payment_ack", ctx, language).text.split())
    said = {
        "en": "you paid $50.00 on March 2, 2026 toward invoice",
        "es": "pagó $50.00 el 2 de marzo de 2026 para la factura",
    }
    assert said[language] in text


def test_overdue_tone_escalates(renderer: NoticeRenderer) -> None:
    ctx = full_context(days_overdue=31)
    first = renderer.render("overdue_first", ctx)
    second = renderer.render("overdue_second", ctx)
    final = renderer.render("overdue_final", ctx)
    assert "collections" not in (first.text + second.text).lower()
    assert "SECOND NOTICE" in second.text
    assert final.subject.startswith("FINAL NOTICE")
    assert "collections agency" in final.text and "collections agency" in final.html
    assert "31 days past due" in " ".join(final.text.split())


def test_due_reminder_counts_the_days(renderer: NoticeRenderer) -> None:
    assert renderer.render("due_reminder", full_context(days_until_due=1)).subject.endswith(
        "is due tomorrow"
    )
    assert renderer.render("due_reminder", full_context(days_until_due=7)).subject.endswith(
        "is due in 7 days"
    )


# --- languages and districts' own templates -------------------------------------------------


def test_spanish_where_it_exists_else_english(renderer: NoticeRenderer) -> None:
    ctx = full_context()
    es = renderer.render("invoice_issued", ctx, "es-MX")
    assert es.language == "es"
    assert "Seguro aplicado: AppleCare+ (2025-2026) −$96.00" in _norm(es.text)
    assert "31 de mayo de 2026" in es.subject
    assert '<html lang="es">' in es.html
    assert renderer.render("pending_payment_ack", ctx, "es").language == "es"
    assert renderer.render("invoice_issued", ctx, "fr").language == "en"
    assert renderer.render("invoice_issued", ctx, "../../etc").language == "en"
    receipt = renderer.render("payment_receipt", ctx, "es")
    assert "Forma de pago con el cheque n.º 1043" in _norm(receipt.text)


def test_language_candidates() -> None:
    assert language_candidates("es-MX") == ["es-mx", "es", "en"]
    assert language_candidates("ES") == ["es", "en"]
    assert language_candidates(None) == ["en"]
    assert language_candidates("not a language") == ["en"]


def test_a_district_can_override_some_templates(tmp_path: Path) -> None:
    own = tmp_path / "email"
    own.mkdir()
    (own / "invoice_issued.subject.j2").write_text("Bill {{ invoice.number }}")
    (own / "invoice_issued.txt.j2").write_text("Pay {{ invoice.balance_cents|money }}.\n")
    (own / "invoice_issued.html.j2").write_text("<p>Pay {{ guardian.full_name }}</p>")
    renderer = NoticeRenderer(tmp_path)
    ctx = full_context()
    ctx["guardian"] = {**ctx["guardian"], "full_name": "<b>M</b>"}
    out = renderer.render("invoice_issued", ctx)
    assert (out.subject, out.text, out.html) == (
        "Bill INV-000007",
        "Pay $29.00.\n",
        "<p>Pay &lt;b&gt;M&lt;/b&gt;</p>",
    )
    # Spanish isn't overridden as a whole set here, so the shipped Spanish one is used.
    assert "Factura" in renderer.render("invoice_issued", ctx, "es").subject
    assert renderer.render("payment_receipt", ctx).subject.startswith("Receipt:")
    assert (DEFAULT_TEMPLATES_DIR / "email" / "invoice_issued.txt.j2").is_file()


# --- formatting -----------------------------------------------------------------------------


def test_money_and_dates() -> None:
    assert money(123456) == "$1,234.56"
    assert money(0) == "$0.00"
    with pytest.raises(TypeError):
        money(1.5)  # type: ignore[arg-type]
    assert format_long_date(date(2026, 3, 5)) == "March 5, 2026"
    assert format_long_date(date(2026, 3, 5), "es") == "5 de marzo de 2026"
    with pytest.raises(TypeError):
        format_long_date("2026-03-05")  # type: ignore[arg-type]


def test_wrap_text_keeps_tables_and_indents_list_items() -> None:
    long = "word " * 30
    wrapped = wrap_text(f"{long}\n  {long}\n- {long}", 40)
    lines = wrapped.splitlines()
    assert all(len(line) <= 40 for line in lines if not line.startswith("  word"))
    assert f"  {long}" in lines
    assert any(line.startswith("- word") for line in lines)
    assert lines[-1].startswith("  word")


def test_build_context_does_not_touch_the_models() -> None:
    invoice = _invoice()
    before = copy.deepcopy(invoice.insurance_snapshot)
    ctx = build_context(_data(invoice=invoice), today=TODAY, tz=TZ)
    assert invoice.insurance_snapshot == before
    assert ctx["invoice"]["insurance"]["label"] == "AppleCare+ (2025-2026)"
    assert ctx["days_until_due"] == 90 and ctx["days_overdue"] == 0
    assert ctx["invoice"]["issued_on"] == date(2026, 3, 2)


# --- delivery summary -----------------------------------------------------------------------


def _delivery(status: str, to: str, **kw: Any) -> NoticeDelivery:
    at = datetime(2026, 3, 3, 15, tzinfo=UTC)
    return NoticeDelivery(
        id=1,
        template=kw.pop("template", "invoice_issued"),
        to_address=to,
        status=status,
        created_at=at,
        sent_at=kw.pop("sent_at", at if status == "sent" else None),
        bounced_at=kw.pop("bounced_at", None),
        last_error=kw.pop("last_error", None),
        attempts=kw.pop("attempts", 1),
    )


def test_delivery_summary() -> None:
    summary = delivery_summary(
        [
            _delivery("sent", "maria@example.org"),
            _delivery("failed", "sam@example.org", last_error="mailbox unavailable: 550 5.1.1"),
            _delivery("queued", "lee@example.org", last_error="SmtpUnavailable: can't reach"),
            _delivery("queued", "kim@example.org", template="payment_receipt"),
            _delivery("bounced", "jo@example.org", bounced_at=datetime(2026, 3, 4, tzinfo=UTC)),
        ],
        TZ,
    )
    assert summary == (
        "Invoice emailed to maria@… Mar 3 · "
        "Invoice to sam@… failed (mailbox unavailable: 550 5.1.1) · "
        "Invoice to lee@… retrying (SmtpUnavailable: can't reach) · "
        "Receipt to kim@… queued · "
        "Invoice to jo@… bounced Mar 3"
    )
    assert delivery_summary([]) == "No email notices yet."


def test_a_plan_reminder_asks_for_the_installment(renderer: NoticeRenderer) -> None:
    ctx = full_context(notice_extra=INSTALLMENT)
    assert ctx["installment"]["due_on"] == date(2026, 3, 1)
    ctx["installment"]["days_until_due"] = 7
    out = renderer.render("due_reminder", ctx)
    assert out.subject == "Reminder: payment 1 of 2 on invoice INV-000007 ($14.50) is due in 7 days"
    assert "is due on March 1, 2026 (in 7 days): $14.50" in " ".join(out.text.split())
    spanish = renderer.render("due_reminder", ctx, "es")
    assert "el pago 1 de 2" in spanish.subject and "$14.50" in spanish.subject


def test_a_missed_installment_says_what_brings_the_plan_up_to_date(
    renderer: NoticeRenderer,
) -> None:
    ctx = full_context(notice_extra=INSTALLMENT)
    out = renderer.render("installment_missed", ctx)
    text = " ".join(out.text.split())
    assert out.subject == "Missed payment 1 of 2 on invoice INV-000007 ($14.50)"
    assert "was due on March 1, 2026, and we haven't received it (1 day late)" in text
    assert "please pay $14.50" in text
    for line in ("April 1, 2026 $14.50", "May 1, 2026 $14.50", "Total $29.00"):
        assert line in _norm(out.text)
    es = renderer.render("installment_missed", ctx, "es")
    assert es.language == "es" and "vencía el 1 de marzo de 2026" in " ".join(es.text.split())
    with pytest.raises(UndefinedError):
        renderer.render("installment_missed", full_context())


# --- "your invoice was updated" -------------------------------------------------------------


def _updated(reason: str, note: str | None, invoice: m.Invoice | None = None) -> NoticeData:
    return _data(
        "invoice_updated",
        invoice=invoice or _invoice(override=True),
        context={
            "reason": reason,
            "old_cents": 12500,
            "new_cents": 2900,
            "balance_cents": 2900,
            "note": note,
            "by": "Admin Person",
        },
    )


def test_the_update_says_the_old_amount_the_new_amount_and_why(renderer: NoticeRenderer) -> None:
    data = _updated("override_approved", None)
    out = renderer.render("invoice_updated", build_context(data, today=TODAY, tz=TZ), "en")
    assert out.subject == "Invoice INV-000007 was updated: $125.00 is now $29.00"
    text = " ".join(out.text.split())
    assert "Amount before $125.00" in text and "Amount now $29.00" in text
    assert "your insurance was applied to this invoice after all" in text
    assert "Still owed: $29.00, due May 31, 2026" in text
    assert "Claim-cap override applied" in text  # the audit lines follow
    assert "<s>$125.00</s>" in out.html

    es = renderer.render("invoice_updated", build_context(data, today=TODAY, tz=TZ), "es")
    assert es.language == "es"
    assert es.subject == "La factura INV-000007 cambió: $125.00 ahora es $29.00"
    assert "Monto anterior $125.00" in " ".join(es.text.split())
    assert "se aplicó su seguro" in es.text


def test_a_cancellation_update_says_nothing_is_owed(renderer: NoticeRenderer) -> None:
    invoice = _invoice()
    invoice.status = "cancelled"
    data = _updated("cancelled", "Billed to the wrong student <sorry>", invoice)
    data.notice.context["new_cents"] = 0
    out = renderer.render("invoice_updated", build_context(data, today=TODAY, tz=TZ), "en")
    assert out.subject == "Invoice INV-000007 was updated: cancelled, nothing owed"
    text = " ".join(out.text.split())
    assert "the invoice was cancelled" in text
    assert "Reason Billed to the wrong student <sorry>" in text
    assert "nothing for you to do" in text
    assert "How to pay" not in text
    assert "&lt;sorry&gt;" in out.html
