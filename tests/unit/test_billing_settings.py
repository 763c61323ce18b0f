"""Billing automation settings: the shipped defaults and every rule that refuses a value."""

from __future__ import annotations

from dataclasses import replace
from datetime import time
from types import SimpleNamespace
from typing import Any

import pytest

from workflows.billing_settings import (
    DEFAULTS,
    FIELDS,
    BillingSettings,
    billing_settings_from,
    parse_run_time,
    stored_values,
    validate_billing_settings,
)
from workflows.errors import ValidationError


def test_defaults_are_the_documented_schedule_and_valid() -> None:
    assert DEFAULTS == BillingSettings()
    assert (DEFAULTS.default_due_days, DEFAULTS.automation_default) == (90, True)
    assert (DEFAULTS.pre_due_enabled, DEFAULTS.pre_due_days) == (True, (14, 7, 1))
    assert (DEFAULTS.overdue_enabled, DEFAULTS.overdue_days) == (True, (7, 14, 30))
    assert (DEFAULTS.auto_cancel_enabled, DEFAULTS.auto_cancel_days) == (False, 60)
    assert DEFAULTS.stop_reminders_on_partial_payment is False
    assert DEFAULTS.run_time == time(6, 0)
    validate_billing_settings(DEFAULTS)


@pytest.mark.parametrize(
    "changes",
    [
        {"default_due_days": 2, "pre_due_days": (1,)},
        {"pre_due_enabled": False, "overdue_enabled": False},
        {"default_due_days": 365},
        {"default_due_days": 91, "pre_due_days": (90,)},
        {"pre_due_days": (1,)},
        {"pre_due_days": (30, 2)},
        {"pre_due_days": [10, 5, 1]},  # a list from a form is as good as a tuple
        {"overdue_days": (1, 2, 365)},
        {"auto_cancel_enabled": True, "auto_cancel_days": 1},
        {"auto_cancel_days": 730},
        {"daily_run_time": "00:00"},
        {"daily_run_time": "23:59"},
        {"daily_run_time": " 7:05 "},
        {"stop_reminders_on_partial_payment": True, "overdue_enabled": False},
    ],
)
def test_edge_values_are_accepted(changes: dict[str, Any]) -> None:
    validate_billing_settings(replace(DEFAULTS, **changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"default_due_days": 0}, "default_due_days"),
        ({"default_due_days": 366}, "default_due_days"),
        ({"default_due_days": True}, "default_due_days"),
        ({"default_due_days": "90"}, "default_due_days"),
        ({"automation_default": 1}, "automation_default"),
        ({"pre_due_enabled": "yes"}, "pre_due_enabled"),
        ({"overdue_enabled": None}, "overdue_enabled"),
        ({"auto_cancel_enabled": 0}, "auto_cancel_enabled"),
        ({"stop_reminders_on_partial_payment": "off"}, "stop_reminders_on_partial_payment"),
        ({"pre_due_days": ()}, "pre_due_days"),
        ({"pre_due_enabled": False, "pre_due_days": ()}, "pre_due_days"),  # off, not empty
        ({"pre_due_days": (30, 14, 7, 1)}, "pre_due_days"),
        ({"pre_due_days": (14, 7, 0)}, "pre_due_days"),
        ({"pre_due_days": (91,)}, "pre_due_days"),
        ({"pre_due_days": (-1,)}, "pre_due_days"),
        ({"pre_due_days": (7, 7)}, "pre_due_days"),
        ({"pre_due_days": (1, 7, 14)}, "pre_due_days"),
        ({"pre_due_days": (14, 1, 7)}, "pre_due_days"),
        ({"pre_due_days": (14.0, 7)}, "pre_due_days"),
        ({"pre_due_days": ("14", "7")}, "pre_due_days"),
        ({"pre_due_days": "14,7,1"}, "pre_due_days"),
        ({"pre_due_days": 14}, "pre_due_days"),
        ({"default_due_days": 14}, "pre_due_days"),  # a reminder on the day it's created
        ({"default_due_days": 10, "pre_due_days": (30,)}, "pre_due_days"),
        ({"overdue_days": (7, 14)}, "overdue_days"),
        ({"overdue_days": (7, 14, 30, 60)}, "overdue_days"),
        ({"overdue_days": ()}, "overdue_days"),
        ({"overdue_days": (0, 7, 14)}, "overdue_days"),
        ({"overdue_days": (7, 14, 366)}, "overdue_days"),
        ({"overdue_days": (14, 7, 30)}, "overdue_days"),
        ({"overdue_days": (7, 7, 30)}, "overdue_days"),
        ({"overdue_days": (7, 30, 30)}, "overdue_days"),
        ({"overdue_days": (7, True, 30)}, "overdue_days"),
        ({"auto_cancel_days": 0}, "auto_cancel_days"),
        ({"auto_cancel_days": 731}, "auto_cancel_days"),
        ({"auto_cancel_days": None}, "auto_cancel_days"),
        ({"daily_run_time": "24:00"}, "daily_run_time"),
        ({"daily_run_time": "06:60"}, "daily_run_time"),
        ({"daily_run_time": "6"}, "daily_run_time"),
        ({"daily_run_time": "6:5"}, "daily_run_time"),
        ({"daily_run_time": "06:00:00"}, "daily_run_time"),
        ({"daily_run_time": "6am"}, "daily_run_time"),
        ({"daily_run_time": ""}, "daily_run_time"),
        ({"daily_run_time": "٠٦:٠٠"}, "daily_run_time"),  # Arabic-Indic digits
        ({"daily_run_time": None}, "daily_run_time"),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_billing_settings(replace(DEFAULTS, **changes))
    assert err.value.field == field
    assert err.value.message.endswith(".") and err.value.message[0].isupper()


def test_the_pre_due_and_due_days_message_names_both_numbers() -> None:
    with pytest.raises(ValidationError) as err:
        validate_billing_settings(replace(DEFAULTS, default_due_days=10, pre_due_days=(14, 7)))
    assert "14 days" in err.value.message and "10 days" in err.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("06:00", time(6)), ("6:00", time(6)), ("00:00", time(0)), ("23:59", time(23, 59))],
)
def test_parse_run_time(text: str, expected: time) -> None:
    assert parse_run_time(text) == expected


def test_stored_values_use_lists_and_a_normalised_time() -> None:
    values = stored_values(replace(DEFAULTS, daily_run_time="7:30"))
    assert set(values) == set(FIELDS)
    assert values["pre_due_days"] == [14, 7, 1] and values["overdue_days"] == [7, 14, 30]
    assert values["daily_run_time"] == "07:30"


def test_billing_settings_from_a_settings_record() -> None:
    record = SimpleNamespace(
        district_name="Lakeview",
        default_due_days=60,
        automation_default=False,
        pre_due_enabled=True,
        pre_due_days=[10, 2],
        overdue_enabled=True,
        overdue_days=[10, 20, 40],
        auto_cancel_enabled=True,
        auto_cancel_days=120,
        stop_reminders_on_partial_payment=True,
        daily_run_time="05:15",
    )
    assert billing_settings_from(record) == BillingSettings(
        default_due_days=60,
        automation_default=False,
        pre_due_days=(10, 2),
        overdue_days=(10, 20, 40),
        auto_cancel_enabled=True,
        auto_cancel_days=120,
        stop_reminders_on_partial_payment=True,
        daily_run_time="05:15",
    )
