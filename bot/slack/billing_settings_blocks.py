"""Block Kit for the billing-automation settings modal."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from workflows.billing_settings import BillingSettings
from workflows.district_facts import (
    MAX_ADDRESS,
    MAX_CONTACT_NAME,
    MAX_EMAIL,
    MAX_HOURS,
    MAX_NAME,
    MAX_PAYABLE_TO,
    MAX_PHONE,
    DistrictFacts,
)
from workflows.i18n import N_, _
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
    # What families are told about the district (workflows.district_facts)
    DISTRICT_NAME = "billing_settings.district_name"
    CHECK_PAYABLE_TO = "billing_settings.check_payable_to"
    CHECK_ADDRESS = "billing_settings.check_mailing_address"
    OFFICE_PHONE = "billing_settings.office_phone"
    OFFICE_HOURS = "billing_settings.office_hours"
    OFFICE_EMAIL = "billing_settings.office_email"
    IT_CONTACT_NAME = "billing_settings.it_contact_name"
    IT_CONTACT = "billing_settings.it_contact"
    VALUE = "value"


# Checkbox option values are the BillingSettings field names they switch.
SWITCH_LABELS = {
    "automation_default": N_("Turn on automated reminders for new invoices"),
    "pre_due_enabled": N_("Send reminders before the due date"),
    "overdue_enabled": N_("Send overdue notices and move invoice statuses along"),
    "auto_cancel_enabled": N_("Cancel invoices automatically some days after the final notice"),
    "stop_reminders_on_partial_payment": N_("Stop reminders once a family pays part of an invoice"),
    "family_page_photos": N_("Show photos of the damage on the family's invoice page"),
}

# Which input block carries the error for each validated field.
FIELD_BLOCKS = {
    "default_due_days": BillingSettingsIds.DUE_DAYS,
    "pre_due_days": BillingSettingsIds.PRE_DUE_DAYS,
    "overdue_days": BillingSettingsIds.OVERDUE_DAYS,
    "auto_cancel_days": BillingSettingsIds.AUTO_CANCEL_DAYS,
    "daily_run_time": BillingSettingsIds.RUN_TIME,
    "waiver_approval_cents": BillingSettingsIds.WAIVER_APPROVAL,
    "district_name": BillingSettingsIds.DISTRICT_NAME,
    "check_payable_to": BillingSettingsIds.CHECK_PAYABLE_TO,
    "check_mailing_address": BillingSettingsIds.CHECK_ADDRESS,
    "office_phone": BillingSettingsIds.OFFICE_PHONE,
    "office_hours": BillingSettingsIds.OFFICE_HOURS,
    "office_email": BillingSettingsIds.OFFICE_EMAIL,
    "it_contact_name": BillingSettingsIds.IT_CONTACT_NAME,
    "it_contact": BillingSettingsIds.IT_CONTACT,
}

# The district's facts: the form block each is typed in (the fact names of DistrictFacts).
FACT_BLOCKS = {
    "name": BillingSettingsIds.DISTRICT_NAME,
    "check_payable_to": BillingSettingsIds.CHECK_PAYABLE_TO,
    "check_address": BillingSettingsIds.CHECK_ADDRESS,
    "office_phone": BillingSettingsIds.OFFICE_PHONE,
    "office_hours": BillingSettingsIds.OFFICE_HOURS,
    "office_email": BillingSettingsIds.OFFICE_EMAIL,
    "it_contact_name": BillingSettingsIds.IT_CONTACT_NAME,
    "it_contact": BillingSettingsIds.IT_CONTACT,
}
_FACT_INPUTS: dict[str, tuple[str, str, int, bool]] = {
    # fact: (label, hint, max length, several lines)
    "name": (
        N_("District name"),
        N_("Greets families and signs every email and the family page"),
        MAX_NAME,
        False,
    ),
    "check_payable_to": (
        N_("Checks payable to"),
        N_("Leave empty to use the district name"),
        MAX_PAYABLE_TO,
        False,
    ),
    "check_address": (
        N_("Mailing address for checks"),
        N_("Up to 5 lines. Without it, emails don't offer paying by mail"),
        MAX_ADDRESS,
        True,
    ),
    "office_phone": (
        N_("Business office phone"),
        N_("e.g. (555) 010-2030"),
        MAX_PHONE,
        False,
    ),
    "office_hours": (
        N_("Business office hours"),
        N_("e.g. Mon-Fri 8:00-4:00, Room 104. Without them, paying in person isn't offered"),
        MAX_HOURS,
        False,
    ),
    "office_email": (
        N_("Business office email"),
        N_("e.g. billing@district.org"),
        MAX_EMAIL,
        False,
    ),
    "it_contact_name": (
        N_("IT contact"),
        N_("Whom staff not yet in DeviceCare are told to ask, e.g. Dana Reyes"),
        MAX_CONTACT_NAME,
        False,
    ),
    "it_contact": (
        N_("IT contact email or Slack channel"),
        N_("e.g. helpdesk@district.org or #it-help"),
        MAX_EMAIL,
        False,
    ),
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
    return {"text": {"type": "plain_text", "text": _(SWITCH_LABELS[name])}, "value": name}


def _fact_input(fact: str, value: str) -> dict[str, Any]:
    label, hint, limit, multiline = _FACT_INPUTS[fact]
    label, hint = _(label), _(hint)
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": BillingSettingsIds.VALUE,
        "max_length": limit,
    }
    if multiline:
        element["multiline"] = True
    if value:
        element["initial_value"] = value
    return {
        "type": "input",
        "block_id": FACT_BLOCKS[fact],
        "optional": True,
        "label": {"type": "plain_text", "text": label},
        "hint": {"type": "plain_text", "text": hint},
        "element": element,
    }


def district_fact_blocks(facts: DistrictFacts) -> list[dict[str, Any]]:
    """The district's facts, each optional: a fact left empty leaves its sentence out."""
    return [
        {"type": "divider"},
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _("What families are told")},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _(
                        "Every email and the family page use these. Leave one empty to "
                        "leave out what needs it."
                    ),
                }
            ],
        },
        *(_fact_input(fact, getattr(facts, fact)) for fact in FACT_BLOCKS),
    ]


