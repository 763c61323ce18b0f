"""What a device source's snapshot changes in DeviceCare, decided without I/O.

storage/device_sync.py loads the store's devices, coverage and this source's records once,
hands them here, and writes exactly the rows this returns: a rerun of an unchanged listing
returns nothing to write.

The rules:
- Devices are matched by serial (trimmed, upper case). A source fact that is None is one the
  source didn't give, and keeps what is stored.
- An asset tag is taken only when no other device holds it (nor another device of the same
  listing): otherwise it is reported and left off, and the rest of the device is applied.
- Staff's statuses win: a device DeviceCare has as replaced or lost is never changed by a sync.
- A device leaves service ("retired", a removal) when the source says so, or when a complete
  listing no longer has a device this source listed before. A device the source never listed
  is never retired by it.
- Coverage the source states replaces that source's rows for the device, kept per (plan,
  start); None (not read in this run) keeps what is stored. Rows from elsewhere (a CSV import)
  are only updated when the source states the same plan and start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from workflows.sync import SOURCE_LABELS, DeviceSnapshot, SourceCoverage, SourceDevice, SyncPlan

IN_SERVICE = "in_service"
RETIRED = "retired"
# Set by staff inside DeviceCare; no source may undo them.
STAFF_STATUSES = frozenset({"replaced", "lost"})
DEVICE_FIELDS = ("model", "part_number", "asset_tag", "status")


def normalize_serial(serial: str) -> str:
    """As storage.models.normalize_serial: serials compare without case or outer space."""
    return serial.strip().upper()


@dataclass(frozen=True, slots=True)
class StoredDevice:
    id: int
    serial: str
    model: str
    part_number: str | None
    asset_tag: str | None
    status: str


@dataclass(frozen=True, slots=True)
class StoredCoverage:
    id: int
    device_id: int
    provider: str
    plan: str
    start: date
    end: date
    source: str | None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A source's record as last stored: its id, the device it is, what the source said."""

    id: int
    external_id: str
    entity_id: int | None
    facts: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewDevice:
    serial: str
    model: str
    part_number: str | None
    asset_tag: str | None
    status: str


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """A source record to insert (record_id None) or update; `serial` names its device."""

    external_id: str
    serial: str
    facts: dict[str, Any]
    record_id: int | None = None


@dataclass(frozen=True, slots=True)
class CoverageWrite:
    """A coverage row to insert (coverage_id None) or update; `serial` names its device."""

    serial: str
    coverage: SourceCoverage
    coverage_id: int | None = None


@dataclass
class DeviceDiff:
    """The plan people read, and the rows that carry it out."""

    plan: SyncPlan
    new_devices: list[NewDevice] = field(default_factory=list)
    device_updates: list[dict[str, Any]] = field(default_factory=list)  # id + DEVICE_FIELDS
    records: list[RecordWrite] = field(default_factory=list)
    coverages: list[CoverageWrite] = field(default_factory=list)
    coverage_deletes: list[int] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return (
            len(self.new_devices)
            + len(self.device_updates)
            + len(self.records)
            + len(self.coverages)
            + len(self.coverage_deletes)
        )


