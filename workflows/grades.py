"""Grades as students carry them: 1-13 without a leading zero, or a CEDS code (KG, PK, …).

The roster import stores grades this way, and fees and reports compare against them, so all
three parse through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from workflows.errors import ValidationError
from workflows.i18n import _

NAMED_GRADES = frozenset({"IT", "PR", "PK", "TK", "KG", "PS", "UG"})
GRADE_ALIASES = {"K": "KG", "KINDERGARTEN": "KG", "OTHER": "Other"}
NUMERIC_GRADES = range(1, 14)


def grade_code(text: str) -> str | None:
    """'06' -> '6', 'k' -> 'KG', 'other' -> 'Other'; None for anything that isn't a grade."""
    code = text.strip().upper()
    if code.isdigit():
        return str(int(code)) if int(code) in NUMERIC_GRADES else None
    code = GRADE_ALIASES.get(code, code)
    return code if code in NAMED_GRADES or code == "Other" else None


def normalize_grade(text: str, *, field: str = "grades") -> str:
    """As `grade_code`, refusing what isn't a grade with a message for the person."""
    code = grade_code(text)
    if code is None:
        shown = text.strip()[:20]
        if shown.isdigit():
            raise ValidationError(
                _("\u201c{shown}\u201d isn't a grade (1 to 13).", shown=shown), field=field
            )
        raise ValidationError(
            _("\u201c{shown}\u201d isn't a grade; use 1-13 or KG, PK, TK, \u2026.", shown=shown),
            field=field,
        )
    return code


def clean_grades(grades: Iterable[str], *, field: str = "grades") -> tuple[str, ...]:
    """Unique, in school order (numbers first, then codes)."""
    unique = {normalize_grade(g, field=field) for g in grades}
    return tuple(sorted(unique, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g)))


def parse_grades(text: str | None, *, field: str = "grades") -> tuple[str, ...]:
    """'6,7, 8' -> ('6', '7', '8'); empty means every grade."""
    return clean_grades([p for p in re.split(r"[,\s]+", text or "") if p], field=field)
