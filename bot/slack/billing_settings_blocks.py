"""Block Kit for the billing-automation settings modal."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from workflows.billing_settings import BillingSettings
from workflows.money import format_cents


class BillingSettingsIds(StrEnum):
    CALLBACK = "billing_settings.submit"
    DUE_DAYS = "billing_settings.default_due_days"
    SWITCHES = "billing_settings.switches"
    PRE_DUE_DAYS = "billing_settings.pre_due_days"
    OVERDUE_DAYS = "billing_settings.overdue_days"
    AUTO_CANCEL_DAYS = "billing_settings.auto_cancel_days"
    RUN_TIME = "billing_settings.daily_run_time"
    WAIVER_APPROVAL = "billing_settings.waiver_approval"
    VALUE = "value"


# Checkbox option values are the BillingSettings field names they switch.
SWITCH_LABELS = {
    "automation_default": "Turn on automated reminders for new invoices",
    "pre_due_enabled": "Send reminders before the due date",
    "overdue_enabled": "Send overdue notices and move invoice statuses along",
    "auto_cancel_enabled": "Cancel invoices automatically some days after the final notice",
    "stop_reminders_on_partial_payment": "Stop reminders once a family pays part of an invoice",
    "family_page_photos": "Show photos of the damage on the family's invoice page",
}

# Which input block carries the error for each validated field.
FIELD_BLOCKS = {
    "default_due_days": BillingSettingsIds.DUE_DAYS,
    "pre_due_days": BillingSettingsIds.PRE_DUE_DAYS,
    "overdue_days": BillingSettingsIds.OVERDUE_DAYS,
    "auto_cancel_days": BillingSettingsIds.AUTO_CANCEL_DAYS,
    "daily_run_time": BillingSettingsIds.RUN_TIME,
    "waiver_approval_cents": BillingSettingsIds.WAIVER_APPROVAL,
}


def _days(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _text_input(block: str, label: str, value: str, hint: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block,
        "label": {"type": "plain_text", "text": label},
        "hint": {"type": "plain_text", "text": hint},
        "element": {
            "type": "plain_text_input",
            "action_id": BillingSettingsIds.VALUE,
            "initial_value": value,
        },
    }


def _option(name: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": SWITCH_LABELS[name]}, "value": name}


def build_billing_settings_modal(current: BillingSettings, metadata: str) -> dict[str, Any]:
    on = [name for name in SWITCH_LABELS if getattr(current, name)]
    switches: dict[str, Any] = {
        "type": "checkboxes",
        "action_id": BillingSettingsIds.VALUE,
        "options": [_option(name) for name in SWITCH_LABELS],
    }
    if on:
        switches["initial_options"] = [_option(name) for name in on]
    return {
        "type": "modal",
        "callback_id": BillingSettingsIds.CALLBACK,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Billing automation"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _text_input(
                BillingSettingsIds.DUE_DAYS,
                "Invoices are due this many days after they are created",
                str(current.default_due_days),
                "1 to 365 days",
            ),
            {
                "type": "input",
                "block_id": BillingSettingsIds.SWITCHES,
                "optional": True,
                "label": {"type": "plain_text", "text": "Automation"},
                "element": switches,
            },
            _text_input(
                BillingSettingsIds.PRE_DUE_DAYS,
                "Reminders, days before the due date",
                _days(current.pre_due_days),
                "Up to three, largest first, e.g. 14, 7, 1",
            ),
            _text_input(
                BillingSettingsIds.OVERDUE_DAYS,
                "First, second and final overdue notices, days after the due date",
                _days(current.overdue_days),
                "Three, smallest first, e.g. 7, 14, 30",
            ),
            _text_input(
                BillingSettingsIds.AUTO_CANCEL_DAYS,
                "Auto-cancel this many days after the final notice",
                str(current.auto_cancel_days),
                "Used only when auto-cancellation is on",
            ),
            {
                "type": "input",
                "block_id": BillingSettingsIds.RUN_TIME,
                "label": {"type": "plain_text", "text": "Daily run time (district time)"},
                "element": {
                    "type": "timepicker",
                    "action_id": BillingSettingsIds.VALUE,
                    "initial_time": current.daily_run_time,
                },
            },
            _text_input(
                BillingSettingsIds.WAIVER_APPROVAL,
                "Waivers above this amount need an approver ($)",
                format_cents(current.waiver_approval_cents).lstrip("$"),
                "Up to it, billing staff waive at once; 0 sends every waiver for approval",
            ),
        ],
    }
