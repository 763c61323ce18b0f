"""Syncs from the district's systems (Apple School Manager, Google Admin, OneRoster): what a
source says, what a run would change, and when a run must stop instead of applying.

The sources' clients (bot/sync/) turn API answers into these records; storage/ compares them
with the store and applies the difference; the rules here decide nothing by I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

SourceName = Literal["apple", "google", "oneroster"]
SOURCE_LABELS: dict[str, str] = {
    "apple": "Apple School Manager",
    "google": "Google Admin",
    "oneroster": "OneRoster",
}
# A run may deactivate or unassign at most this share of a source's records unless the
# district sets another (SYNC_MAX_CHANGE_SHARE): more looks like a broken source, not a change.
DEFAULT_MAX_CHANGE_SHARE = 0.05
SAMPLE_ROWS = 10
# Counted in a plan but not changes: rows that stay as they are, and rows refused as bad input.
NOT_CHANGES = frozenset({"unchanged", "problems"})


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    """A coverage plan on one device, as the source states it (e.g. AppleCare+ for Schools)."""

    provider: str
    plan: str
    start: date
    end: date
    agreement: str | None = None


@dataclass(frozen=True, slots=True)
class SourceDevice:
    """One device as a source lists it. None means the source says nothing about that fact."""

    external_id: str  # the source's own id (ASM's device id, Google's deviceId)
    serial: str
    model: str | None = None
    part_number: str | None = None
    asset_tag: str | None = None
    status: str | None = None  # the DeviceCare status it implies: "in_service" or "retired"
    # The source's own word for it, shown with the device (Google's DISABLED: locked as lost
    # or stolen, still the district's, so still in service).
    source_status: str | None = None
    org_unit: str | None = None
    last_user_email: str | None = None
    # None: coverage was not read in this run (keep what is stored); () : the device has none.
    coverages: tuple[SourceCoverage, ...] | None = None


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """What one run read from a device source."""

    source: SourceName
    devices: Sequence[SourceDevice]
    # A full listing: a device the source listed before and not now has left it. An incremental
    # read (changes since `cursor`) is not complete and can't imply that.
    complete: bool = True
    cursor: str | None = None  # where the next incremental read starts, when the API has one


class DeviceSource(Protocol):
    """A client that lists a district's devices (Apple School Manager, Google Admin)."""

    name: SourceName

    async def fetch(self, cursor: str | None = None) -> DeviceSnapshot: ...


@dataclass
class SyncPlan:
    """What a run would change: counts by kind, the first rows for people to read, and how
    many records it would take away (deactivate or unassign) out of how many it holds."""

    source: SourceName
    counts: dict[str, int] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    removals: int = 0
    base: int = 0

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def note(self, line: str) -> None:
        if len(self.sample) < SAMPLE_ROWS:
            self.sample.append(line)

    @property
    def changes(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind not in NOT_CHANGES)

    @property
    def removal_share(self) -> float:
        return self.removals / self.base if self.base else 0.0


def too_many_removals(plan: SyncPlan, max_share: float) -> bool:
    """A run stops, instead of applying, when it would take away more than `max_share` of
    what the source's records hold (a source that lists nothing takes away everything)."""
    return plan.removals > 0 and plan.removal_share > max_share


@dataclass(frozen=True)
class SyncCursor:
    """Where a source's next read starts: when its last full read began (a full listing, or
    every device's coverage) and when its last read of any kind began. Stored as text."""

    full: datetime
    read: datetime

    def encode(self) -> str:
        return f"full={self.full.isoformat()};read={self.read.isoformat()}"

    @classmethod
    def decode(cls, text: str | None) -> SyncCursor | None:
        """None for no cursor or one that can't be read: the source then reads in full."""
        if not text:
            return None
        try:
            parts = dict(item.split("=", 1) for item in text.split(";"))
            full = datetime.fromisoformat(parts["full"])
            read = datetime.fromisoformat(parts["read"])
        except (ValueError, KeyError):
            return None
        if full.tzinfo is None or read.tzinfo is None or read < full:
            return None
        return cls(full, read)
