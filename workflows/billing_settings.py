"""Billing automation settings: reminder schedules, auto-cancellation and the daily run time.

These are the district-wide rules the daily billing run will follow: reminders before an
invoice's due date, three overdue notices after it (each moving the invoice one status on),
optional cancellation some days after the final notice, and whether a partial payment stops
all of that; and the amount above which a waiver needs an approver. This module only describes
and checks them; storing them is `workflows.administration.change_billing_settings`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import time
from typing import TYPE_CHECKING, Any

from workflows.errors import ValidationError
from workflows.i18n import N_, _

if TYPE_CHECKING:
    from workflows.ports import SettingsRecord

MAX_DUE_DAYS = 365
MAX_PRE_DUE_REMINDERS = 3
MAX_PRE_DUE_DAYS = 90
OVERDUE_NOTICES = 3  # first, second, final
MAX_OVERDUE_DAYS = 365
MAX_AUTO_CANCEL_DAYS = 730
MAX_WAIVER_APPROVAL_CENTS = 1_000_000_00  # $1,000,000: above any single device charge

_RUN_TIME_RE = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_SWITCHES = {
    "automation_default": N_("Automation on new invoices"),
    "pre_due_enabled": N_("Pre-due reminders"),
    "overdue_enabled": N_("Overdue reminders"),
    "auto_cancel_enabled": N_("Auto-cancellation"),
    "stop_reminders_on_partial_payment": N_("Stopping reminders on a partial payment"),
    "family_page_photos": N_("Damage photos on the family page"),
}


@dataclass(frozen=True)
class BillingSettings:
    """Every billing automation setting; the defaults are what a new district starts with."""

    default_due_days: int = 90
    automation_default: bool = True
    pre_due_enabled: bool = True
    pre_due_days: tuple[int, ...] = (14, 7, 1)  # days before the due date, earliest first
    overdue_enabled: bool = True
    overdue_days: tuple[int, ...] = (7, 14, 30)  # days after the due date: first, second, final
    auto_cancel_enabled: bool = False
    auto_cancel_days: int = 60  # days after the final notice
    stop_reminders_on_partial_payment: bool = False
    daily_run_time: str = "06:00"  # HH:MM, 24-hour, in the district's time zone
    # Waivers above this need an approver (workflows.waivers); 0 sends every waiver for approval.
    waiver_approval_cents: int = 10_000
    # Families see the photos of the damage on their invoice page only where the district says.
    family_page_photos: bool = False

    @property
    def run_time(self) -> time:
        return parse_run_time(self.daily_run_time)


DEFAULTS = BillingSettings()
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BillingSettings))


def parse_run_time(text: str) -> time:
    """'06:00' (or '6:00') -> time(6, 0); ValidationError for anything but a 24-hour HH:MM."""
    match = _RUN_TIME_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is not None:
        hour, minute = int(match[1]), int(match[2])
        if hour <= 23 and minute <= 59:
            return time(hour, minute)
    raise ValidationError(
        _("The daily run time must be a 24-hour time such as 06:00 or 17:30."),
        field="daily_run_time",
    )


def validate_billing_settings(s: BillingSettings) -> None:
    """Raise ValidationError, naming the field at fault, unless every setting is usable."""
    for name, label in _SWITCHES.items():
        if not isinstance(getattr(s, name), bool):
            raise ValidationError(
                _("{label} must be turned on or off.", label=_(label)), field=name
            )

    due = s.default_due_days
    if not _is_int(due) or not 1 <= due <= MAX_DUE_DAYS:
        raise ValidationError(
            _("The default due date must be 1 to {max} days after creation.", max=MAX_DUE_DAYS),
            field="default_due_days",
        )

    pre = _int_list(s.pre_due_days, "pre_due_days", N_("Pre-due reminder days"))
    if not 1 <= len(pre) <= MAX_PRE_DUE_REMINDERS:
        raise ValidationError(
            _(
                "Set 1 to {max} pre-due reminders (turn pre-due reminders off to send none).",
                max=MAX_PRE_DUE_REMINDERS,
            ),
            field="pre_due_days",
        )
    if any(not 1 <= d <= MAX_PRE_DUE_DAYS for d in pre):
        raise ValidationError(
            _(
                "Pre-due reminders must be 1 to {max} days before the due date.",
                max=MAX_PRE_DUE_DAYS,
            ),
            field="pre_due_days",
        )
    if len(set(pre)) != len(pre):
        raise ValidationError(
            _("Two pre-due reminders are set for the same day; each needs its own day."),
            field="pre_due_days",
        )
    if list(pre) != sorted(pre, reverse=True):
        raise ValidationError(
            _(
                "List pre-due reminders from the earliest to the last, most days first "
                "(for example 14, 7, 1)."
            ),
            field="pre_due_days",
        )
    if pre[0] >= due:
        raise ValidationError(
            _(
                "A reminder {pre} days before the due date would not come after the invoice is "
                "created: invoices are due {due} days after creation, so pre-due reminders must "
                "be fewer than {due} days before the due date.",
                pre=pre[0],
                due=due,
            ),
            field="pre_due_days",
        )

    overdue = _int_list(s.overdue_days, "overdue_days", N_("Overdue notice days"))
    if len(overdue) != OVERDUE_NOTICES:
        raise ValidationError(
            _("Set exactly three overdue notices: the first, the second and the final one."),
            field="overdue_days",
        )
    if any(not 1 <= d <= MAX_OVERDUE_DAYS for d in overdue):
        raise ValidationError(
            _("Overdue notices must be 1 to {max} days after the due date.", max=MAX_OVERDUE_DAYS),
            field="overdue_days",
        )
    if any(later <= earlier for earlier, later in zip(overdue, overdue[1:], strict=False)):
        raise ValidationError(
            _(
                "Each overdue notice must come later than the one before it "
                "(for example 7, 14, 30 days after the due date)."
            ),
            field="overdue_days",
        )

    if not _is_int(s.auto_cancel_days) or not 1 <= s.auto_cancel_days <= MAX_AUTO_CANCEL_DAYS:
        raise ValidationError(
            _(
                "Auto-cancellation must be 1 to {max} days after the final notice.",
                max=MAX_AUTO_CANCEL_DAYS,
            ),
            field="auto_cancel_days",
        )

    parse_run_time(s.daily_run_time)

    approval = s.waiver_approval_cents
    if not _is_int(approval) or not 0 <= approval <= MAX_WAIVER_APPROVAL_CENTS:
        raise ValidationError(
            _("The waiver approval amount must be between $0.00 and $1,000,000.00."),
            field="waiver_approval_cents",
        )


def stored_values(s: BillingSettings) -> dict[str, Any]:
    """The settings as the store keeps them: lists for the day schedules, time as 'HH:MM'."""
    values: dict[str, Any] = {name: getattr(s, name) for name in FIELDS}
    values["pre_due_days"] = list(s.pre_due_days)
    values["overdue_days"] = list(s.overdue_days)
    values["daily_run_time"] = parse_run_time(s.daily_run_time).strftime("%H:%M")
    return values


def billing_settings_from(record: SettingsRecord) -> BillingSettings:
    """The billing settings held in the district's settings row."""
    return BillingSettings(
        default_due_days=record.default_due_days,
        automation_default=record.automation_default,
        pre_due_enabled=record.pre_due_enabled,
        pre_due_days=tuple(record.pre_due_days),
        overdue_enabled=record.overdue_enabled,
        overdue_days=tuple(record.overdue_days),
        auto_cancel_enabled=record.auto_cancel_enabled,
        auto_cancel_days=record.auto_cancel_days,
        stop_reminders_on_partial_payment=record.stop_reminders_on_partial_payment,
        daily_run_time=record.daily_run_time,
        # Records made before the setting existed (plain test doubles) keep the default.
        waiver_approval_cents=getattr(
            record, "waiver_approval_cents", BillingSettings.waiver_approval_cents
        ),
        family_page_photos=getattr(record, "family_page_photos", False),
    )


# --- helpers ----------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: object, name: str, label: str) -> list[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(
            _("{label} must be a list of whole numbers.", label=_(label)), field=name
        )
    items = list(value)
    if not all(_is_int(d) for d in items):
        raise ValidationError(_("{label} must be whole numbers.", label=_(label)), field=name)
    return items
