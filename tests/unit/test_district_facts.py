"""District facts: one validation for Slack and the command line, and the ways to pay."""

from __future__ import annotations

import pytest

from workflows.district_facts import (
    DistrictFacts,
    clean_district_facts,
    facts_context,
    merge_facts,
    ways_to_pay,
)
from workflows.errors import ValidationError

GOOD = DistrictFacts(
    name="  Lakeview   Unified School District ",
    check_payable_to="Lakeview USD",
    check_address="Business Office\r\n 410 Harbor Rd \n\nLakeview, MN 55001",
    office_phone="(555) 010-4477 ext. 21",
    office_hours="Mon–Fri 8:00–4:00",
    office_email="billing@lakeview.k12.mn.us",
)


def test_good_facts_are_tidied() -> None:
    clean = clean_district_facts(GOOD)
    assert clean.name == "Lakeview Unified School District"
    assert clean.check_address == "Business Office\n410 Harbor Rd\nLakeview, MN 55001"
    assert clean.office_phone == "(555) 010-4477 ext. 21"
    assert facts_context(clean)["address_one_line"] == (
        "Business Office, 410 Harbor Rd, Lakeview, MN 55001"
    )


def test_every_fact_may_be_left_unset() -> None:
    assert clean_district_facts(DistrictFacts(name="  ")) == DistrictFacts()


def test_slash_separates_address_lines() -> None:
    clean = clean_district_facts(DistrictFacts(check_address="PO Box 12 / Lakeview, MN 55001"))
    assert clean.address_lines == ("PO Box 12", "Lakeview, MN 55001")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"office_email": "billing at lakeview"}, "office_email", "email address"),
        ({"office_email": "a@b"}, "office_email", "email address"),
        ({"office_phone": "call us"}, "office_phone", "phone number"),
        ({"office_phone": "12345"}, "office_phone", "phone number"),
        ({"office_phone": "1234567890123456789"}, "office_phone", "phone number"),
        ({"name": "x" * 201}, "district_name", "at most 200"),
        ({"name": "Lakeview\nUSD"}, "district_name", "one line"),
        ({"office_hours": "h" * 121}, "office_hours", "at most 120"),
        ({"check_payable_to": "p" * 201}, "check_payable_to", "at most 200"),
        ({"check_address": "Business Office, Harbor Road"}, "check_mailing_address", "ZIP"),
        ({"check_address": "\n".join(["1 A"] * 6)}, "check_mailing_address", "5 lines"),
        ({"check_address": "1 " + "a" * 120}, "check_mailing_address", "100 characters"),
        ({"check_address": "1 Main\x00St"}, "check_mailing_address", "printable"),
    ],
)
def test_bad_facts_name_the_field(change: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        clean_district_facts(merge_facts(GOOD, change))
    assert err.value.field == field
    assert words in err.value.message


@pytest.mark.parametrize(
    "phone", ["555-010-4477", "+1 555 010 4477", "555.010.4477", "(555) 010-4477 x12", "010-4477"]
)
def test_usual_phone_numbers_pass(phone: str) -> None:
    assert clean_district_facts(DistrictFacts(office_phone=phone)).office_phone == phone


def test_merge_keeps_none_and_clears_empty() -> None:
    merged = merge_facts(GOOD, {"office_phone": None, "office_hours": ""})
    assert merged.office_phone == GOOD.office_phone and merged.office_hours == ""
    with pytest.raises(ValidationError):
        merge_facts(GOOD, {"fax": "1"})


def test_payable_to_falls_back_to_the_name() -> None:
    assert DistrictFacts(name="Lakeview USD").payable_to == "Lakeview USD"
    assert DistrictFacts(name="Lakeview USD", check_payable_to="LUSD").payable_to == "LUSD"


@pytest.mark.parametrize("stripe", [False, True])
@pytest.mark.parametrize("portal", [False, True])
@pytest.mark.parametrize("address", ["", "PO Box 12, Lakeview, MN 55001"])
@pytest.mark.parametrize("hours", ["", "Mon–Fri 8–4"])
def test_a_way_to_pay_only_when_available(
    stripe: bool, portal: bool, address: str, hours: str
) -> None:
    facts = DistrictFacts(check_address=address, office_hours=hours)
    ways = ways_to_pay(facts, stripe=stripe, portal=portal)
    assert ways.online is stripe
    assert ways.portal is portal
    assert ways.check_by_mail is bool(address)
    # In person needs the hours: a mailing address may be a post office box.
    assert ways.in_person is bool(hours)
    assert ways.any is any([stripe, portal, address, hours])
