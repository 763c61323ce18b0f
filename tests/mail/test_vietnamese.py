"""A third language is only a catalogue: a Vietnamese-reading guardian gets every notice in
Vietnamese, with Vietnamese dates and US-dollar amounts, and nothing left in English."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bot.mail.render import NoticeRenderer, format_long_date, money
from tests.mail.test_render import full_context, template_context
from workflows.i18n import LANGUAGES, format_short_date, supported_language
from workflows.invoice_audit import invoice_audit
from workflows.invoices import NoticeTemplate

# English sentences that would show a template or a phrase had been left untranslated.
ENGLISH = ("Dear ", "Questions?", "How to pay", "Please pay", "invoice ", " the ")


@pytest.fixture(scope="module")
def renderer() -> NoticeRenderer:
    return NoticeRenderer()


def test_vietnamese_is_offered_wherever_spanish_is() -> None:
    assert {"en", "es", "vi"} <= set(LANGUAGES)
    assert supported_language("vi") == "vi"
    assert supported_language("vi-VN") == "vi"
    assert supported_language("VI_us") == "vi"


def test_dates_and_money_in_vietnamese() -> None:
    assert format_long_date(date(2026, 3, 5), "vi") == "5 tháng 3, 2026"
    assert format_short_date(date(2026, 3, 5), "vi") == "5 thg 3, 2026"
    # Dollars keep US digits in every language: what the pay form reads back, what a check says.
    assert money(123456, "vi") == "$1,234.56"
    assert money(-500, "vi") == "-$5.00"


@pytest.mark.parametrize("template", list(NoticeTemplate))
def test_every_notice_renders_in_vietnamese(renderer: NoticeRenderer, template: str) -> None:
    out = renderer.render(template, template_context(template), "vi")
    assert out.language == "vi"
    assert "\n" not in out.subject
    for part in (out.subject, out.text, out.html):
        assert "{{" not in part and "%(" not in part and "None" not in part
        for phrase in ENGLISH:
            assert phrase not in part, (template, phrase)
    assert '<html lang="vi">' in out.html
    assert "Kính gửi Maria Rivera," in out.text


def test_the_invoice_notice_in_vietnamese(renderer: NoticeRenderer) -> None:
    out = renderer.render("invoice_issued", full_context(), "vi")
    text = " ".join(out.text.split())
    assert out.subject.startswith("Hóa đơn INV-000007 từ Lincoln Unified: $29.00")
    assert "Xin vui lòng thanh toán $29.00 trước ngày 31 tháng 5, 2026." in text
    assert "Tổng phụ ban đầu $125.00" in text
    assert "Bảo hiểm đã áp dụng: AppleCare+ (2025-2026) −$96.00" in text
    assert "Cách thanh toán" in text
    assert (
        "Xin vui lòng thanh toán <strong>$29.00</strong> trước ngày "
        "<strong>31 tháng 5, 2026</strong>." in out.html
    )


def test_a_receipt_names_the_method_in_vietnamese(renderer: NoticeRenderer) -> None:
    out = renderer.render("payment_receipt", full_context(), "vi")
    assert "bằng chi phiếu số 1043" in " ".join(out.text.split())


def test_the_audit_lines_in_vietnamese() -> None:
    bill = SimpleNamespace(
        subtotal_cents=12500,
        insurance_cents=10000,
        total_cents=2500,
        paid_cents=0,
        waived_cents=0,
        refunded_cents=0,
        status="unpaid",
        override_applied=True,
        insurance_snapshot={
            "policy_name": "District Plan",
            "term_label": "2025-2026",
            "coverage_applied": True,
            "override_applied": True,
            "override_approved_by": "Ada Admin",
            "override_approved_at": datetime(2026, 3, 2, 15, tzinfo=UTC).isoformat(),
        },
    )
    audit = invoice_audit(bill, tz=ZoneInfo("America/Chicago"), language="vi")
    assert audit.lines[0].text == "Tổng phụ ban đầu: $125.00"
    assert audit.badge is not None
    assert audit.badge.text == (
        "Đã áp dụng ngoại lệ cho giới hạn yêu cầu bồi thường "
        "(do Ada Admin phê duyệt vào 2 thg 3, 2026)"
    )
