"""Family-route requests the HTTP fuzz suite (tests/fuzz) found mishandled: each now gets a
4xx page, never a 500."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from bot.family_links import LinkProblem, _signature, read_family_token
from storage.uow import UnitOfWorkFactory
from tests.web.conftest import SECRET, WebHarness
from tests.web.family_data import add_family


def _token(guardian_id: int, day: int) -> str:
    return f"g{guardian_id}n0e{day}.{_signature(guardian_id, 0, day, SECRET)}"


@pytest.mark.parametrize("day", [2_932_897, 9_999_999])
def test_a_signed_expiry_past_any_calendar_is_invalid(day: int) -> None:
    with pytest.raises(LinkProblem) as raised:
        read_family_token(_token(1, day), SECRET, date(2026, 3, 2))
    assert raised.value.kind == "invalid"


async def test_the_page_for_such_a_link_is_not_found(
    web: WebHarness, stores: UnitOfWorkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The expiry day became a date past 9999-12-31: OverflowError and a 500, on every route
    # that reads a family link.
    family = await add_family(stores)
    token = _token(family.guardian_id, 9_999_999)
    with caplog.at_level(logging.INFO):
        page = await web.http.get(f"/family/{token}")
        photo = await web.http.get(f"/family/{token}/photos/1")
    assert page.status_code == 404
    assert photo.status_code == 404
    assert not [r for r in caplog.records if r.exc_info]
