"""Fuzzing the family's routes and the rest of the web app: the family page (GET and HEAD),
its photos, the Pay form and the new-link form, with tokens of every kind (ours, forged,
respelled, expired, naming no one) and any form; /healthz, /metrics and paths
no route has. Each case: no 5xx, no logged traceback, nothing changed when refused."""

from __future__ import annotations

from datetime import date

import httpx
from hypothesis import given

from tests.conftest import NOW
from tests.fuzz.http_harness import (
    APP_SECRET,
    FuzzApp,
    fuzz_app,  # noqa: F401 - the module's app
    fuzz_settings,
)
from tests.fuzz.http_strategies import FamilyCase, family_requests

# The seeded district's guardians are the first ids; 9 names no one.
GUARDIANS = (1, 2, 9)
INVOICES = (1, 2, 3)
TODAY = (NOW.date() - date(1970, 1, 1)).days


@fuzz_settings(300)
@given(case=family_requests(APP_SECRET, GUARDIANS, INVOICES, TODAY))
def test_family_routes(fuzz_app: FuzzApp, case: FamilyCase) -> None:  # noqa: F811
    app = fuzz_app

    async def send() -> httpx.Response:
        return await app.http.request(
            case.method, case.path, content=case.body, headers=case.headers
        )

    answer = app.run(app.check(send, describe=case.describe(), label=case.what))
    if case.path == "/healthz" and case.method == "GET":
        assert answer.status == 200


def test_the_seeded_ids_are_the_ones_fuzzed(fuzz_app: FuzzApp) -> None:  # noqa: F811
    seeded = fuzz_app.seeded
    assert {seeded.guardian_id, seeded.other_guardian_id} <= set(GUARDIANS)
    assert set(seeded.invoice_ids) <= set(INVOICES)
