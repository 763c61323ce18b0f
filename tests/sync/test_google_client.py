"""The Google Admin client against the local stand-in: signing in as a delegated service
account, paging, incremental reads, the device mapping, and every way the listing can fail."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bot.sync.credentials import CredentialError
from bot.sync.google import (
    FULL_EVERY,
    SCOPE,
    GoogleAdminDevices,
    ServiceAccountKey,
    last_user_email,
    map_device,
    sign_assertion,
)
from bot.sync.http import Backoff, SourceUnavailable
from tests.sync_standins.google import (
    FakeGoogle,
    device,
    key_file_text,
    new_private_key,
)
from workflows.clock import FixedClock
from workflows.sync import SyncCursor

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
SA_EMAIL = "devicecare-sync@district-devices.iam.gserviceaccount.com"
ADMIN = "sync-admin@district.org"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return new_private_key()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey, clock: FixedClock) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(now=clock.now)
    await fake.start()
    fake.register(SA_EMAIL, private_key.public_key())
    fake.admins.add(ADMIN)
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def backoff(waits: list[float]) -> Backoff:
    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    return Backoff(attempts=4, sleep=no_wait)


def key_for(google: FakeGoogle, private_key: rsa.RSAPrivateKey) -> ServiceAccountKey:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri=google.token_url)
    return ServiceAccountKey.from_json(text, setting="GOOGLE_SERVICE_ACCOUNT_JSON")


def client_for(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    **kwargs: Any,
) -> GoogleAdminDevices:
    kwargs.setdefault("subject", ADMIN)
    return GoogleAdminDevices(
        key_for(google, private_key),
        api_url=google.base_url,
        backoff=backoff,
        clock=clock,
        **kwargs,
    )


def fleet(n: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [device(f"5CD{i:06d}", asset_id=f"A-{i:05d}", **kwargs) for i in range(n)]


# --- signing in ---------------------------------------------------------------------------


async def test_a_token_is_fetched_once_and_reused_until_it_nears_expiry(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    google.devices = fleet(3)
    source = client_for(google, private_key, clock, backoff)
    await source.fetch()
    await source.fetch()
    assert google.issued == 1
    claims = google.token_requests[0].claims
    assert claims["iss"] == SA_EMAIL
    assert claims["sub"] == ADMIN
    assert claims["scope"] == SCOPE
    assert claims["aud"] == google.token_url
    assert claims["exp"] - claims["iat"] == 3600
    assert google.token_requests[0].header["kid"] == "0123456789abcdef0123456789abcdef01234567"

    clock.advance(minutes=59, seconds=1)  # inside the last minute of the hour: renewed first
    await source.fetch()
    assert google.issued == 2
    assert all(r.status == 200 for r in google.device_requests)


async def test_a_token_that_expires_in_the_middle_of_a_listing_is_renewed_once(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.devices = fleet(7)
    source = client_for(google, private_key, clock, backoff, page_size=3)
    google.fail_next("expire_token", after=1)  # page 1 read, then the token dies
    snapshot = await source.fetch()
    assert len(snapshot.devices) == 7
    assert google.issued == 2
    assert [r.status for r in google.device_requests] == [200, 401, 200, 200]
    assert waits == []  # the 401 is retried at once with a new token


async def test_a_service_account_without_delegation_is_told_what_to_authorize(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.register(SA_EMAIL, private_key.public_key(), delegated_scopes=set())
    source = client_for(google, private_key, clock, backoff)
    with pytest.raises(SourceUnavailable) as caught:
        await source.fetch()
    message = str(caught.value)
    assert "domain-wide delegation" in message
    assert "104857600000000000001" in message  # the client ID to authorize
    assert SCOPE in message
    assert "\n" not in message
    assert waits == []  # a refusal is not an outage
    assert google.device_requests == []


async def test_a_subject_who_may_not_read_devices_gets_a_clear_403(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.devices = fleet(2)
    source = client_for(google, private_key, clock, backoff, subject="teacher@district.org")
    with pytest.raises(SourceUnavailable) as caught:
        await source.fetch()
    message = str(caught.value)
    assert "403" in message and "teacher@district.org" in message
    assert "GOOGLE_ADMIN_SUBJECT" in message and "domain-wide delegation" in message
    assert waits == []
    assert len(google.device_requests) == 1


async def test_a_key_the_stand_in_does_not_know_is_refused(
    google: FakeGoogle, clock: FixedClock, backoff: Backoff
) -> None:
    stranger = new_private_key()
    source = client_for(google, stranger, clock, backoff)
    with pytest.raises(SourceUnavailable, match="invalid_grant"):
        await source.fetch()
    assert google.token_requests[0].status == 400


async def test_a_wrong_token_address_is_a_sign_in_failure_not_a_listing_one(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    source = client_for(
        google, private_key, clock, backoff, token_url=f"{google.base_url}/oauth2/v9/token"
    )
    with pytest.raises(SourceUnavailable) as caught:
        await source.fetch()
    message = str(caught.value)
    assert message.startswith("Google Admin sign-in answered 404")
    assert "customer" not in message


# --- listing ------------------------------------------------------------------------------


async def test_every_page_is_read_with_the_documented_parameters(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    google.devices = fleet(650)
    source = client_for(google, private_key, clock, backoff)
    snapshot = await source.fetch()
    assert snapshot.source == "google"
    assert snapshot.complete is True
    assert len(snapshot.devices) == 650
    assert len({d.serial for d in snapshot.devices}) == 650
    assert len(google.device_requests) == 3  # 300 + 300 + 50
    first = google.device_requests[0].params
    assert first["maxResults"] == "300"
    assert first["projection"] == "FULL"
    assert "recentUsers" in first["fields"] and "nextPageToken" in first["fields"]
    assert "query" not in first and "pageToken" not in first
    assert google.device_requests[1].params["pageToken"]
    assert google.device_requests[0].customer == "my_customer"


async def test_an_org_unit_limits_the_listing_to_it_and_the_units_under_it(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    google.devices = [
        device("S1", org_unit="/Students"),
        device("S2", org_unit="/Students/Grade 5"),
        device("T1", org_unit="/Staff"),
    ]
    source = client_for(google, private_key, clock, backoff, org_unit="/Students")
    snapshot = await source.fetch()
    assert sorted(d.serial for d in snapshot.devices) == ["S1", "S2"]
    params = google.device_requests[0].params
    assert params["orgUnitPath"] == "Students"  # "minus the leading /"
    assert params["includeChildOrgunits"] == "true"


async def test_an_empty_account_is_a_complete_listing_of_nothing(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    snapshot = await client_for(google, private_key, clock, backoff).fetch()
    assert snapshot.devices == [] and snapshot.complete is True


async def test_incremental_reads_list_only_devices_synced_since_and_are_not_complete(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    old = NOW - timedelta(days=20)
    google.devices = [device(f"OLD{i}", last_sync=old) for i in range(5)]
    source = client_for(google, private_key, clock, backoff)
    full = await source.fetch()
    assert full.complete is True and len(full.devices) == 5
    assert full.cursor is not None

    clock.advance(days=1)
    google.devices.append(device("NEW1", last_sync=clock.now() - timedelta(hours=3)))
    google.devices[0]["lastSync"] = (clock.now() - timedelta(hours=1)).isoformat()
    changed = await source.fetch(full.cursor)
    assert changed.complete is False
    assert sorted(d.serial for d in changed.devices) == ["NEW1", "OLD0"]
    # Two days of overlap before the previous read: dates have no zone, the index lags.
    assert google.device_requests[-1].params["query"] == "sync:2026-02-28.."

    # The next incremental read starts from this one, not from the full listing.
    clock.advance(days=1)
    await source.fetch(changed.cursor)
    assert google.device_requests[-1].params["query"] == "sync:2026-03-01.."


async def test_a_full_listing_comes_back_once_the_last_one_is_a_week_old(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    google.devices = fleet(2)
    source = client_for(google, private_key, clock, backoff)
    cursor = (await source.fetch()).cursor
    for _ in range(6):
        clock.advance(days=1)
        snapshot = await source.fetch(cursor)
        assert snapshot.complete is False
        cursor = snapshot.cursor
    clock.advance(days=1)
    snapshot = await source.fetch(cursor)
    assert snapshot.complete is True
    assert "query" not in google.device_requests[-1].params
    decoded = SyncCursor.decode(snapshot.cursor)
    assert decoded is not None and decoded.full == clock.now()
    assert FULL_EVERY == timedelta(days=7)


async def test_an_unreadable_cursor_means_a_full_listing(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    caplog: pytest.LogCaptureFixture,
) -> None:
    google.devices = fleet(2)
    source = client_for(google, private_key, clock, backoff)
    with caplog.at_level(logging.INFO, logger="devicecare.sync.google"):
        snapshot = await source.fetch("2026-03-01")
    assert snapshot.complete is True
    assert "cursor can't be read" in caplog.text


async def test_a_device_listed_twice_is_kept_once_and_one_without_a_serial_is_left_out(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    twice = device("DUP1", device_id="dev-dup")
    nameless = device("X", device_id="dev-x")
    del nameless["serialNumber"]
    google.devices = [twice, *fleet(3), dict(twice, annotatedAssetId="A-NEW"), nameless]
    source = client_for(google, private_key, clock, backoff, page_size=2)
    snapshot = await source.fetch()
    serials = sorted(d.serial for d in snapshot.devices)
    assert serials == ["5CD000000", "5CD000001", "5CD000002", "DUP1"]
    dup = next(d for d in snapshot.devices if d.serial == "DUP1")
    assert dup.asset_tag == "A-NEW"


# --- faults -------------------------------------------------------------------------------


async def test_rate_limits_outages_and_dropped_connections_are_retried(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.devices = fleet(5)
    source = client_for(google, private_key, clock, backoff, page_size=2)
    google.fail_next("429", "503", "drop")  # page 1: three failures, then it answers
    snapshot = await source.fetch()
    assert len(snapshot.devices) == 5
    assert waits[0] == 2.0  # Retry-After obeyed
    assert len(waits) == 3


async def test_googles_403_rate_limit_is_retried_not_refused(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.devices = fleet(3)
    source = client_for(google, private_key, clock, backoff, page_size=2)
    google.fail_next("rate_limit_403")
    snapshot = await source.fetch()
    assert len(snapshot.devices) == 3
    assert [r.status for r in google.device_requests] == [403, 200, 200]
    assert len(waits) == 1


async def test_a_source_that_stays_down_raises_and_returns_no_half_listing(
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    clock: FixedClock,
    backoff: Backoff,
    waits: list[float],
) -> None:
    google.devices = fleet(5)
    source = client_for(google, private_key, clock, backoff, page_size=2)
    google.fail_next("503", "503", "503", "503", after=1)  # page 1 answers, page 2 never
    result: Any = None
    with pytest.raises(SourceUnavailable) as caught:
        result = await source.fetch()
    assert result is None
    message = str(caught.value)
    assert message.startswith("Google Admin answered 503")
    assert message.endswith("(gave up after 4 attempts)")
    assert len(waits) == 3
    assert [r.status for r in google.device_requests] == [200, 503, 503, 503, 503]


async def test_a_malformed_page_raises_instead_of_returning_what_was_read(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    google.devices = fleet(3)
    source = client_for(google, private_key, clock, backoff)
    google.fail_next("malformed")
    with pytest.raises(SourceUnavailable, match="page 1 of the ChromeOS devices"):
        await source.fetch()


async def test_a_repeated_page_token_stops_the_listing(
    private_key: rsa.RSAPrivateKey, clock: FixedClock, backoff: Backoff
) -> None:
    pages = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        pages += 1
        return httpx.Response(200, json={"chromeosdevices": [], "nextPageToken": "same"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="http://g/token")
        key = ServiceAccountKey.from_json(text, setting="GOOGLE_SERVICE_ACCOUNT_JSON")
        source = GoogleAdminDevices(
            key, subject=ADMIN, api_url="http://g", http=http, backoff=backoff, clock=clock
        )
        with pytest.raises(SourceUnavailable, match="repeated a page token"):
            await source.fetch()
    assert pages == 2


# --- the assertion, the key and the mapping (no server) -------------------------------------


def _decode(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_the_assertion_is_an_rs256_jwt_the_public_key_verifies(
    private_key: rsa.RSAPrivateKey,
) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://t/token")
    key = ServiceAccountKey.from_json(text, setting="GOOGLE_SERVICE_ACCOUNT_JSON")
    jwt = sign_assertion(key, subject=ADMIN, audience="https://t/token", now=NOW)
    header_b64, claims_b64, signature_b64 = jwt.split(".")
    assert "=" not in jwt
    header, claims = _decode(header_b64), _decode(claims_b64)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert claims == {
        "iss": SA_EMAIL,
        "sub": ADMIN,
        "scope": SCOPE,
        "aud": "https://t/token",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
    }
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    private_key.public_key().verify(
        signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_the_assertion_never_asks_for_more_than_an_hour(private_key: rsa.RSAPrivateKey) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://t/token")
    key = ServiceAccountKey.from_json(text, setting="X")
    jwt = sign_assertion(key, subject=ADMIN, audience="a", now=NOW, lifetime=timedelta(hours=5))
    claims = _decode(jwt.split(".")[1])
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "authorized_user", "client_email": "a@b"}', "type is not service_account"),
        ('{"private_key": "x"}', "client_email is missing"),
        ('{"client_email": "a@b.c"}', "private_key is missing"),
        (
            '{"client_email": "a@b.c", "private_key": "-----BEGIN PRIVATE KEY-----\\nnope\\n'
            '-----END PRIVATE KEY-----\\n"}',
            "not a PEM private key",
        ),
    ],
)
def test_a_malformed_key_is_one_line_naming_the_setting(text: str, why: str) -> None:
    with pytest.raises(CredentialError) as caught:
        ServiceAccountKey.from_json(text, setting="GOOGLE_SERVICE_ACCOUNT_FILE")
    message = str(caught.value)
    assert message.startswith("GOOGLE_SERVICE_ACCOUNT_FILE: not a Google service account key")
    assert why in message
    assert "\n" not in message
    assert "nope" not in message


def test_the_key_never_shows_in_its_repr(private_key: rsa.RSAPrivateKey) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://t/token")
    key = ServiceAccountKey.from_json(text, setting="X")
    assert "PRIVATE" not in repr(key) and "private_key=" not in repr(key)


def test_a_device_maps_to_what_devicecare_keeps() -> None:
    mapped = map_device(
        device(
            " 5CD1234XYZ ",
            device_id="abc-123",
            asset_id="DC-00042",
            org_unit="/Students/Grade 5",
            recent_users=[
                {"type": "USER_TYPE_UNMANAGED"},
                {"type": "USER_TYPE_MANAGED", "email": "Ava.Lee@District.org"},
                {"type": "USER_TYPE_MANAGED", "email": "older@district.org"},
            ],
        )
    )
    assert mapped is not None
    assert mapped.external_id == "abc-123"
    assert mapped.serial == "5CD1234XYZ"
    assert mapped.asset_tag == "DC-00042"
    assert mapped.model == "HP Chromebook 11 G9 EE"
    assert mapped.org_unit == "/Students/Grade 5"
    assert mapped.status == "in_service" and mapped.source_status == "ACTIVE"
    # Newest first; a personal (unmanaged) sign-in says nothing about the holder.
    assert mapped.last_user_email == "ava.lee@district.org"
    assert mapped.coverages is None
    assert mapped.part_number is None


@pytest.mark.parametrize(
    ("google_status", "status"),
    [
        ("ACTIVE", "in_service"),
        ("DEPROVISIONED", "retired"),
        ("DISABLED", "in_service"),  # locked as lost or stolen: still the district's
        ("INACTIVE", "in_service"),
    ],
)
def test_statuses(google_status: str, status: str) -> None:
    mapped = map_device(device("S1", status=google_status))
    assert mapped is not None
    assert mapped.status == status
    assert mapped.source_status == google_status


def test_missing_facts_stay_unknown() -> None:
    raw = device("S1", model=None, asset_id=None)
    del raw["status"], raw["orgUnitPath"]
    mapped = map_device(raw)
    assert mapped is not None
    assert (mapped.model, mapped.asset_tag, mapped.status, mapped.org_unit) == (
        None,
        None,
        None,
        None,
    )
    assert mapped.last_user_email is None


def test_no_managed_user_means_no_suggestion() -> None:
    assert last_user_email({"recentUsers": [{"type": "USER_TYPE_UNMANAGED"}]}) is None
    assert last_user_email({"recentUsers": "garbage"}) is None
    assert last_user_email({}) is None


def test_cursor_round_trip_and_refusals() -> None:
    cursor = SyncCursor(full=NOW - timedelta(days=2), read=NOW)
    assert SyncCursor.decode(cursor.encode()) == cursor
    assert SyncCursor.decode(None) is None
    assert SyncCursor.decode("full=2026-03-01T00:00:00;read=2026-03-02T00:00:00") is None  # naive
    assert (
        SyncCursor.decode(f"full={NOW.isoformat()};read={(NOW - timedelta(1)).isoformat()}") is None
    )
