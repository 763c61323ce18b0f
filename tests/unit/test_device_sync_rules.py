"""The device sync's rules on plain records: what a listing changes, and what it never may."""

from __future__ import annotations

from datetime import date

from tests.sync.listed_source import chromebook, ipad
from workflows.device_sync import StoredCoverage, StoredDevice, StoredRecord, plan_device_sync
from workflows.sync import DeviceSnapshot, SyncPlan, too_many_removals


def stored(n: int, status: str = "in_service", tag: str | None = None) -> StoredDevice:
    return StoredDevice(n, f"5CD{n:07d}", "HP Chromebook 11 G9", None, tag, status)


def listed_before(*ns: int) -> dict[str, StoredRecord]:
    return {f"dev-{n}": StoredRecord(100 + n, f"dev-{n}", n, {}) for n in ns}


def test_serials_match_without_case_or_space() -> None:
    snapshot = DeviceSnapshot("google", [chromebook(1, serial=" 5cd0000001 ")])
    diff = plan_device_sync(snapshot, {"5CD0000001": stored(1)}, {}, [])
    assert diff.new_devices == [] and diff.plan.counts == {"linked": 1}


def test_a_serial_listed_twice_is_applied_once() -> None:
    snapshot = DeviceSnapshot("google", [chromebook(1), chromebook(2, serial="5CD0000001")])
    diff = plan_device_sync(snapshot, {}, {}, [])
    assert len(diff.new_devices) == 1
    assert diff.plan.counts == {"new": 1, "problems": 1} and diff.plan.changes == 1
    assert diff.plan.sample[-1] == "5CD0000001 skipped: listed twice"


def test_facts_the_source_does_not_give_keep_what_is_stored() -> None:
    device = StoredDevice(1, "5CD0000001", "Lenovo 300e", "82CE", "T-1", "in_service")
    snapshot = DeviceSnapshot("google", [chromebook(1, model=None, status=None)])
    diff = plan_device_sync(snapshot, {"5CD0000001": device}, listed_before(), [])
    assert diff.device_updates == []


def test_staff_statuses_win_and_devices_never_listed_stay() -> None:
    devices = {
        d.serial: d for d in (stored(1, "lost"), stored(2, "replaced"), stored(3), stored(4))
    }
    snapshot = DeviceSnapshot("google", [chromebook(1, status="retired")])
    diff = plan_device_sync(snapshot, devices, listed_before(1, 2, 3), [])
    assert [u["id"] for u in diff.device_updates] == [3]  # 4 was never listed by this source
    assert (diff.plan.removals, diff.plan.base) == (1, 3)


def test_an_incomplete_listing_retires_nothing() -> None:
    devices = {d.serial: d for d in (stored(1), stored(2))}
    snapshot = DeviceSnapshot("google", [chromebook(1)], complete=False)
    diff = plan_device_sync(snapshot, devices, listed_before(1, 2), [])
    assert diff.plan.removals == 0 and diff.device_updates == []


def test_a_tag_moving_between_devices_waits_a_run() -> None:
    devices = {d.serial: d for d in (stored(1, tag="T-1"), stored(2, tag="T-2"))}
    snapshot = DeviceSnapshot(
        "google", [chromebook(1, asset_tag="T-2"), chromebook(2, asset_tag="T-1")]
    )
    diff = plan_device_sync(snapshot, devices, listed_before(1, 2), [])
    assert diff.device_updates == []  # the unique index could not take a swap half-way
    assert diff.plan.counts["problems"] == 2


def test_coverage_from_elsewhere_is_kept_when_the_source_lists_none() -> None:
    device = StoredDevice(1, "DMP0000001", "iPad", None, None, "in_service")
    csv = StoredCoverage(7, 1, "Acme", "Damage", date(2025, 1, 1), date(2026, 1, 1), "cov.csv")
    snapshot = DeviceSnapshot("apple", [ipad(1, coverages=())])
    diff = plan_device_sync(snapshot, {"DMP0000001": device}, {}, [csv])
    assert diff.coverage_deletes == [] and diff.coverages == []


def test_the_guard_holds_more_than_the_share() -> None:
    assert not too_many_removals(SyncPlan("google", removals=5, base=100), 0.05)
    assert too_many_removals(SyncPlan("google", removals=6, base=100), 0.05)
    assert too_many_removals(SyncPlan("google", removals=1, base=1), 0.5)
    assert not too_many_removals(SyncPlan("google", removals=0, base=0), 0.0)
