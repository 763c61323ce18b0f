"""The enrollment notices and the premium invoice email, rendered in English and Spanish."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.mail.render import NoticeData, NoticeRenderer, build_context
from storage import models as m

TZ = ZoneInfo("America/Chicago")
EXTRA = {
    "enrollment_id": 4,
    "policy_name": "Device Protection Plan",
    "term_label": "2026-2027",
    "covered_from": "2026-09-03",
    "term_end": "2027-07-31",
    "premium_waived": False,
    "waiver_reason": None,
}


def _context(template: str, extra: dict[str, Any], *, waived: int = 0) -> dict[str, Any]:
    invoice = m.Invoice(
        id=9,
        number="INV-000009",
        student_id=1,
        status="paid" if waived else "unpaid",
        kind="premium",
        subtotal_cents=2500,
        insurance_cents=0,
        total_cents=2500,
        paid_cents=0,
        waived_cents=waived,
        refunded_cents=0,
        due_date=date(2026, 11, 30),
        override_applied=False,
        insurance_snapshot=None,
        created_at=datetime(2026, 9, 1, 15, tzinfo=UTC),
    )
    invoice.lines = [
        m.InvoiceLine(
            position=1,
            description="Device Protection Plan premium",
            kind="premium",
            quantity=1,
            unit_cents=2500,
            amount_cents=2500,
        )
    ]
    notice = m.Notice(
        id=1,
        invoice_id=9,
        guardian_id=3,
        template=template,
        dedupe_key="k",
        to_address="maria@example.org",
        message_id="<a@b>",
        context=extra,
        status="queued",
        created_at=datetime(2026, 9, 3, 15, tzinfo=UTC),
    )
    data = NoticeData(
        notice=notice,
        district_name="Lincoln Unified",
        guardian=m.Guardian(
            id=3,
            first_name="Maria",
            last_name="Rivera",
            email="maria@example.org",
            preferred_language="en",
        ),
        invoice=invoice,
        student=m.Student(id=1, sis_id="S1", first_name="Ana", last_name="Rivera"),
        device=None,
        payment=None,
        pending=None,
    )
    return build_context(data, today=date(2026, 9, 3), tz=TZ)


@pytest.mark.parametrize("language", ["en", "es"])
def test_confirmation_and_reminder_read_right(language: str) -> None:
    renderer = NoticeRenderer()
    waived = renderer.render(
        "enrollment_confirmation",
        _context("enrollment_confirmation", EXTRA | {"premium_waived": True}, waived=2500),
        language,
    )
    expiring = renderer.render(
        "coverage_expiring", _context("coverage_expiring", EXTRA | {"days_left": 30}), language
    )
    for out in (waived, expiring):
        assert out.language == language and "INV-000009" in out.subject + out.text
        assert "Device Protection Plan" in out.text and "Device Protection Plan" in out.html
        assert "None" not in out.text + out.html and "<" not in out.text
    if language == "en":
        assert "Coverage runs from September 3, 2026 through July 31, 2027." in waived.text
        assert "has been waived for your family" in " ".join(waived.text.split())
        assert "ends July 31, 2027" in expiring.subject and "in 30 days" in expiring.text
    else:
        assert "del 3 de septiembre de 2026 al 31 de julio de 2027" in " ".join(waived.text.split())
        assert "termina el 31 de julio de 2027" in expiring.subject


@pytest.mark.parametrize("language", ["en", "es"])
def test_premium_invoice_email_speaks_of_the_plan(language: str) -> None:
    out = NoticeRenderer().render("invoice_issued", _context("invoice_issued", {}), language)
    text = " ".join(out.text.split())
    assert ("premium invoice" if language == "en" else "factura de la prima") in text
    assert "damage" not in text and "daño" not in text
    assert ("protection plan" if language == "en" else "plan de protección") in out.subject
