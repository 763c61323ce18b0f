"""Odd requests to the family routes: a 4xx, never a 5xx."""

from __future__ import annotations

from storage.uow import UnitOfWorkFactory
from tests.web.conftest import WebHarness
from tests.web.family_data import add_family


async def test_a_photo_number_past_any_id_is_not_found(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    family = await add_family(stores)
    base = web.url(family.guardian_id)
    for photo_id in ("9" * 19, "9" * 40, "0" * 30 + "1"):
        response = await web.http.get(f"{base}/photos/{photo_id}")
        assert response.status_code == 404, photo_id


async def test_a_link_request_with_an_odd_body_is_answered(web: WebHarness) -> None:
    # Mis-encoded bytes are read as U+FFFD and answered like any address (the answer never
    # says whether an address is known); what follows is refused.
    response = await web.http.post(
        "/family/link-request",
        content=b"email=\xff\xfe%FF@x.org",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    for body in (b"&" * 5000, b"email=" + b"a" * 5000, b"a=1&" * 30):
        response = await web.http.post(
            "/family/link-request",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code in (400, 413), body[:20]


def test_access_log_lines_never_show_a_family_token() -> None:
    import logging

    from bot.web.http_edge import REDACT_FAMILY_TOKENS

    path = "/family/g8n0e20558.JlcRgMSpFvDxHqFmOCKt2xaljMg/photos/3?x=1"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "GET", path, "1.1", 200),
        None,
    )
    assert REDACT_FAMILY_TOKENS.filter(record)
    line = record.getMessage()
    assert "JlcRg" not in line and "g8n0e" not in line
    assert "/family/…/photos/3?x=1" in line
    record.args = ("10.0.0.1:5000", "POST", "/family/link-request", "1.1", 200)
    REDACT_FAMILY_TOKENS.filter(record)
    assert "/family/link-request" in record.getMessage()
