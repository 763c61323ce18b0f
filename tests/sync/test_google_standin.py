"""The Google stand-in refuses what Google refuses, so the client tests mean something."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.sync_standins.google import (
    CHROMEOS_READONLY,
    DEVICES_PATH,
    JWT_BEARER,
    FakeGoogle,
    device,
    new_private_key,
)

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SA = "sync@district-devices.iam.gserviceaccount.com"
ADMIN = "sync-admin@district.org"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return new_private_key()


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(now=lambda: NOW)
    await fake.start()
    fake.register(SA, private_key.public_key())
    fake.admins.add(ADMIN)
    fake.devices = [
        device(f"S{i}", last_sync=datetime(2026, 2, 20 + i, tzinfo=UTC)) for i in range(5)
    ]
    try:
        yield fake
    finally:
        await fake.stop()


def jwt(key: rsa.RSAPrivateKey, claims: dict[str, Any], alg: str = "RS256") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def claims(google: FakeGoogle, **changes: Any) -> dict[str, Any]:
    base = {
        "iss": SA,
        "sub": ADMIN,
        "scope": CHROMEOS_READONLY,
        "aud": google.token_url,
        "iat": T,
        "exp": T + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


async def token(google: FakeGoogle, assertion: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            google.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion}
        )


async def test_a_good_assertion_gets_a_bearer_token(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey
) -> None:
    response = await token(google, jwt(private_key, claims(google)))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.")


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"aud": "https://oauth2.googleapis.com/token"}, 400, "invalid_grant"),
        ({"exp": T + 7200}, 400, "invalid_grant"),  # longer than an hour
        ({"iat": T - 7200, "exp": T - 3600}, 400, "invalid_grant"),  # expired
        ({"iat": T + 600, "exp": T + 4200}, 400, "invalid_grant"),  # from the future
        (
            {"scope": "https://www.googleapis.com/auth/admin.directory.user"},
            401,
            "unauthorized_client",
        ),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, 400, "invalid_grant"),
    ],
)
async def test_assertions_google_refuses(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    changes: dict[str, Any],
    status: int,
    error: str,
) -> None:
    response = await token(google, jwt(private_key, claims(google, **changes)))
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_a_signature_by_another_key_or_alg_is_refused(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey
) -> None:
    other = new_private_key()
    assert (await token(google, jwt(other, claims(google)))).status_code == 400
    assert (await token(google, jwt(private_key, claims(google), alg="HS256"))).status_code == 400


async def list_devices(google: FakeGoogle, access: str, **params: str) -> httpx.Response:
    url = google.base_url + DEVICES_PATH.format(customer="my_customer")
    async with httpx.AsyncClient() as http:
        return await http.get(url, params=params, headers={"Authorization": f"Bearer {access}"})


async def test_the_listing_checks_its_parameters(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey
) -> None:
    access = (await token(google, jwt(private_key, claims(google)))).json()["access_token"]
    assert (await list_devices(google, access, maxResults="301")).status_code == 400
    assert (await list_devices(google, access, query="model:chromebook")).status_code == 400
    first = await list_devices(google, access, maxResults="2")
    page_token = first.json()["nextPageToken"]
    other_query = await list_devices(
        google, access, maxResults="2", query="sync:2026-02-22..", pageToken=page_token
    )
    assert other_query.status_code == 400  # a token belongs to its listing
    since = await list_devices(google, access, query="sync:2026-02-22..")
    assert [d["serialNumber"] for d in since.json()["chromeosdevices"]] == ["S2", "S3", "S4"]
    day = await list_devices(google, access, query="sync:2026-02-21")
    assert [d["serialNumber"] for d in day.json()["chromeosdevices"]] == ["S1"]
    until = await list_devices(google, access, query="sync:..2026-02-21")
    assert [d["serialNumber"] for d in until.json()["chromeosdevices"]] == ["S0", "S1"]


async def test_a_token_without_a_subject_may_not_list_devices(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey
) -> None:
    access = (await token(google, jwt(private_key, claims(google, sub=None)))).json()
    response = await list_devices(google, access["access_token"])
    assert response.status_code == 403
    assert response.json()["error"]["errors"][0]["reason"] == "forbidden"
