from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from workflows.clock import Clock, FixedClock, SystemClock, local_date, zone
from workflows.errors import ValidationError


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs(datetime.now(UTC) - now) < timedelta(seconds=5)


def test_fixed_clock_and_advance() -> None:
    clock = FixedClock(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert clock.advance(days=1, hours=2) == datetime(2026, 2, 1, 14, 0, tzinfo=UTC)
    assert clock.now() == datetime(2026, 2, 1, 14, 0, tzinfo=UTC)


def test_fixed_clock_normalises_to_utc() -> None:
    chicago = datetime(2026, 1, 1, 18, 0, tzinfo=ZoneInfo("America/Chicago"))
    now = FixedClock(chicago).now()
    assert now.tzinfo is UTC
    assert now == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)


def test_fixed_clock_rejects_naive() -> None:
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 2))


def test_clocks_satisfy_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), FixedClock(datetime(2026, 1, 1, tzinfo=UTC))]
    assert all(c.now().tzinfo is not None for c in clocks)


def test_local_date_evening_in_chicago_is_next_day_in_utc() -> None:
    instant = datetime(2026, 3, 10, 23, 30, tzinfo=ZoneInfo("America/Chicago"))
    assert instant.astimezone(UTC).date().isoformat() == "2026-03-11"
    assert local_date(instant, "America/Chicago").isoformat() == "2026-03-10"
    assert local_date(instant, ZoneInfo("UTC")).isoformat() == "2026-03-11"


def test_local_date_from_utc_clock() -> None:
    clock = FixedClock(datetime(2026, 7, 1, 4, 30, tzinfo=UTC))  # 23:30 CDT on June 30
    assert local_date(clock.now(), "America/Chicago").isoformat() == "2026-06-30"
    assert local_date(clock.now(), "UTC").isoformat() == "2026-07-01"


def test_local_date_with_fixed_offset() -> None:
    instant = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert local_date(instant, "UTC").isoformat() == "2025-12-31"


def test_local_date_rejects_naive_and_unknown_zone() -> None:
    with pytest.raises(ValueError):
        local_date(datetime(2026, 1, 1), "UTC")
    with pytest.raises(ValidationError) as info:
        local_date(datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus_Mons")
    assert info.value.field == "timezone"


def test_zone_passes_zoneinfo_through() -> None:
    tz = ZoneInfo("America/New_York")
    assert zone(tz) is tz
    assert zone("America/New_York") == tz
