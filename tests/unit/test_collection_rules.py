"""Collection rules as plain functions: what is offered, the lines, the snapshot, the inputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from workflows.collection import (
    CollectionReason,
    already_collected_message,
    chosen_items,
    clean_code,
    clean_note,
    collection_fees,
    collection_lines,
    missing_snapshot,
    parse_reason,
)
from workflows.errors import ValidationError


@dataclass
class Fee:
    id: int
    code: str
    name: str
    price_cents: int
    kind: str = "collection"
    device_model: str | None = None
    incident_flag: str | None = None
    active: bool = True


@dataclass
class Device:
    id: int = 1
    serial: str = "5CD1234XYZ"
    asset_tag: str | None = "CB-1042"
    model: str = "HP Chromebook 11 G9"
    status: str = "in_service"
    building_id: int | None = None
    replaced_by_id: int | None = None


@dataclass
class Student:
    id: int = 1
    first_name: str = "Ana"
    last_name: str = "Ruiz"
    grade: str | None = "7"
    building_id: int | None = None
    household_id: int | None = None


SCHEDULE = [
    Fee(1, "charger", "Charger", 3500),
    Fee(2, "case", "Case", 2500),
    Fee(3, "screen", "Screen replacement", 12500, kind="damage"),  # an incident fee
    Fee(4, "stylus", "Stylus", 2000, device_model="Apple iPad (9th gen)"),
    Fee(5, "old-case", "Old case", 1000, active=False),
    Fee(6, "keys", "Keyboard keys", 1500, device_model="hp chromebook 11 g9"),
    Fee(7, "flagged", "Liquid check", 900, incident_flag="liquid"),
]


def test_offered_items_are_active_collection_fees_for_the_model() -> None:
    offered = collection_fees(SCHEDULE, "HP Chromebook 11 G9")
    # sorted by name; model match ignores case; parts, inactive, other models, flagged left out
    assert [f.code for f in offered] == ["case", "charger", "keys"]
    assert [f.code for f in collection_fees(SCHEDULE, "Apple iPad (9th gen)")] == [
        "case",
        "charger",
        "stylus",
    ]


def test_chosen_items_keep_schedule_order_once_each_and_refuse_unknown_ids() -> None:
    offered = collection_fees(SCHEDULE, "HP Chromebook 11 G9")
    assert [f.code for f in chosen_items(offered, [1, 2, 1])] == ["case", "charger"]
    assert chosen_items(offered, []) == []
    with pytest.raises(ValidationError) as refused:
        chosen_items(offered, [1, 4])  # the stylus isn't offered for a Chromebook
    assert refused.value.field == "missing"
    with pytest.raises(ValidationError):
        chosen_items(offered, [3])  # an incident part can't be billed at collection


def test_lines_and_snapshot_carry_the_schedule_prices() -> None:
    items = chosen_items(collection_fees(SCHEDULE, "HP Chromebook 11 G9"), [1, 6])
    lines = collection_lines(items)
    assert [(ln.description, ln.unit_cents, ln.quantity, ln.fee_item_id) for ln in lines] == [
        ("Charger", 3500, 1, 1),
        ("Keyboard keys", 1500, 1, 6),
    ]
    assert sum(ln.amount_cents for ln in lines) == 5000
    assert missing_snapshot(items) == [
        {"fee_item_id": 1, "code": "charger", "name": "Charger", "unit_cents": 3500},
        {"fee_item_id": 6, "code": "keys", "name": "Keyboard keys", "unit_cents": 1500},
    ]


def test_reason_defaults_to_end_of_year() -> None:
    assert parse_reason(None) is CollectionReason.END_OF_YEAR
    assert parse_reason("") is CollectionReason.END_OF_YEAR
    assert parse_reason("withdrawal") is CollectionReason.WITHDRAWAL
    assert parse_reason("End of year") is CollectionReason.END_OF_YEAR
    assert CollectionReason.END_OF_YEAR.return_reason == "collected: end of year"
    assert CollectionReason.WITHDRAWAL.return_reason == "collected: withdrawal"
    with pytest.raises(ValidationError) as refused:
        parse_reason("graduation")
    assert refused.value.field == "reason"


def test_scanned_codes_and_notes_are_cleaned() -> None:
    assert clean_code("  CB-1042\n") == "CB-1042"
    with pytest.raises(ValidationError):
        clean_code("   ")
    with pytest.raises(ValidationError):
        clean_code("x" * 101)
    assert clean_note("  ") is None
    assert clean_note(" charger frayed ") == "charger frayed"
    with pytest.raises(ValidationError):
        clean_note("x" * 1001)


def test_already_collected_message_names_the_day_and_the_student() -> None:
    text = already_collected_message(Device(), date(2026, 6, 5), Student())
    assert text.startswith("CB-1042 was already checked in on Jun 5, 2026 from Ana Ruiz")
    no_tag = already_collected_message(Device(asset_tag=None), date(2026, 6, 5), None)
    assert no_tag.startswith("5CD1234XYZ was already checked in on Jun 5, 2026,")
