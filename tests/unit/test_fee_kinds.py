"""The fee kind rules: parsing a typed kind, mapping old kinds, and which form offers what."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from workflows.collection import collection_fees
from workflows.errors import ValidationError
from workflows.fee_kinds import FeeKind, kind_from_legacy, of_kind, parse_fee_kind, require_kind
from workflows.invoices import applicable_fees, build_lines


@dataclass
class Fee:
    id: int
    name: str
    kind: str
    price_cents: int = 1000
    code: str = ""
    device_model: str | None = None
    incident_flag: str | None = None
    active: bool = True


# The schedule the issue saw: one part twice, at collection and after damage, at two prices.
SCHEDULE = [
    Fee(1, "Screen replacement", "damage", 12500),
    Fee(2, "Lost or damaged charger", "damage", 3000),
    Fee(3, "Cracked screen", "collection", 9500),
    Fee(4, "Charger", "collection", 3500),
    Fee(5, "Technology fee", "annual", 2500),
    Fee(6, "Loaner cable", "other", 500),
]


@pytest.mark.parametrize(
    ("typed", "kind"),
    [
        ("damage", FeeKind.DAMAGE),
        (" Collection ", FeeKind.COLLECTION),
        ("ANNUAL", FeeKind.ANNUAL),
        ("other", FeeKind.OTHER),
    ],
)
def test_parse_fee_kind_accepts_the_kinds_in_any_case(typed: str, kind: FeeKind) -> None:
    assert parse_fee_kind(typed) is kind


@pytest.mark.parametrize("typed", ["", None, "part", "damages", "collection fee"])
def test_parse_fee_kind_refuses_anything_else_and_lists_the_kinds(typed: str | None) -> None:
    with pytest.raises(ValidationError, match="damage, collection, annual, other") as caught:
        parse_fee_kind(typed)
    assert caught.value.field == "kind"


@pytest.mark.parametrize(
    ("old", "kind"),
    [
        ("part", FeeKind.DAMAGE),
        ("fine", FeeKind.DAMAGE),
        ("Part", FeeKind.DAMAGE),
        ("collection", FeeKind.COLLECTION),
        ("annual", FeeKind.ANNUAL),
        ("labor", FeeKind.OTHER),
        ("", FeeKind.OTHER),
        (None, FeeKind.OTHER),
    ],
)
def test_old_kinds_map_parts_and_fines_to_damage(old: str | None, kind: FeeKind) -> None:
    assert kind_from_legacy(old) is kind


def test_of_kind_keeps_only_that_kind() -> None:
    assert [f.id for f in of_kind(SCHEDULE, FeeKind.COLLECTION)] == [3, 4]


def test_the_invoice_form_offers_damage_fees_only() -> None:
    offered = applicable_fees(SCHEDULE, "HP Chromebook", ())
    assert [f.name for f in offered] == ["Screen replacement", "Lost or damaged charger"]


def test_the_collection_form_offers_collection_fees_only() -> None:
    offered = collection_fees(SCHEDULE, "HP Chromebook")
    assert [f.name for f in offered] == ["Charger", "Cracked screen"]


def test_annual_and_other_items_are_offered_by_no_form() -> None:
    offered = {f.id for f in applicable_fees(SCHEDULE, "HP Chromebook", ())}
    offered |= {f.id for f in collection_fees(SCHEDULE, "HP Chromebook")}
    assert offered.isdisjoint({5, 6})


@pytest.mark.parametrize("fee_id", [3, 4, 5, 6])
def test_an_invoice_refuses_an_item_of_another_kind(fee_id: int) -> None:
    with pytest.raises(ValidationError, match="an incident's invoice takes damage fees only"):
        build_lines(SCHEDULE, (1, fee_id), ())


def test_require_kind_names_the_item_and_both_kinds() -> None:
    with pytest.raises(ValidationError) as caught:
        require_kind([SCHEDULE[2]], FeeKind.DAMAGE, what="this form", field="fees")
    assert caught.value.message == (
        "“Cracked screen” is a collection fee; this form takes damage fees only."
    )
    assert caught.value.field == "fees"
    require_kind(SCHEDULE[:2], FeeKind.DAMAGE, what="this form", field="fees")
