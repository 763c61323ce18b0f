"""How a device look-up compares what was typed with serials, asset tags, names and student ids.

Both sides go through `search_key`: stored keys (by the database, see
storage/migrations/versions/0015_device_search.py) and the typed query (here). A key is the
text with the letters A-Z lowered and the characters people type inconsistently (spaces,
dashes, dots, commas, apostrophes, slashes, underscores) left out, so `sn-1001`, `SN 1001` and
`SN1001` are one key. Only ASCII letters are lowered because SQLite's `lower()` lowers only
those: the database computes the stored keys and must agree with this function exactly.

A record's keys are joined into one search text, each key between `SEPARATOR`s, so one
LIKE pattern finds a key that equals (`|q|`), starts with (`|q`) or contains (`q`) the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from string import ascii_lowercase, ascii_uppercase

SEPARATOR = "|"
# Left out of every key. The LIKE wildcards and escape (% _ \) are among them, so a key can
# never act as a pattern; the separator is, so a query can't span two keys.
IGNORED = " -\u2010\u2013\u2014_.,'\u2019/\\%" + SEPARATOR
MIN_QUERY = 2  # one character matches half the district
MIN_PART = 3  # substring matches need a trigram to be served by an index
MAX_QUERY = 100

_FOLD = str.maketrans(ascii_uppercase, ascii_lowercase, IGNORED + "\x00")


class MatchRank(IntEnum):
    """Better matches sort first."""

    EXACT = 0
    PREFIX = 1
    PART = 2


def search_key(text: str) -> str:
    """`text` as compared: A-Z lowered, `IGNORED` characters removed."""
    return text.translate(_FOLD)


def search_text(*keys: str | None) -> str:
    """The one text a record is found by: each key (already through `search_key`) between
    separators; a missing key is empty."""
    return SEPARATOR + SEPARATOR.join(k or "" for k in keys) + SEPARATOR


@dataclass(frozen=True)
class SearchPatterns:
    """LIKE patterns over a search text, one per rank; `part` is None for short queries."""

    key: str
    exact: str
    prefix: str
    part: str | None

    def by_rank(self) -> list[tuple[MatchRank, str]]:
        ranked = [(MatchRank.EXACT, self.exact), (MatchRank.PREFIX, self.prefix)]
        if self.part is not None:
            ranked.append((MatchRank.PART, self.part))
        return ranked


def search_patterns(query: str) -> SearchPatterns | None:
    """The patterns for what was typed, or None when it is too short to search by."""
    key = search_key(query[:MAX_QUERY])
    if len(key) < MIN_QUERY:
        return None
    return SearchPatterns(
        key=key,
        exact=f"%{SEPARATOR}{key}{SEPARATOR}%",
        prefix=f"%{SEPARATOR}{key}%",
        part=f"%{key}%" if len(key) >= MIN_PART else None,
    )


def rank_of(key: str, text: str) -> MatchRank | None:
    """How `key` (a query's key) matches a record's search text, or None."""
    if f"{SEPARATOR}{key}{SEPARATOR}" in text:
        return MatchRank.EXACT
    if f"{SEPARATOR}{key}" in text:
        return MatchRank.PREFIX
    if len(key) >= MIN_PART and key in text:
        return MatchRank.PART
    return None
