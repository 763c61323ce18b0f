"""Rotating SECRET_KEY: the old key moves to SECRET_KEY_PREVIOUS, and a family link signed
with it still opens the page; one signed with a key never configured does not."""

from __future__ import annotations

from bot.family_links import make_family_token
from bot.signing import SigningKeys
from storage.uow import UnitOfWorkFactory
from tests.web.conftest import LINK_ENDS, SECRET, WebFactory
from tests.web.family_data import add_family, add_invoice
from workflows.clock import FixedClock

NEW_KEY = "rotated-family-page-key-0123456789-abcdefghij"


async def test_a_link_sent_before_the_rotation_still_opens(
    make_web: WebFactory, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    family = await add_family(stores)
    invoice = await add_invoice(stores, clock, family.tech, family.district.device_id)
    old_link = f"/family/{make_family_token(family.guardian_id, None, LINK_ENDS, SECRET)}"

    web = await make_web(secret_key=NEW_KEY, secret_key_previous=f" other-old-key-000, {SECRET} ")
    opened = await web.http.get(old_link)
    assert opened.status_code == 200 and invoice.number in opened.text

    # Links made now are signed with the new key, and open with it alone.
    new_token = make_family_token(
        family.guardian_id, None, LINK_ENDS, SigningKeys.from_settings(web.runtime.settings)
    )
    assert new_token != old_link.rsplit("/", 1)[1]
    only_new = await make_web(secret_key=NEW_KEY)
    assert (await only_new.http.get(f"/family/{new_token}")).status_code == 200
    # Without the old key configured, the old link is refused as any forgery is.
    assert (await only_new.http.get(old_link)).status_code == 404


async def test_a_link_signed_with_an_unknown_key_is_refused(
    make_web: WebFactory, stores: UnitOfWorkFactory
) -> None:
    family = await add_family(stores)
    web = await make_web(secret_key=NEW_KEY, secret_key_previous=SECRET)
    forged = make_family_token(family.guardian_id, None, LINK_ENDS, "a-key-nobody-configured")
    response = await web.http.get(f"/family/{forged}")
    assert response.status_code == 404
    assert "<h1>This link doesn't work</h1>" in response.text
