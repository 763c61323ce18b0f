"""What counts as personal and what replaces it (workflows.privacy)."""

from __future__ import annotations

import pytest

from workflows.privacy import (
    ERASED_TEXT,
    OpenBalance,
    PersonalData,
    Scrubber,
    check_open_balance,
    family_link_pattern,
    guardian_replacement,
    id_tokens,
    identifying_strings,
    name_words,
    pseudonym,
    student_replacement,
)

MARIA = PersonalData("Maria", "Rivera", "Maria.Rivera@example.org", "(555) 010-2233", "G1001")
TAG = pseudonym(3)


def test_pseudonym_and_stand_ins_say_nothing_about_the_person() -> None:
    assert TAG == "ERASED-00003"
    g = guardian_replacement(TAG, 1)
    assert (g.full_name, g.sis_id, g.email) == (
        "Guardian ERASED-00003-G1",
        "ERASED-00003-G1",
        "erased-00003-g1@erased.invalid",
    )
    assert student_replacement(TAG, 2).full_name == "Student ERASED-00003-S2"


def test_identifying_strings_are_distinctive_values_only() -> None:
    found = identifying_strings(MARIA, guardian_replacement(TAG, 1))
    assert set(found) == {
        "Maria Rivera",
        "Rivera, Maria",
        "Rivera Maria",
        "Rivera,Maria",
        "Maria.Rivera@example.org",
        "(555) 010-2233",
    }
    assert id_tokens(MARIA, guardian_replacement(TAG, 1)) == {"G1001": "ERASED-00003-G1"}
    assert found["(555) 010-2233"] == ERASED_TEXT
    # A single name is not distinctive: another family may share it.
    assert "Rivera" not in found and "Maria" not in found


def test_short_or_missing_values_are_left_out() -> None:
    person = PersonalData("A", "Li", email="not-an-email", phone="911", sis_id="7")
    assert identifying_strings(person, student_replacement(TAG, 1)) == {
        "A Li": "Student ERASED-00003-S1",
        "Li, A": "Student ERASED-00003-S1",
        "Li A": "Student ERASED-00003-S1",
        "Li,A": "Student ERASED-00003-S1",
    }
    assert name_words(person, student_replacement(TAG, 1)) == {"Li": "ERASED-00003-S1"}


def test_scrubber_replaces_phrases_anywhere_and_names_as_whole_words() -> None:
    stand_in = guardian_replacement(TAG, 1)
    scrub = Scrubber(identifying_strings(MARIA, stand_in), name_words(MARIA, stand_in))
    assert scrub.text("From MARIA RIVERA <maria.rivera@example.org>") == (
        "From Guardian ERASED-00003-G1 <erased-00003-g1@erased.invalid>"
    )
    assert scrub.text("Gracias, Maria. Marianne is someone else.") == (
        "Gracias, Guardian. Marianne is someone else."
    )
    value = {"to": ["Maria.Rivera@example.org"], "Maria": {"n": 3, "s": "Rivera family"}}
    assert scrub.value(value) == {
        "to": ["erased-00003-g1@erased.invalid"],
        "Guardian": {"n": 3, "s": "ERASED-00003-G1 family"},
    }
    assert scrub.text("RIVERA family; rivera river") == "ERASED-00003-G1 family; rivera river"
    will = PersonalData("Will", "May")
    words = Scrubber({}, name_words(will, student_replacement(TAG, 1)))
    assert words.text("Will May said he will pay in may.") == (
        "Student ERASED-00003-S1 said he will pay in may."
    )
    only_phrases = Scrubber(identifying_strings(MARIA, stand_in))
    assert only_phrases.text("Rivera") == "Rivera"


def test_ids_are_replaced_only_as_whole_tokens() -> None:
    scrub = Scrubber({}, ids={"G1": "ERASED-00003-G1"})
    assert scrub.text("g1, G1; ERASED-00003-G1 G10 XG1 G1-2") == (
        "ERASED-00003-G1, ERASED-00003-G1; ERASED-00003-G1 G10 XG1 G1-2"
    )


def test_family_links_are_removed_from_stored_text() -> None:
    token = "g12n0e20838." + "A" * 27
    other = "g120n0e20838." + "B" * 27
    scrub = Scrubber({}, patterns=[family_link_pattern(12)])
    assert (
        scrub.text(f"https://dc.example/family/{token}")
        == f"https://dc.example/family/{ERASED_TEXT}"
    )
    assert scrub.text(f"/family/{other}") == f"/family/{other}"


def test_an_open_balance_is_refused_unless_forced() -> None:
    check_open_balance(0, force=False)
    check_open_balance(1250, force=True)
    with pytest.raises(OpenBalance, match=r"still owes \$12\.50.*--force"):
        check_open_balance(1250, force=False)


def test_search_fragments_are_plain_ascii_runs() -> None:
    from storage.privacy import search_fragments

    assert search_fragments(["José Núñez", "jn@example.org", "S-1"]) == sorted(
        ["Jos", "jn@example.org", "S-1"]
    )
    assert search_fragments(['Say "hi"']) == ["Say "]
    assert search_fragments(["Zoë"]) is None  # no run of three: every row is read
