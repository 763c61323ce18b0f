"""The family page's insurance audit (workflows.invoice_audit, as Slack shows it too), and an
invoice held for a pending override staying off the page until its amount stands."""

from __future__ import annotations

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_policy, add_staff
from tests.web.conftest import WebHarness
from tests.web.family_data import TZ, add_family, add_incident, add_invoice, add_override_invoice
from tests.web.html_check import page_problems
from workflows.clock import FixedClock
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.overrides import decide_cap_override, request_cap_override
from workflows.ports import Context


def row(label: str, amount: str) -> str:
    return f'<th scope="row">{label}</th><td class="amount">{amount}</td>'


def section(html: str, number: str, word: str = "Invoice") -> str:
    return html.split(f"{word} {number} ")[1].split("</section>")[0]


async def test_the_audit_shows_co_pay_claim_count_and_who_approved_the_override(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    first, overridden = await add_override_invoice(stores, clock, family)

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert page_problems(html) == []
    first_part, part = section(html, first.number), section(html, overridden.number)
    assert row("Co-pay (the least you pay per claim)", "$25.00") in first_part
    assert "Claim 1 of 1 this term" in first_part
    assert "Claim 2 this term, past the limit of 1" in part
    assert row("Original subtotal", "$125.00") in part
    assert row("Insurance applied: District Plan (2025-2026)", "&minus;$100.00") in part
    assert row("Subtotal owed", "$25.00") in part
    assert row("Remaining balance", "$25.00") in part
    assert (
        '<span class="badge-override">Claim-cap override applied</span> '
        '<span class="muted">approved by Finance Director Person on Mar 2, 2026</span>'
    ) in part


async def test_the_audit_in_spanish(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, family.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "es"
        await store.commit()
    _first, overridden = await add_override_invoice(stores, clock, family)

    html = (await web.http.get(web.url(family.guardian_id))).text
    part = section(html, overridden.number, "Factura")
    assert row("Subtotal original", "$125.00") in part
    assert row("Seguro aplicado: District Plan (2025-2026)", "&minus;$100.00") in part
    assert row("Saldo pendiente", "$25.00") in part
    assert "Excepción al límite de reclamos aplicada" in part
    assert "aprobada por Finance Director Person el 2 mar 2026" in part


async def test_an_invoice_held_for_an_override_shows_once_decided(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    d = family.district
    await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    first = await add_invoice(stores, clock, family.tech, d.device_id)
    incident_id = await add_incident(stores, clock, family.tech, d.device_id)
    async with stores() as store:
        request = await request_cap_override(Context(store, clock, TZ), family.tech, incident_id)
        await store.commit()
    async with stores() as store:
        held = (
            await create_invoice_for_incident(
                Context(store, clock, TZ),
                family.tech,
                CreateInvoice(incident_id, custom_lines=(CustomLine("Screen", 12500),)),
            )
        ).invoice
        assert held.notice_hold == f"cap_override:{request.id}"
        await store.commit()

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert f"Invoice {first.number} " in html
    assert f"Invoice {held.number} " not in html  # not $125.00 while the decision is pending

    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        await decide_cap_override(Context(store, clock, TZ), director, request.id, approve=True)
        await store.commit()
    part = section((await web.http.get(web.url(family.guardian_id))).text, held.number)
    assert row("Remaining balance", "$25.00") in part


async def test_the_page_in_vietnamese(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, family.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "vi"
        await store.commit()
    _first, overridden = await add_override_invoice(stores, clock, family)

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert page_problems(html) == []
    assert '<html lang="vi">' in html
    part = section(html, overridden.number, "Hóa đơn")
    assert row("Tổng phụ ban đầu", "$125.00") in part
    assert row("Bảo hiểm đã áp dụng: District Plan (2025-2026)", "&minus;$100.00") in part
    assert row("Số tiền còn lại", "$25.00") in part
    assert "do Finance Director Person phê duyệt vào 2 thg 3, 2026" in part
    assert "Phát hành ngày" in part
    assert "Thanh toán hóa đơn" in part or "Quý vị không còn gì phải trả" in html