def build_billing_settings_modal(
    current: BillingSettings, metadata: str, facts: DistrictFacts | None = None
) -> dict[str, Any]:
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
        "title": {"type": "plain_text", "text": _("Billing automation")},
        "submit": {"type": "plain_text", "text": _("Save")},
        "close": {"type": "plain_text", "text": _("Cancel")},
        "blocks": [
            _text_input(
                BillingSettingsIds.DUE_DAYS,
                _("Invoices are due this many days after they are created"),
                str(current.default_due_days),
                _("1 to 365 days"),
            ),
            {
                "type": "input",
                "block_id": BillingSettingsIds.SWITCHES,
                "optional": True,
                "label": {"type": "plain_text", "text": _("Automation")},
                "element": switches,
            },
            _text_input(
                BillingSettingsIds.PRE_DUE_DAYS,
                _("Reminders, days before the due date"),
                _days(current.pre_due_days),
                _("Up to three, largest first, e.g. 14, 7, 1"),
            ),
            _text_input(
                BillingSettingsIds.OVERDUE_DAYS,
                _("First, second and final overdue notices, days after the due date"),
                _days(current.overdue_days),
                _("Three, smallest first, e.g. 7, 14, 30"),
            ),
            _text_input(
                BillingSettingsIds.AUTO_CANCEL_DAYS,
                _("Auto-cancel this many days after the final notice"),
                str(current.auto_cancel_days),
                _("Used only when auto-cancellation is on"),
            ),
            {
                "type": "input",
                "block_id": BillingSettingsIds.RUN_TIME,
                "label": {"type": "plain_text", "text": _("Daily run time (district time)")},
                "element": {
                    "type": "timepicker",
                    "action_id": BillingSettingsIds.VALUE,
                    "initial_time": current.daily_run_time,
                },
            },
            _text_input(
                BillingSettingsIds.WAIVER_APPROVAL,
                _("Waivers above this amount need an approver ($)"),
                format_cents(current.waiver_approval_cents).lstrip("$"),
                _("Up to it, billing staff waive at once; 0 sends every waiver for approval"),
            ),
            *district_fact_blocks(facts or DistrictFacts()),
        ],
    }
