"""Repeat-offender flags: per-flag thresholds counted over a window."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.labels import INCIDENT_FLAGS as INCIDENT_FLAGS  # the flags' one home is labels
from workflows.labels import flag_label as flag_label
from workflows.school_year import school_year_of

# Districts may add their own flags; keep them safe to use as keys, ids and CSV headers.
_CUSTOM_FLAG_RE = re.compile(r"[a-z][a-z0-9_]{1,39}")


@dataclass(frozen=True)
class OffenderRule:
    flag: str
    threshold: int
    window: Literal["school_year", "days"] = "school_year"
    days: int | None = None  # only for window="days": the last N days, today included

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValidationError(_("The threshold must be at least 1."), field="threshold")
        if self.window == "days":
            if self.days is None or self.days < 1:
                raise ValidationError(_("Enter a window of at least 1 day."), field="days")
        elif self.window == "school_year":
            if self.days is not None:
                raise ValidationError(
                    _("A school-year window doesn't take a number of days."), field="days"
                )
        else:
            raise ValidationError(
                _('"{window}" isn\'t a known window.', window=self.window), field="window"
            )


DEFAULT_RULES: tuple[OffenderRule, ...] = (OffenderRule("physical_damage", 3),)


def window_start(
    rule: OffenderRule, today: date, *, year_start_month: int = 7, year_start_day: int = 1
) -> date:
    """First day whose incidents count toward the rule, as of `today`."""
    if rule.window == "days":
        assert rule.days is not None  # guaranteed by OffenderRule validation
        return today - timedelta(days=rule.days - 1)
    return school_year_of(today, year_start_month, year_start_day).start


def tripped(
    rule: OffenderRule,
    incident_dates: Iterable[date],
    today: date,
    *,
    year_start_month: int = 7,
    year_start_day: int = 1,
) -> bool:
    """Whether the dates of incidents carrying the rule's flag reach its threshold."""
    start = window_start(
        rule, today, year_start_month=year_start_month, year_start_day=year_start_day
    )
    count = sum(1 for d in incident_dates if start <= d <= today)
    return count >= rule.threshold


def newly_tripped(rule: OffenderRule, count_before: int, count_after: int) -> bool:
    """True only for the incident that crosses the line, so the badge/alert fires once."""
    return count_before < rule.threshold <= count_after


def _normalise(value: str) -> str:
    return "_".join(value.strip().lower().replace("-", " ").split())


_BY_LABEL: dict[str, str] = {_normalise(label): key for key, label in INCIDENT_FLAGS.items()}


def parse_flags(values: Iterable[str]) -> tuple[str, ...]:
    """Normalise flags from a form: lowercase keys, known labels mapped back, no duplicates."""
    result: list[str] = []
    for raw in values:
        flag = _normalise(raw)
        if not flag:
            continue  # empty multi-select options carry no meaning
        flag = _BY_LABEL.get(flag, flag)
        if flag not in INCIDENT_FLAGS and not _CUSTOM_FLAG_RE.fullmatch(flag):
            shown = raw.strip()[:40]
            raise ValidationError(
                _(
                    '"{shown}" isn\'t a valid incident flag; use letters, digits and underscores.',
                    shown=shown,
                ),
                field="flags",
            )
        if flag not in result:
            result.append(flag)
    return tuple(result)
