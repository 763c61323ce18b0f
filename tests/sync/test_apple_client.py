"""The Apple School Manager client against the local stand-in of Apple's API: sign-in with a
signed assertion, tokens kept and renewed, every page read, coverage mapped, and outages,
429s, dropped connections and broken pages retried or refused, never half a listing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bot.sync.apple import AUDIENCE, AppleSchoolManager
from bot.sync.http import Backoff, SourceUnavailable
from tests.sync_standins.apple import (
    CLIENT_ID,
    KEY_ID,
    Device,
    FakeAppleSchoolManager,
    GeneratedDevices,
    ListedDevices,
    coverage_attributes,
    device_attributes,
    new_key,
    pem_of,
)
from workflows.clock import FixedClock
from workflows.sync import SourceCoverage

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@dataclass
class Apple:
    server: FakeAppleSchoolManager
    key: ec.EllipticCurvePrivateKey
    clock: FixedClock
    waits: list[float] = field(default_factory=list)

    def client(self, **kwargs: object) -> AppleSchoolManager:
        async def no_wait(seconds: float) -> None:
            self.waits.append(seconds)

        options: dict[str, object] = {
            "client_id": CLIENT_ID,
            "key_id": KEY_ID,
            "private_key": self.key,
            "api_url": self.server.base_url,
            "token_url": self.server.token_url,
            "backoff": Backoff(sleep=no_wait),
            "clock": self.clock,
            "page_size": 100,
        }
        options.update(kwargs)
        return AppleSchoolManager(**options)  # type: ignore[arg-type]


@pytest.fixture
async def apple() -> AsyncIterator[Apple]:
    key = new_key()
    clock = FixedClock(NOW)
    server = FakeAppleSchoolManager(
        devices=GeneratedDevices(250, today=NOW.date()), now=lambda: clock.now().timestamp()
    )
    server.register(key.public_key())
    await server.start()
    try:
        yield Apple(server, key, clock)
    finally:
        await server.stop()


def serials(snapshot_devices: object) -> list[str]:
    return [d.serial for d in snapshot_devices]  # type: ignore[attr-defined]


EXPECTED = [GeneratedDevices.serial(i) for i in range(250)]


async def test_every_page_is_read_with_its_coverage(apple: Apple) -> None:
    source = apple.client()
    snapshot = await source.fetch()

    assert snapshot.source == "apple" and snapshot.complete
    assert snapshot.cursor == f"full={NOW.isoformat()};read={NOW.isoformat()}"
    assert serials(snapshot.devices) == EXPECTED
    assert apple.server.limits == [100, 100, 100]  # three pages of at most 100
    assert apple.server.requests["coverage"] == 250
    assert source.stats.pages == 3 and source.stats.coverage_requests == 250
    by_serial = {d.serial: d for d in snapshot.devices}

    ipad = by_serial[GeneratedDevices.serial(0)]  # an iPad with AppleCare+
    assert (ipad.external_id, ipad.model, ipad.part_number, ipad.status) == (
        "ASM000000000",
        "iPad (10th generation)",
        "MPQ03LL/A",
        "in_service",
    )
    assert ipad.coverages == (
        SourceCoverage("Apple", "Limited Warranty", date(2023, 7, 1), date(2024, 6, 29)),
        SourceCoverage(
            "Apple", "AppleCare+ for Schools", date(2023, 7, 1), date(2027, 6, 29), "0000000001"
        ),
    )
    mac = by_serial[GeneratedDevices.serial(1)]  # a Mac with the warranty only
    assert [c.plan for c in mac.coverages or ()] == ["Limited Warranty"]
    apple_tv = by_serial[GeneratedDevices.serial(3)]
    assert apple_tv.coverages == ()  # read, and there is none
    retired = [d.serial for d in snapshot.devices if d.status == "retired"]
    assert retired == [GeneratedDevices.serial(96), GeneratedDevices.serial(193)]  # released
    assert {d.status for d in snapshot.devices} == {"in_service", "retired"}


async def test_without_coverage_only_the_list_is_read(apple: Apple) -> None:
    snapshot = await apple.client(with_coverage=False, page_size=1000).fetch()

    assert serials(snapshot.devices) == EXPECTED
    assert all(d.coverages is None for d in snapshot.devices)  # not read: keep what is stored
    assert apple.server.limits == [1000] and apple.server.requests["coverage"] == 0


async def test_the_assertion_is_what_apple_documents(apple: Apple) -> None:
    await apple.client(with_coverage=False).fetch()

    (accepted,) = apple.server.assertions  # the stand-in checked the signature and claims
    assert accepted.header == {"alg": "ES256", "kid": KEY_ID}
    claims = accepted.claims
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == AUDIENCE == "https://account.apple.com/auth/oauth2/v2/token"
    assert claims["iat"] == int(NOW.timestamp())
    assert 0 < claims["exp"] - claims["iat"] <= 180 * 86_400
    uuid.UUID(claims["jti"])
    assert accepted.form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "scope": "school.api",
    }


async def test_an_apple_business_account_asks_for_its_scope(apple: Apple) -> None:
    business = "BUSINESSAPI.0d7c3a6e-9f41-4b2a-8c55-3e1f2a9b7d10"
    apple.server.register(apple.key.public_key(), business, KEY_ID)

    await apple.client(client_id=business, with_coverage=False).fetch()

    assert apple.server.assertions[0].form["scope"] == "business.api"


async def test_the_token_is_kept_until_it_expires(apple: Apple) -> None:
    apple.server.token_lifetime = 600
    source = apple.client(with_coverage=False)

    await source.fetch()
    await source.fetch()
    assert len(apple.server.assertions) == 1  # six pages, two runs, one token
    assert len(apple.server.tokens_used) == 1

    apple.clock.advance(seconds=600)
    await source.fetch()
    assert len(apple.server.assertions) == 2  # renewed before use, not after a refusal
    assert apple.server.unauthorized == 0


async def test_a_token_that_expires_mid_listing_is_renewed(apple: Apple) -> None:
    apple.server.fault("devices", "expire", after=1)  # every token dies before page 2
    source = apple.client(with_coverage=False)

    snapshot = await source.fetch()

    assert serials(snapshot.devices) == EXPECTED
    assert apple.server.unauthorized == 1
    assert len(apple.server.assertions) == 2
    assert apple.waits == []  # renewed at once, no backoff


async def test_expiry_while_coverage_is_read_is_survived(apple: Apple) -> None:
    apple.server.fault("coverage", "expire", after=120)

    snapshot = await apple.client().fetch()

    assert serials(snapshot.devices) == EXPECTED
    assert all(d.coverages is not None for d in snapshot.devices)
    assert apple.server.unauthorized >= 1 and len(apple.server.assertions) >= 2


async def test_429s_outages_and_dropped_connections_are_retried(apple: Apple) -> None:
    server = apple.server
    server.fault("token", 503)
    server.fault("devices", 429, retry_after="7")
    server.fault("devices", 500, after=1)
    server.fault("devices", "drop")
    server.fault("coverage", 429, retry_after="2", after=10)
    server.fault("coverage", 502, times=2, after=5)
    server.fault("coverage", "drop", after=30)

    snapshot = await apple.client().fetch()

    assert serials(snapshot.devices) == EXPECTED
    assert all(d.coverages is not None for d in snapshot.devices)
    assert 7.0 in apple.waits and 2.0 in apple.waits  # Retry-After was followed
    assert len(apple.waits) == 8


async def test_a_page_broken_once_is_read_again(apple: Apple) -> None:
    apple.server.fault("devices", "malformed", after=1)
    apple.server.fault("devices", "incomplete")
    apple.server.fault("coverage", "incomplete", after=50)

    snapshot = await apple.client().fetch()

    assert serials(snapshot.devices) == EXPECTED
    assert len(apple.waits) == 3


@pytest.mark.parametrize("fault", ["malformed", "incomplete"])
async def test_a_page_that_stays_broken_stops_the_read(apple: Apple, fault: str) -> None:
    apple.server.fault("devices", fault, times=6, after=1)

    with pytest.raises(SourceUnavailable) as caught:
        await apple.client(with_coverage=False).fetch()

    message = str(caught.value)
    assert "the device list page 2 can't be read" in message
    assert "gave up after 6 attempts" in message


async def test_a_broken_coverage_answer_stops_the_whole_read(apple: Apple) -> None:
    apple.server.fault("coverage", "malformed", times=6, after=40)

    # One worker, so the six broken answers all go to the same device's reads.
    with pytest.raises(SourceUnavailable, match="coverage of device 'ASM000000040' .* can't be"):
        await apple.client(concurrency=1).fetch()


async def test_a_device_without_a_serial_is_an_unreadable_page(apple: Apple) -> None:
    broken = device_attributes("X")
    del broken["serialNumber"]
    apple.server.devices = ListedDevices(
        [Device("A1", device_attributes("A1")), Device("B2", broken)]
    )

    with pytest.raises(SourceUnavailable, match="device 'B2': no serialNumber"):
        await apple.client(with_coverage=False).fetch()


async def test_a_source_that_stays_down_gives_up(apple: Apple) -> None:
    apple.server.fault("devices", 500, times=6)

    with pytest.raises(SourceUnavailable, match=r"answered 500.*gave up after 6 attempts"):
        await apple.client().fetch()
    assert len(apple.waits) == 5


async def test_a_key_apple_does_not_know_is_refused(apple: Apple) -> None:
    wrong = new_key()

    with pytest.raises(SourceUnavailable) as caught:
        await apple.client(private_key=wrong).fetch()

    message = str(caught.value)
    assert "invalid_client" in message and "APPLE_PRIVATE_KEY" in message
    assert "\n" not in message
    assert apple.server.refusals == ["bad signature"]
    assert apple.server.requests["devices"] == 0
    assert apple.waits == []  # a refusal is an answer, not an outage


async def test_an_unknown_key_id_or_client_is_refused(apple: Apple) -> None:
    with pytest.raises(SourceUnavailable, match="invalid_client"):
        await apple.client(key_id="not-the-key").fetch()
    with pytest.raises(SourceUnavailable, match="invalid_client"):
        await apple.client(client_id="SCHOOLAPI.someone-else").fetch()
    assert apple.server.refusals == [
        "unknown kid not-the-key",
        "unknown client SCHOOLAPI.someone-else",
    ]


async def test_a_clock_far_behind_signs_an_expired_assertion(apple: Apple) -> None:
    behind = FixedClock(datetime(2026, 3, 1, tzinfo=UTC))

    with pytest.raises(SourceUnavailable, match="invalid_client"):
        await apple.client(clock=behind).fetch()
    assert apple.server.refusals == ["expired assertion"]


async def test_cancelled_and_expired_coverage_keep_their_days(apple: Apple) -> None:
    plans = [
        {
            "id": "1",
            "attributes": coverage_attributes(
                "AppleCare+ for Schools",
                date(2024, 8, 1),
                date(2027, 7, 31),
                agreement="AG-1",
                cancelled=date(2025, 1, 15),
            ),
        },
        {
            "id": "2",
            "attributes": coverage_attributes(
                "Limited Warranty", date(2023, 8, 1), date(2024, 7, 31), today=NOW.date()
            ),
        },
    ]
    apple.server.devices = ListedDevices([Device("DMP1", device_attributes("DMP1"), plans)])

    (device,) = (await apple.client().fetch()).devices

    assert device.coverages == (
        SourceCoverage("Apple", "Limited Warranty", date(2023, 8, 1), date(2024, 7, 31)),
        SourceCoverage(
            "Apple", "AppleCare+ for Schools", date(2024, 8, 1), date(2025, 1, 15), "AG-1"
        ),
    )


async def test_no_secret_reaches_a_log(apple: Apple, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    apple.server.fault("devices", "expire", after=1)
    apple.server.fault("devices", 500)
    apple.server.fault("coverage", "malformed", after=3)

    await apple.client().fetch()
    with pytest.raises(SourceUnavailable) as refused:
        await apple.client(private_key=new_key()).fetch()

    secrets = [pem_of(apple.key), *apple.server.tokens, *(a.raw for a in apple.server.assertions)]
    body = "".join(pem_of(apple.key).splitlines()[1:-1])  # the key without its PEM armour
    logged = caplog.text
    assert "sync:" in logged  # the retries were logged
    for secret in [*secrets, body[:40]]:
        assert secret not in logged
        assert secret not in str(refused.value)


async def test_coverage_is_read_in_full_weekly_and_for_changed_devices_between(
    apple: Apple,
) -> None:
    book = [GeneratedDevices(3).at(i) for i in range(3)]
    apple.server.devices = ListedDevices(book)
    source = apple.client()

    first = await source.fetch(None)
    assert apple.server.requests["coverage"] == 3 and source.stats.full_coverage
    assert all(d.coverages is not None for d in first.devices)

    # The next night: nothing changed at Apple, so no coverage is read (None keeps it stored).
    apple.clock.advance(days=1)
    second = await source.fetch(first.cursor)
    assert apple.server.requests["coverage"] == 3 and not source.stats.full_coverage
    assert serials(second.devices) == serials(first.devices) and second.complete
    assert all(d.coverages is None for d in second.devices)

    # A device Apple updated since then, and a new one, have theirs read.
    book[1].attributes["updatedDateTime"] = "2026-03-03T09:30:00.000Z"
    added = device_attributes("NEW1") | {"addedToOrgDateTime": "2026-03-03T22:05:14.192Z"}
    book.append(Device("NEW1", added))
    apple.server.devices = ListedDevices(book)
    apple.clock.advance(days=1)
    third = await source.fetch(second.cursor)
    assert apple.server.requests["coverage"] == 5
    read = [d.serial for d in third.devices if d.coverages is not None]
    assert read == [GeneratedDevices.serial(1), "NEW1"]

    # A week after the last full read, every device's coverage is read again.
    apple.clock.advance(days=5)
    fourth = await source.fetch(third.cursor)
    assert source.stats.full_coverage and apple.server.requests["coverage"] == 9
    assert all(d.coverages is not None for d in fourth.devices)


async def test_an_unreadable_cursor_or_a_zero_refresh_reads_all_coverage(apple: Apple) -> None:
    apple.server.devices = ListedDevices([GeneratedDevices(2).at(i) for i in range(2)])
    source = apple.client()
    first = await source.fetch("not a cursor")
    assert source.stats.full_coverage and apple.server.requests["coverage"] == 2

    every_run = apple.client(coverage_refresh=timedelta(0))
    await every_run.fetch(first.cursor)
    assert every_run.stats.full_coverage and apple.server.requests["coverage"] == 4
