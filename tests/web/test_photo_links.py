"""Staff photo links (`/photos/<token>`) on the real web app: the link opens the stored image;
an expired, altered or invented link gets a short page, never a traceback; no log line keeps
the link's signature."""

from __future__ import annotations

import pytest

from bot.log_redaction import REDACTOR
from bot.photo_links import PHOTO_LINK_LIFETIME, make_photo_token, photo_url, read_photo_token
from bot.signing import SigningKeys
from storage.uow import UnitOfWorkFactory
from tests.web.conftest import SECRET, WebFactory, WebHarness
from tests.web.family_data import PNG, add_family, add_incident, add_photo


async def _photo(web: WebHarness, stores: UnitOfWorkFactory) -> int:
    family = await add_family(stores)
    device_id = family.district.device_id
    incident_id = await add_incident(stores, web.clock, family.tech, device_id)
    return await add_photo(stores, web.runtime.blobs, family.district.device_id, incident_id)


async def test_a_signed_link_opens_the_stored_image(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    photo_id = await _photo(web, stores)
    token = make_photo_token(photo_id, web.clock.now(), SECRET)
    url = photo_url("https://devicecare.example.org", token)
    assert url.startswith("https://devicecare.example.org/photos/p")

    response = await web.http.get(f"/photos/{token}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == PNG
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_expired_link_gets_a_clear_403_page(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    photo_id = await _photo(web, stores)
    token = make_photo_token(photo_id, web.clock.now(), SECRET)
    web.clock.advance(seconds=PHOTO_LINK_LIFETIME.total_seconds() + 1)

    response = await web.http.get(f"/photos/{token}")

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "This photo link has expired" in response.text
    assert "/device" in response.text and "Traceback" not in response.text


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("p", "p9", 1),  # another photo under the same signature
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # a changed signature
        lambda t: t.split(".")[0] + ".short",  # an invented one
        lambda t: t + "x",
    ],
)
async def test_an_altered_link_gets_a_clear_404_page(
    web: WebHarness, stores: UnitOfWorkFactory, tamper: object
) -> None:
    photo_id = await _photo(web, stores)
    token = make_photo_token(photo_id, web.clock.now(), SECRET)

    response = await web.http.get(f"/photos/{tamper(token)}")  # type: ignore[operator]

    assert response.status_code == 404
    assert "This photo link doesn't work" in response.text
    assert "Traceback" not in response.text


async def test_a_later_expiry_fails_the_signature(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    photo_id = await _photo(web, stores)
    token = make_photo_token(photo_id, web.clock.now(), SECRET)
    ids, signature = token.split(".")
    expiry = int(ids.split("x")[1])
    longer = f"p{photo_id}x{expiry + 86_400}.{signature}"

    assert (await web.http.get(f"/photos/{longer}")).status_code == 404


async def test_a_link_for_a_photo_no_longer_stored_says_so(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    token = make_photo_token(987_654, web.clock.now(), SECRET)

    response = await web.http.get(f"/photos/{token}")

    assert response.status_code == 404
    assert "This photo isn't here any more" in response.text


async def test_links_made_before_a_key_rotation_still_open(
    make_web: WebFactory, stores: UnitOfWorkFactory
) -> None:
    web = await make_web(secret_key="the-new-key-after-rotation", secret_key_previous=SECRET)
    photo_id = await _photo(web, stores)
    old = make_photo_token(photo_id, web.clock.now(), SECRET)
    new = make_photo_token(photo_id, web.clock.now(), SigningKeys("the-new-key-after-rotation"))
    assert old != new

    assert (await web.http.get(f"/photos/{old}")).status_code == 200
    assert (await web.http.get(f"/photos/{new}")).status_code == 200
    assert read_photo_token(new, SigningKeys("the-new-key-after-rotation"), web.clock.now())


def test_no_log_line_keeps_a_photo_links_signature() -> None:
    from datetime import UTC, datetime

    token = make_photo_token(42, datetime(2026, 3, 2, tzinfo=UTC), SECRET)
    line = f'"GET /photos/{token} HTTP/1.1" 200'

    cleaned = REDACTOR.redact(line)

    assert token.split(".")[1] not in cleaned
    assert f"/photos/{token.split('.')[0]}.…" in cleaned
