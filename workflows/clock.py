"""Time as a dependency, so billing runs and reminders can be tested on any day."""

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.errors import ValidationError
from workflows.i18n import _


class Clock(Protocol):
    def now(self) -> datetime:
        """Current instant, always timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time would silently be read in the server's zone, not the district's.
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC)


class FixedClock:
    """A clock that only moves when told to; for tests and replaying a missed billing day."""

    def __init__(self, now: datetime) -> None:
        self._now = _require_aware(now)

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = _require_aware(now)

    def advance(self, **timedelta_kwargs: float) -> datetime:
        self._now += timedelta(**timedelta_kwargs)
        return self._now


def zone(tz: ZoneInfo | str) -> ZoneInfo:
    """Resolve a district time-zone setting, with a form-friendly error for a bad name."""
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            _('"{tz}" isn\'t a known time zone.', tz=tz), field="timezone"
        ) from exc


def local_date(clock_now: datetime, tz: ZoneInfo | str) -> date:
    """The calendar date in the district's zone at the given instant."""
    return _require_aware(clock_now).astimezone(zone(tz)).date()
