"""The family page tells the district's facts and offers only the ways to pay it can take."""

from __future__ import annotations

import pytest

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.web.conftest import WebFactory
from tests.web.family_data import TZ, add_family, add_invoice
from tests.web.html_check import page_problems
from workflows.administration import change_district_facts
from workflows.clock import FixedClock
from workflows.ports import Context

FACTS = {
    "name": "Lakeview Unified",
    "check_payable_to": "Lakeview Unified School District",
    "check_address": "Business Office / 410 Harbor Rd / Lakeview, MN 55001",
    "office_phone": "(555) 010-4477",
    "office_hours": "Mon-Fri 8:00-4:00",
    "office_email": "billing@lakeview.example",
}


async def set_facts(stores: UnitOfWorkFactory, clock: FixedClock, **facts: str) -> None:
    admin = await add_staff(stores, "SuperAdmin")
    async with stores() as store:
        await change_district_facts(Context(store, clock, TZ), admin, dict(facts))
        await store.commit()


async def set_language(stores: UnitOfWorkFactory, guardian_id: int, language: str) -> None:
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, guardian_id)
        assert guardian is not None
        guardian.preferred_language = language
        await store.commit()


@pytest.mark.parametrize("language", ["en", "es"])
async def test_the_page_tells_the_districts_facts(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock, language: str
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    await set_language(stores, family.guardian_id, language)
    await set_facts(stores, clock, **FACTS)
    web = await make_web()
    html = (await web.http.get(web.url(family.guardian_id))).text
    assert page_problems(html) == []
    assert '<header class="site"><p>Lakeview Unified</p></header>' in html
    assert "– Lakeview Unified</title>" in html
    assert "(555) 010-4477" in html and "billing@lakeview.example" in html
    assert "Business Office, 410 Harbor Rd, Lakeview, MN 55001" in html
    if language == "en":
        assert "send a check payable to Lakeview Unified School District to Business" in html
        assert f"write invoice number {invoice.number} on it" in html
        assert "<strong>In person:</strong> cash or a check at the business office" in html
        assert "or call the Lakeview Unified business office at (555) 010-4477" in html
    else:
        assert "envíe un cheque a nombre de Lakeview Unified School District a Business" in html
        assert "<strong>En persona:</strong> en efectivo o con cheque" in html
        assert "llame a la oficina de finanzas de Lakeview Unified al (555) 010-4477" in html
    assert "Our District" not in html and "school office" not in html


@pytest.mark.parametrize("stripe", [False, True])
@pytest.mark.parametrize("address", [False, True])
@pytest.mark.parametrize("hours", [False, True])
async def test_each_way_to_pay_only_when_available(
    make_web: WebFactory,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    stripe: bool,
    address: bool,
    hours: bool,
) -> None:
    family = await add_family(stores)
    await add_invoice(stores, clock, family.tech, family.district.device_id)
    facts = {"name": "Lakeview Unified"}
    if address:
        facts["check_address"] = FACTS["check_address"]
    if hours:
        facts["office_hours"] = FACTS["office_hours"]
    await set_facts(stores, clock, **facts)
    keys = {"stripe_secret_key": "sk_test_x", "stripe_webhook_secret": "whsec_x"}
    web = await make_web(**(keys if stripe else {}))
    html = (await web.http.get(web.url(family.guardian_id))).text
    assert ('<button type="submit">Pay online</button>' in html) is stripe
    assert ("<strong>By mail:</strong>" in html) is address
    assert ("<strong>In person:</strong>" in html) is hours
    nothing = not (stripe or address or hours)
    assert ("we'll tell you how you can pay" in html) is nothing
    assert ("Other ways to pay" in html) is (stripe and (address or hours))
    assert "Our District" not in html
