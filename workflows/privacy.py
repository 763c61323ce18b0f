"""What is personal about a family, and what replaces it when a departed family is erased.

Erasure pseudonymises rather than deletes: invoices, payments and the activity log stay whole
(the district must still account for every cent), but every name, email, phone number and
student id in them becomes the erasure's pseudonym. These rules are plain functions; the
storage layer (storage.privacy) finds the rows and applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workflows.errors import DomainError
from workflows.i18n import _
from workflows.money import format_cents

ERASED_TEXT = "[erased]"
ERASED_MAIL_DOMAIN = "erased.invalid"  # .invalid never resolves, so no mail can go out to it
MIN_NAME_LENGTH = 2  # a one-letter "name" would rewrite every word that contains it
MIN_PHONE_DIGITS = 7


def pseudonym(erasure_id: int) -> str:
    """The erasure's tag, e.g. ERASED-00012: unique, says nothing about who was erased."""
    return f"ERASED-{erasure_id:05d}"


@dataclass(frozen=True)
class PersonalData:
    """One guardian's or student's identifying values, as stored before erasure."""

    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = None
    sis_id: str | None = None


@dataclass(frozen=True)
class Replacement:
    first_name: str
    last_name: str
    sis_id: str
    email: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def guardian_replacement(tag: str, n: int) -> Replacement:
    """The n-th (1-based) erased guardian of an erasure."""
    ident = f"{tag}-G{n}"
    return Replacement("Guardian", ident, ident, f"{ident.lower()}@{ERASED_MAIL_DOMAIN}")


def student_replacement(tag: str, n: int) -> Replacement:
    """The n-th (1-based) erased student of an erasure."""
    ident = f"{tag}-S{n}"
    return Replacement("Student", ident, ident, f"{ident.lower()}@{ERASED_MAIL_DOMAIN}")


def household_name(tag: str) -> str:
    return f"Erased family {tag}"


def _name_forms(person: PersonalData) -> list[str]:
    first, last = person.first_name.strip(), person.last_name.strip()
    if not first or not last:
        return [n for n in (first, last) if len(n) >= MIN_NAME_LENGTH and " " in n]
    return [f"{first} {last}", f"{last}, {first}", f"{last} {first}", f"{last},{first}"]


def identifying_strings(person: PersonalData, stand_in: Replacement) -> dict[str, str]:
    """Strings that identify this person wherever they appear, and their stand-ins.

    Only distinctive values: full names, email, phone. A first or last name on its own is not
    here (another family may share it), see `name_words`; nor the SIS id, see `id_tokens`.
    """
    found: dict[str, str] = {}
    for form in _name_forms(person):
        found[form] = stand_in.full_name
    if person.email and "@" in person.email:
        found[person.email.strip()] = stand_in.email
    if person.phone and sum(c.isdigit() for c in person.phone) >= MIN_PHONE_DIGITS:
        found[person.phone.strip()] = ERASED_TEXT
    return found


def id_tokens(person: PersonalData, stand_in: Replacement) -> dict[str, str]:
    """The SIS id, replaced only as a whole token: "G1" must not rewrite "ERASED-00001-G1"."""
    sis_id = (person.sis_id or "").strip()
    return {sis_id: stand_in.sis_id} if len(sis_id) >= MIN_NAME_LENGTH else {}


def name_words(person: PersonalData, stand_in: Replacement) -> dict[str, str]:
    """The person's first and last names as single words, for text that is about them."""
    words: dict[str, str] = {}
    if len(person.first_name.strip()) >= MIN_NAME_LENGTH:
        words[person.first_name.strip()] = stand_in.first_name
    if len(person.last_name.strip()) >= MIN_NAME_LENGTH:
        words[person.last_name.strip()] = stand_in.last_name
    return words


class Scrubber:
    """Replaces personal strings in text and in JSON values.

    `phrases` (full names, emails, phone numbers) are replaced wherever they occur, in any
    case; `ids` only as whole tokens (not inside a longer id). `words` (a first or last name
    alone) only as whole words spelled as a name is: as stored, capitalised or in capitals, so
    a student called Will doesn't rewrite "will". Longer strings go first, so "Maria Rivera"
    becomes one stand-in rather than two.
    """

    def __init__(
        self,
        phrases: Mapping[str, str],
        words: Mapping[str, str] | None = None,
        patterns: Iterable[str] = (),
        ids: Mapping[str, str] | None = None,
    ) -> None:
        self._phrases: dict[str, str] = {}
        self._words: dict[str, str] = {}
        parts: list[str] = []
        for original in sorted(phrases, key=len, reverse=True):
            self._phrases[original.casefold()] = phrases[original]
            parts.append(f"(?i:{re.escape(original)})")
        for original in sorted(ids or {}, key=len, reverse=True):
            self._phrases.setdefault(original.casefold(), (ids or {})[original])
            parts.append(rf"(?i:(?<![\w-]){re.escape(original)}(?![\w-]))")
        for original in sorted(words or {}, key=len, reverse=True):
            for spelling in (original, original[:1].upper() + original[1:], original.upper()):
                self._words.setdefault(spelling, (words or {})[original])
                parts.append(rf"\b{re.escape(spelling)}\b")
        self._patterns = [re.compile(p) for p in patterns]
        self._regex = re.compile("|".join(parts)) if parts else None

    def _stand_in(self, match: re.Match[str]) -> str:
        found = match.group(0)
        return self._words.get(found) or self._phrases[found.casefold()]

    def text(self, value: str) -> str:
        for pattern in self._patterns:
            value = pattern.sub(ERASED_TEXT, value)
        if self._regex is None:
            return value
        return self._regex.sub(self._stand_in, value)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it (keys too) scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {
                self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()
            }
        return value


def family_link_pattern(guardian_id: int) -> str:
    """A regex for the guardian's family-page tokens, as they appear in stored links."""
    return rf"g{guardian_id}n[0-9]+e[0-9]+\.[A-Za-z0-9_-]{{27}}"


class OpenBalance(DomainError):
    """The family still owes money; erasing now would leave a debt nobody can be asked for."""


def check_open_balance(balance_cents: int, *, force: bool) -> None:
    """Refuse to erase a family that still owes, unless the district says to go ahead."""
    if balance_cents > 0 and not force:
        raise OpenBalance(
            _(
                "The family still owes {balance}. Settle, waive or cancel the open invoices "
                "first, or run again with --force to erase anyway (the invoices stay open under "
                "the pseudonym, but no notice can reach the family).",
                balance=format_cents(balance_cents),
            )
        )
