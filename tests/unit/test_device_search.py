"""How a device look-up compares what was typed with what is stored (workflows.device_search)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from workflows.device_search import (
    IGNORED,
    MIN_QUERY,
    MatchRank,
    rank_of,
    search_key,
    search_patterns,
    search_text,
)

# What serials, tags, names and ids are made of, plus the characters the key leaves out and
# some that it keeps (accents, other scripts).
typed = st.text(alphabet=string.ascii_letters + string.digits + IGNORED + "éÉßø#", max_size=30)


def test_case_spaces_and_dashes_do_not_matter() -> None:
    assert search_key("SN-1001") == search_key("sn 1001") == search_key("Sn1001") == "sn1001"
    assert search_key("AT 1005") == "at1005"
    assert search_key("O\u2019Brien, Ana") == search_key("obrien ana") == "obrienana"
    assert search_key("5cd-123.45/6_7") == "5cd1234567"
    assert search_key("50%|\\") == "50"  # LIKE wildcards and the separator never reach a pattern
    assert search_key("Élodie") == "Élodie"  # only A-Z are lowered, as SQLite's lower() does


def test_patterns_by_rank() -> None:
    patterns = search_patterns("  SN-1001 ")
    assert patterns is not None
    assert (patterns.key, patterns.exact, patterns.prefix, patterns.part) == (
        "sn1001",
        "%|sn1001|%",
        "%|sn1001%",
        "%sn1001%",
    )
    short = search_patterns("A-t")
    assert short is not None and short.part is None  # two characters: no substring match
    assert [r for r, _p in short.by_rank()] == [MatchRank.EXACT, MatchRank.PREFIX]
    assert search_patterns("x") is None and search_patterns(" - ") is None


def test_ranks() -> None:
    device = search_text(search_key("SN1001"), search_key("AT1005"))
    assert device == "|sn1001|at1005|"
    assert rank_of("sn1001", device) is MatchRank.EXACT
    assert rank_of("at10", device) is MatchRank.PREFIX
    assert rank_of("1005", device) is MatchRank.PART
    assert rank_of("1003", device) is None
    assert rank_of("05", device) is None  # two characters match only from the start
    student = search_text(search_key("AnaRivera"), search_key("RiveraAna"), search_key("S-77"))
    assert rank_of(search_key("Rivera Ana"), student) is MatchRank.EXACT
    assert rank_of(search_key("ana riv"), student) is MatchRank.PREFIX
    assert rank_of(search_key("s77"), student) is MatchRank.EXACT
    assert search_text("sn1", None) == "|sn1||"  # no asset tag


@given(typed)
def test_a_key_is_its_own_key(text: str) -> None:
    key = search_key(text)
    assert search_key(key) == key
    assert not set(key) & set(IGNORED + string.ascii_uppercase)


@given(typed, typed)
def test_keys_join_like_the_texts(a: str, b: str) -> None:
    # So a fragment of a serial or name is a fragment of its key, wherever it was cut.
    assert search_key(a + b) == search_key(a) + search_key(b)


@given(typed, st.lists(st.sampled_from(IGNORED), max_size=5), st.randoms())
def test_case_and_ignored_characters_never_change_a_key(
    text: str, noise: list[str], rnd: object
) -> None:
    swapped = "".join(c.swapcase() if c in string.ascii_letters else c for c in text)
    assert search_key(swapped) == search_key(text)
    chars = list(text)
    for char in noise:
        chars.insert(rnd.randint(0, len(chars)), char)  # type: ignore[attr-defined]
    assert search_key("".join(chars)) == search_key(text)


@given(typed, st.data())
def test_any_typed_part_of_a_stored_key_is_found(stored: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(stored)))
    end = data.draw(st.integers(start, len(stored)))
    part = stored[start:end]
    patterns = search_patterns(part)
    text = search_text(search_key(stored), None)
    if patterns is None:
        assert len(search_key(part)) < MIN_QUERY
        return
    rank = rank_of(patterns.key, text)
    if start == 0:
        assert rank in (MatchRank.EXACT, MatchRank.PREFIX)
    elif len(patterns.key) >= 3:
        assert rank is not None
