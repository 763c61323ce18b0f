"""The family invoice page through the whole web app, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.web.family_page import PayError, family_page_response, read_link
from storage import models as m
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from tests.builders import add_policy
from tests.web.conftest import SECRET, WebFactory, WebHarness
from tests.web.family_data import (
    PNG,
    add_family,
    add_invoice,
    add_notice,
    add_other_family,
    add_override_invoice,
    add_photo,
    allow_photos,
    pay,
)
from tests.web.html_check import page_problems
from workflows.clock import FixedClock
from workflows.invoices import CustomLine


async def family_links(store: SqlUnitOfWork) -> list[m.Notice]:
    stmt = select(m.Notice).where(m.Notice.template == "family_link").order_by(m.Notice.id)
    return list((await store.session.execute(stmt)).scalars())


def row(label: str, amount: str) -> str:
    return f'<th scope="row">{label}</th><td class="amount">{amount}</td>'


async def test_covered_invoice_shows_the_insurance_audit_lines_and_payments(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    d = family.district
    await add_policy(stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2)
    invoice = await add_invoice(stores, clock, family.tech, d.device_id)
    await pay(stores, clock, family.clerk, invoice.id, 1000, reference="1042")

    response = await web.http.get(web.url(family.guardian_id))

    assert response.status_code == 200
    html = response.text
    assert page_problems(html) == []
    assert '<html lang="en">' in html
    assert "<h2>Ana Rivera</h2>" in html
    assert 'Invoice INV-000001 <span class="status">Unpaid</span>' in html
    assert "Issued March 2, 2026 · Due May 31, 2026" in html
    assert '<td>Screen replacement</td><td class="amount">$125.00</td>' in html
    assert row("Original subtotal", "$125.00") in html
    # Green, and said in words with a minus sign too.
    assert (
        '<tr class="credit">'
        + row("Insurance applied: AppleCare+ (2025-2026)", "&minus;$96.00")
        + "</tr>"
    ) in html
    assert row("Subtotal owed", "$29.00") in html
    assert row("Paid so far", "&minus;$10.00") in html
    assert row("Remaining balance", "$19.00") in html
    assert '<td>March 1, 2026</td><td>Check #1042</td><td class="amount">$10.00</td>' in html
    assert "Claim-cap override applied" not in html
    assert "1 open invoice with <strong>$19.00</strong> left to pay" in html


async def test_override_badge_shows_only_on_the_overridden_invoice(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    first, overridden = await add_override_invoice(stores, clock, family)
    assert overridden.override_applied and not first.override_applied

    html = (await web.http.get(web.url(family.guardian_id))).text

    sections = {
        number: html.split(f"Invoice {number} ")[1].split("</section>")[0]
        for number in (first.number, overridden.number)
    }
    assert "Claim-cap override applied" in sections[overridden.number]
    assert "Claim-cap override applied" not in sections[first.number]
    assert (
        row("Insurance applied: District Plan (2025-2026)", "&minus;$100.00")
        in (sections[overridden.number])
    )


async def test_cap_reached_without_override_says_why_it_is_full_price(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    d = family.district
    await add_policy(stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=1)
    await add_invoice(stores, clock, family.tech, d.device_id)
    full = await add_invoice(stores, clock, family.tech, d.device_id)
    assert full.cap_reached and full.total_cents == 12500

    html = (await web.http.get(web.url(family.guardian_id))).text
    section = html.split(f"Invoice {full.number} ")[1].split("</section>")[0]
    assert "had already covered its limit of claims this term" in section
    assert "Insurance applied" not in section


async def test_installment_schedule_shows_paid_missed_and_upcoming(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(
        stores,
        clock,
        family.tech,
        family.district.device_id,
        lines=(CustomLine("Keyboard", 9000),),
    )
    async with stores() as store:
        for position, due in enumerate(
            (date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)), start=1
        ):
            store.session.add(
                m.Installment(
                    invoice_id=invoice.id,
                    position=position,
                    due_on=due,
                    amount_cents=3000,
                    created_at=datetime(2026, 1, 15, tzinfo=UTC),
                )
            )
        await store.commit()
    await pay(stores, clock, family.clerk, invoice.id, 4000)  # the first and a third of the next

    html = (await web.http.get(web.url(family.guardian_id))).text

    assert "<h4>Payment plan</h4>" in html
    assert (
        '<tr><td>February 1, 2026</td><td class="amount">$30.00</td>'
        '<td><span class="state-paid">Paid</span></td></tr>'
    ) in html
    assert (
        '<tr><td>March 1, 2026</td><td class="amount">$30.00</td>'
        '<td><span class="state-missed">Missed</span> ($10.00 paid)</td></tr>'
    ) in html
    assert '<tr><td>April 1, 2026</td><td class="amount">$30.00</td><td>Due</td></tr>' in html
    assert page_problems(html) == []


async def test_spanish_guardian_gets_the_page_in_spanish(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    d = family.district
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, d.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "es-MX"
        await store.commit()
    await add_policy(stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2)
    invoice = await add_invoice(stores, clock, family.tech, d.device_id)
    await pay(stores, clock, family.clerk, invoice.id, 1000)

    html = (await web.http.get(web.url(family.guardian_id))).text

    assert '<html lang="es">' in html
    assert row("Seguro aplicado: AppleCare+ (2025-2026)", "&minus;$96.00") in html
    assert row("Saldo pendiente", "$19.00") in html
    assert "Emitida el 2 de marzo de 2026 · Vence el 31 de mayo de 2026" in html
    assert "<td>1 de marzo de 2026</td><td>Cheque n.º 1042</td>" in html
    assert "Remaining balance" not in html
    assert page_problems(html) == []


async def test_opening_the_link_records_the_notice_viewed_once(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    notice_id = await add_notice(stores, family.guardian_id, invoice.id)

    # A link checker's HEAD is not the family reading the page.
    assert (await web.http.head(web.url(family.guardian_id, notice_id))).status_code == 200
    async with stores() as store:
        notice = await store.session.get(m.Notice, notice_id)
        assert notice is not None and notice.viewed_at is None
        await store.commit()
    clock.advance(minutes=5)
    first_view = clock.now()
    assert (await web.http.get(web.url(family.guardian_id, notice_id))).status_code == 200
    clock.advance(hours=3)
    assert (await web.http.get(web.url(family.guardian_id, notice_id))).status_code == 200

    async with stores() as store:
        notice = await store.session.get(m.Notice, notice_id)
        assert notice is not None and notice.viewed_at == first_view
        await store.commit()


async def test_a_link_never_marks_another_guardians_notice(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    other_guardian, other_device = await add_other_family(stores)
    other_invoice = await add_invoice(stores, clock, family.tech, other_device)
    other_notice = await add_notice(stores, other_guardian, other_invoice.id)

    # A genuine link for Maria that names Olga's notice (only the server can sign one).
    response = await web.http.get(web.url(family.guardian_id, other_notice))

    assert response.status_code == 200
    assert other_invoice.number not in response.text
    async with stores() as store:
        notice = await store.session.get(m.Notice, other_notice)
        assert notice is not None and notice.viewed_at is None
        await store.commit()


async def test_expired_link_answers_410_with_a_form_and_records_nothing(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    notice_id = await add_notice(stores, family.guardian_id, invoice.id)

    response = await web.http.get(web.url(family.guardian_id, notice_id, ends=date(2026, 3, 1)))

    assert response.status_code == 410
    html = response.text
    assert "<h1>This link has expired</h1>" in html
    assert '<form method="post" action="/family/link-request">' in html
    assert '<label for="link-email">' in html and 'name="email"' in html
    assert invoice.number not in html
    assert page_problems(html) == []
    assert response.headers["cache-control"] == "no-store"
    async with stores() as store:
        notice = await store.session.get(m.Notice, notice_id)
        assert notice is not None and notice.viewed_at is None
        await store.commit()


async def test_link_still_works_on_its_last_day_in_the_district_time_zone(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    # 03:00 UTC on March 3 is still March 2 in Chicago: a link ending March 2 works.
    clock.set(datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    ok = await web.http.get(web.url(family.guardian_id, ends=date(2026, 3, 2)))
    clock.set(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    gone = await web.http.get(web.url(family.guardian_id, ends=date(2026, 3, 2)))
    assert (ok.status_code, gone.status_code) == (200, 410)


async def test_tampered_or_invented_tokens_are_404(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    other_guardian, _ = await add_other_family(stores)
    good = web.url(family.guardian_id)
    # Point the signed token at another guardian, or push its expiry out: the signature fails.
    token = good.rsplit("/", 1)[1]
    prefix, signature = token.split(".")
    forged = [
        f"/family/g{other_guardian}{prefix[prefix.index('n') :]}.{signature}",
        f"/family/{prefix[:-1]}9.{signature}",
        f"/family/{prefix}.{'A' * 27}",
        "/family/not-a-token",
        "/family/link-request",
    ]
    for url in forged:
        response = await web.http.get(url)
        assert response.status_code == 404, url
        assert "<h1>This link doesn't work</h1>" in response.text
        assert "Maria" not in response.text and "Olga" not in response.text


async def test_another_familys_invoices_and_photos_never_show(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    await allow_photos(stores)
    other_guardian, other_device = await add_other_family(stores)
    mine = await add_invoice(stores, clock, family.tech, family.district.device_id)
    theirs = await add_invoice(stores, clock, family.tech, other_device)
    my_photo = await add_photo(
        stores, web.runtime.blobs, family.district.device_id, mine.incident_id
    )
    their_photo = await add_photo(stores, web.runtime.blobs, other_device, theirs.incident_id)

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert mine.number in html and theirs.number not in html
    assert f"/photos/{my_photo}" in html and f"/photos/{their_photo}" not in html

    base = web.url(family.guardian_id)
    assert (await web.http.get(f"{base}/photos/{my_photo}")).status_code == 200
    assert (await web.http.get(f"{base}/photos/{their_photo}")).status_code == 404
    other_base = web.url(other_guardian)
    assert (await web.http.get(f"{other_base}/photos/{their_photo}")).status_code == 200
    assert (await web.http.get(f"{other_base}/photos/{my_photo}")).status_code == 404


async def test_cancelled_invoices_are_left_out(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    kept = await add_invoice(stores, clock, family.tech, family.district.device_id)
    dropped = await add_invoice(stores, clock, family.tech, family.district.device_id)
    async with stores() as store:
        invoice = await store.session.get(m.Invoice, dropped.id)
        assert invoice is not None
        invoice.status = "cancelled"
        await store.commit()

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert kept.number in html and dropped.number not in html


async def test_paid_invoice_shows_without_a_way_to_pay(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    web = await make_web(stripe_secret_key="sk_test_x", stripe_webhook_secret="whsec_x")
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    await pay(stores, clock, family.clerk, invoice.id, 12500)

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert '<span class="status paid">Paid</span>' in html
    assert "Paid in full March 2, 2026" in html
    assert "Pay online" not in html and "How to pay" not in html
    assert "You have nothing left to pay." in html


async def test_photos_show_only_when_the_district_allows(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    photo_id = await add_photo(
        stores, web.runtime.blobs, family.district.device_id, invoice.incident_id
    )
    # A photo on the device from no incident of this invoice is never the family's to see.
    loose_id = await add_photo(stores, web.runtime.blobs, family.district.device_id, None)
    base = web.url(family.guardian_id)

    hidden = (await web.http.get(base)).text
    assert "/photos/" not in hidden and "Photos of the damage" not in hidden
    assert (await web.http.get(f"{base}/photos/{photo_id}")).status_code == 404

    await allow_photos(stores)
    shown = (await web.http.get(base)).text
    assert "<h4>Photos of the damage</h4>" in shown
    assert f'<img src="{base}/photos/{photo_id}" alt="Photo 1 of 1 of the damage' in shown
    assert page_problems(shown) == []
    photo = await web.http.get(f"{base}/photos/{photo_id}")
    assert (photo.status_code, photo.content, photo.headers["content-type"]) == (
        200,
        PNG,
        "image/png",
    )
    assert photo.headers["cache-control"] == "no-store"
    assert (await web.http.get(f"{base}/photos/{loose_id}")).status_code == 404


async def test_portal_link_when_a_template_is_set(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    web = await make_web(
        payment_portal_url_template=(
            "https://pay.example.net/item?ref={invoice_number}&amount={amount}&sid={student_id}"
        ),
        payment_portal_name="RevTrak",
    )
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)

    html = (await web.http.get(web.url(family.guardian_id))).text
    assert (
        f'<a class="portal" href="https://pay.example.net/item?ref={invoice.number}'
        '&amp;amount=125.00&amp;sid=S1" rel="noreferrer">Pay at RevTrak</a>'
    ) in html
    assert "Pay online" not in html and "How to pay" not in html


async def test_pay_form_only_when_stripe_is_enabled(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    await pay(stores, clock, family.clerk, invoice.id, 2500)

    plain = await make_web()
    html = (await plain.http.get(plain.url(family.guardian_id))).text
    assert "<form" not in html and "Pay online" not in html
    # No way to pay is set up (nor a mailing address): the family is asked to reply.
    assert "How to pay" in html and "we'll tell you how you can pay" in html
    assert "write invoice number" not in html

    stripe = await make_web(stripe_secret_key="sk_test_x", stripe_webhook_secret="whsec_x")
    url = stripe.url(family.guardian_id)
    response = await stripe.http.get(url)
    html = response.text
    assert f'<form method="post" action="{url}/pay">' in html
    assert f'<input type="hidden" name="invoice_id" value="{invoice.id}">' in html
    assert f'<label for="amount-{invoice.id}">' in html
    assert f'id="amount-{invoice.id}" name="amount"' in html and 'placeholder="100.00"' in html
    assert '<button type="submit">Pay online</button>' in html
    assert "How to pay" not in html
    assert page_problems(html) == []
    assert (
        "form-action 'self' https://checkout.stripe.com"
        in (response.headers["content-security-policy"])
    )


async def test_return_banners(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    base = web.url(family.guardian_id)

    paid = (await web.http.get(f"{base}?paid={invoice.number}")).text
    assert f"Thank you — your payment for invoice {invoice.number} is being recorded" in paid
    cancelled = (await web.http.get(f"{base}?cancelled=1")).text
    assert "Payment cancelled, nothing was charged." in cancelled
    # Only this family's invoice numbers are thanked for; anything else is ignored, escaped.
    odd = (await web.http.get(base, params={"paid": "<b>INV-999999</b>"})).text
    assert "Thank you" not in odd and "<b>INV-999999" not in odd


async def test_private_headers_on_every_page(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    for response in (
        await web.http.get(web.url(family.guardian_id)),
        await web.http.get("/family/nonsense"),
        await web.http.post("/family/link-request", data={"email": "x@example.org"}),
    ):
        headers = response.headers
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-robots-tag"].startswith("noindex")
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp


async def test_link_request_queues_a_notice_only_for_a_known_address(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    await add_invoice(stores, clock, family.tech, family.district.device_id)

    known = await web.http.post("/family/link-request", data={"email": " Maria@Example.org "})
    unknown = await web.http.post("/family/link-request", data={"email": "nobody@example.org"})
    again = await web.http.post("/family/link-request", data={"email": "maria@example.org"})

    assert known.status_code == unknown.status_code == again.status_code == 200
    assert known.text == unknown.text == again.text
    assert "If that address belongs to a family we bill, a new link is on its way." in known.text
    async with stores() as store:
        notices = await family_links(store)
        outbox = list(
            (
                await store.session.execute(
                    select(m.OutboxMessage.payload).where(
                        m.OutboxMessage.dedupe_key == f"notice:{notices[0].id}"
                    )
                )
            ).scalars()
        )
        await store.commit()
    assert [(n.template, n.guardian_id, n.context, n.invoice_id) for n in notices] == [
        ("family_link", family.guardian_id, {"reason": "requested"}, None)
    ]
    assert outbox == [{"notice_id": notices[0].id}]

    # The next day the family may ask again.
    clock.advance(days=1)
    await web.http.post("/family/link-request", data={"email": "maria@example.org"})
    async with stores() as store:
        assert len(await family_links(store)) == 2
        await store.commit()


async def test_link_request_ignores_guardians_with_nothing_billed(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await add_family(stores)  # Maria's family has no invoices
    response = await web.http.post("/family/link-request", data={"email": "maria@example.org"})
    assert response.status_code == 200 and "a new link is on its way" in response.text
    async with stores() as store:
        assert await family_links(store) == []
        await store.commit()


async def test_link_request_with_a_malformed_address_says_so(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    await add_invoice(stores, clock, family.tech, family.district.device_id)
    for data in ({"email": "maria"}, {}, {"email": "a b@example.org"}):
        response = await web.http.post("/family/link-request", data=data)
        assert response.status_code == 400
        assert "Enter your email address" in response.text
        assert page_problems(response.text) == []
    spanish = await web.http.post("/family/link-request", data={"email": "x", "lang": "es"})
    assert '<html lang="es">' in spanish.text and "Escriba su correo" in spanish.text
    async with stores() as store:
        assert await family_links(store) == []
        await store.commit()


async def test_rate_limit_answers_429_after_the_limit(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    web = await make_web(family_page_rate_per_minute=3)
    family = await add_family(stores)
    url = web.url(family.guardian_id)

    statuses = [(await web.http.get(url)).status_code for _ in range(3)]
    refused = await web.http.get(url)
    form = await web.http.post("/family/link-request", data={"email": "maria@example.org"})

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429 and form.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "<h1>Please wait a moment</h1>" in refused.text
    assert refused.headers["cache-control"] == "no-store"
    assert page_problems(refused.text) == []
    async with stores() as store:
        assert await family_links(store) == []
        await store.commit()


async def test_page_reads_are_a_fixed_number_of_queries(
    web: WebHarness, stores: UnitOfWorkFactory, clock: FixedClock, engine: AsyncEngine
) -> None:
    family = await add_family(stores)
    d = family.district
    await allow_photos(stores)
    await add_policy(stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=9)
    first = await add_invoice(stores, clock, family.tech, d.device_id)
    await pay(stores, clock, family.clerk, first.id, 500)
    await add_photo(stores, web.runtime.blobs, d.device_id, first.incident_id)

    statements: list[str] = []
    read_engine = web.runtime.read_engine or web.runtime.engine

    def count(*args: object) -> None:
        if str(args[2]).strip().upper() != "BEGIN":
            statements.append(str(args[2]))

    event.listen(read_engine.sync_engine, "before_cursor_execute", count)
    try:
        await web.http.get(web.url(family.guardian_id))
        one_invoice = len(statements)
        for n in range(5):
            more = await add_invoice(stores, clock, family.tech, d.device_id)
            await pay(stores, clock, family.clerk, more.id, 100 + n)
            await add_photo(stores, web.runtime.blobs, d.device_id, more.incident_id)
        statements.clear()
        html = (await web.http.get(web.url(family.guardian_id))).text
    finally:
        event.remove(read_engine.sync_engine, "before_cursor_execute", count)
    assert html.count("<h4>Payments</h4>") == 6
    # The family's rows, then their lines, payments, installments and photos.
    assert len(statements) == one_invoice == 2


def test_tokens_in_these_tests_use_the_test_secret() -> None:
    # The harness signs links with the same key the app is configured with.
    assert SECRET == "family-page-test-secret"


async def test_a_pay_error_shows_next_to_that_invoices_form(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    web = await make_web(stripe_secret_key="sk_test_x", stripe_webhook_secret="whsec_x")
    family = await add_family(stores)
    first = await add_invoice(stores, clock, family.tech, family.district.device_id)
    second = await add_invoice(stores, clock, family.tech, family.district.device_id)
    token = web.url(family.guardian_id).rsplit("/", 1)[1]
    link = read_link(web.runtime, token)

    response = await family_page_response(
        web.runtime,
        token,
        link,
        pay_error=PayError(second.id, "$500.00 is more than the $125.00 still owed.", "500"),
        status_code=400,
    )

    assert response.status_code == 400
    html = bytes(response.body).decode()
    error_at = html.index("$500.00 is more than the $125.00 still owed.")
    assert (
        html.index(f"Invoice {second.number} ") < error_at < html.index(f"Invoice {first.number} ")
    )
    assert f'id="amount-{second.id}" name="amount"' in html
    assert 'value="500" aria-invalid="true"' in html
    assert html.count('aria-invalid="true"') == 1
    assert page_problems(html) == []
