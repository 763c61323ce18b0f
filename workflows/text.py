"""Cleaning what people type: one line of text, spaces collapsed, within a length."""

from __future__ import annotations

from workflows.errors import ValidationError


def required_line(text: str, limit: int, field: str, missing: str, too_long: str) -> str:
    """`text` on one line with runs of white space collapsed; refused with `missing` when
    nothing is left, or with `too_long` past `limit` characters."""
    line = " ".join(text.split())
    if not line:
        raise ValidationError(missing, field=field)
    if len(line) > limit:
        raise ValidationError(too_long, field=field)
    return line