def _clean(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None


def coverage_summary(coverages: Iterable[SourceCoverage]) -> list[dict[str, str]]:
    return [
        {
            "provider": c.provider,
            "plan": c.plan,
            "start": c.start.isoformat(),
            "end": c.end.isoformat(),
        }
        for c in sorted(coverages, key=lambda c: (c.start, c.plan))
    ]


def device_facts(device: SourceDevice, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the source said about a device, as its record keeps it (JSON values only)."""
    if device.coverages is None:
        coverage = (previous or {}).get("coverage")
    else:
        coverage = coverage_summary(device.coverages)
    return {
        "serial": normalize_serial(device.serial),
        "model": _clean(device.model),
        "part_number": _clean(device.part_number),
        "asset_tag": _clean(device.asset_tag),
        "status": device.status,
        "source_status": device.source_status,
        "org_unit": device.org_unit,
        "last_user_email": _clean(device.last_user_email),
        "coverage": coverage,
    }


def _label(status: str) -> str:
    return status.replace("_", " ")


class _Planner:
    def __init__(
        self,
        snapshot: DeviceSnapshot,
        devices: Mapping[str, StoredDevice],
        records: Mapping[str, StoredRecord],
        coverages: Iterable[StoredCoverage],
    ) -> None:
        self.snapshot = snapshot
        self.label = SOURCE_LABELS.get(snapshot.source, snapshot.source)
        self.devices = devices
        self.records = records
        self.diff = DeviceDiff(SyncPlan(snapshot.source))
        self.plan = self.diff.plan
        self.by_id = {d.id: d for d in devices.values()}
        self.tag_owner = {d.asset_tag.casefold(): d.serial for d in devices.values() if d.asset_tag}
        self.claimed: dict[str, str] = {}
        self.covered: dict[int, list[StoredCoverage]] = defaultdict(list)
        for row in coverages:
            self.covered[row.device_id].append(row)
        self.seen: set[str] = set()
        self.listed: set[str] = set()

    def run(self) -> DeviceDiff:
        for device in self.snapshot.devices:
            self.device(device)
        if self.snapshot.complete:
            self.missing()
        held = sum(1 for r in self.records.values() if r.entity_id is not None)
        self.plan.base = max(held, len(self.seen))
        return self.diff

    def skip(self, line: str) -> None:
        self.plan.count("problems")
        self.plan.note(line)

    def tag_for(self, serial: str, tag: str | None) -> str | None:
        if tag is None:
            return None
        key = tag.casefold()
        owner = self.tag_owner.get(key)
        if owner is None or owner == serial:
            owner = self.claimed.setdefault(key, serial)
        if owner != serial:
            self.skip(f"asset tag {tag} on {serial} left off: it is on {owner}")
            return None
        return tag

    def device(self, device: SourceDevice) -> None:
        serial = normalize_serial(device.serial)
        if not serial:
            self.skip(f"device {device.external_id} skipped: {self.label} gives no serial")
            return
        if serial in self.seen:
            self.skip(f"{serial} skipped: listed twice")
            return
        self.seen.add(serial)
        self.listed.add(device.external_id)
        current = self.devices.get(serial)
        tag = self.tag_for(serial, _clean(device.asset_tag))
        writes = self.diff.writes
        if current is None:
            self.add(serial, device, tag)
        else:
            self.update(current, device, tag)
        if device.coverages is not None:
            self.coverage(serial, current, device.coverages)
        # Counted only when the record is all that changes: the device's own changes say more.
        self.record(serial, device, current, counted=self.diff.writes > writes)
        if self.diff.writes == writes:
            self.plan.count("unchanged")

    def add(self, serial: str, device: SourceDevice, tag: str | None) -> None:
        model = _clean(device.model) or ""
        status = device.status or IN_SERVICE
        new = NewDevice(serial, model, _clean(device.part_number), tag, status)
        self.diff.new_devices.append(new)
        self.plan.count("new")
        self.plan.note(
            " ".join(
                p
                for p in (
                    "new",
                    serial,
                    model,
                    "" if status == IN_SERVICE else f"({_label(status)})",
                )
                if p
            )
        )

    def update(self, current: StoredDevice, device: SourceDevice, tag: str | None) -> None:
        values = {
            "model": _clean(device.model) or current.model,
            "part_number": _clean(device.part_number) or current.part_number,
            "asset_tag": tag or current.asset_tag,
            "status": current.status,
        }
        wanted = device.status
        if wanted and wanted != current.status and current.status not in STAFF_STATUSES:
            values["status"] = wanted
        changed = [f for f in DEVICE_FIELDS if values[f] != getattr(current, f)]
        if not changed:
            return
        self.diff.device_updates.append({"id": current.id, **values})
        if values["status"] == RETIRED:
            self.plan.count("retired")
            self.plan.removals += 1
            self.plan.note(f"retired {current.serial} ({self.label} lists it as retired)")
            return
        self.plan.count("changed")
        for name in changed:
            before, after = getattr(current, name) or "none", values[name] or "none"
            if name == "status":
                before, after = _label(before), _label(after)
            self.plan.note(f"{name.replace('_', ' ')} changed {current.serial}: {before} → {after}")

    def record(
        self, serial: str, device: SourceDevice, current: StoredDevice | None, *, counted: bool
    ) -> None:
        stored = self.records.get(device.external_id)
        facts = device_facts(device, None if stored is None else stored.facts)
        if stored is None:
            self.diff.records.append(RecordWrite(device.external_id, serial, facts))
            if not counted:
                self.plan.count("linked")
            return
        if stored.facts == facts and current is not None and stored.entity_id == current.id:
            return
        self.diff.records.append(RecordWrite(device.external_id, serial, facts, stored.id))
        if not counted:
            self.plan.count("details updated")

    def coverage(
        self, serial: str, current: StoredDevice | None, stated: Iterable[SourceCoverage]
    ) -> None:
        held = {} if current is None else {(c.plan, c.start): c for c in self.covered[current.id]}
        wanted: dict[tuple[str, date], SourceCoverage] = {}
        for c in stated:
            wanted.setdefault((c.plan, c.start), c)
        for key, c in wanted.items():
            row = held.get(key)
            if row is None:
                self.diff.coverages.append(CoverageWrite(serial, c))
                self.plan.count("coverage added")
                self.plan.note(f"coverage {c.plan} on {serial}: {c.start} to {c.end}")
            elif (row.end, row.provider, row.source) != (c.end, c.provider, self.label):
                self.diff.coverages.append(CoverageWrite(serial, c, row.id))
                self.plan.count("coverage changed")
                if row.end != c.end:
                    self.plan.note(f"coverage {c.plan} on {serial} ends {c.end} (was {row.end})")
        for key, row in held.items():
            if key not in wanted and row.source == self.label:
                self.diff.coverage_deletes.append(row.id)
                self.plan.count("coverage removed")
                self.plan.note(
                    f"coverage {row.plan} on {serial} removed: {self.label} no longer lists it"
                )

    def missing(self) -> None:
        """A complete listing: what this source listed before and lists no more leaves service."""
        done: set[int] = set()
        for record in self.records.values():
            if record.external_id in self.listed or record.entity_id is None:
                continue
            device = self.by_id.get(record.entity_id)
            if device is None or device.id in done or device.serial in self.seen:
                continue
            done.add(device.id)
            if device.status == RETIRED or device.status in STAFF_STATUSES:
                continue
            self.diff.device_updates.append(
                {
                    **{f: getattr(device, f) for f in DEVICE_FIELDS},
                    "id": device.id,
                    "status": RETIRED,
                }
            )
            self.plan.count("retired")
            self.plan.removals += 1
            self.plan.note(f"retired {device.serial} (no longer in {self.label})")


def plan_device_sync(
    snapshot: DeviceSnapshot,
    devices: Mapping[str, StoredDevice],
    records: Mapping[str, StoredRecord],
    coverages: Iterable[StoredCoverage],
) -> DeviceDiff:
    """The difference between what the source lists and the store: `devices` by normalized
    serial, `records` this source's device records by external id, `coverages` the stored
    coverage rows of those devices."""
    return _Planner(snapshot, devices, records, coverages).run()
