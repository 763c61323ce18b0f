"""`/billing settings`: the billing-automation settings, for roles with Manage Settings."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.billing_settings_blocks import (
    FACT_BLOCKS,
    FIELD_BLOCKS,
    SWITCH_LABELS,
    BillingSettingsIds,
    build_billing_settings_modal,
)
from bot.slack.listeners import Command, ModalForm, Submitted, on_subcommand, wire
from bot.slack.metadata import ForgedPayload, Payload, pack
from workflows.administration import change_billing_settings, change_district_facts
from workflows.billing_settings import (
    DEFAULTS,
    BillingSettings,
    billing_settings_from,
    validate_billing_settings,
)
from workflows.district_facts import COLUMNS as FACT_COLUMNS
from workflows.district_facts import LABELS as FACT_LABELS
from workflows.district_facts import clean_district_facts, facts_from, merge_facts
from workflows.errors import PermissionDenied, ValidationError
from workflows.i18n import N_, _
from workflows.money import format_cents, parse_amount
from workflows.permissions import Permission, require

log = logging.getLogger("devicecare.slack")
_INT_RE = re.compile(r"^\s*[0-9]{1,4}\s*$")


class SettingsForm(Payload):
    """Marks a modal as the settings form DeviceCare opened for this user."""

    user_id: str


def _int(text: str | None, field: str, label: str) -> int:
    if text is None or not _INT_RE.match(text):
        raise ValidationError(
            _("{label} must be a whole number of days.", label=_(label)), field=field
        )
    return int(text)


def _day_list(text: str | None, field: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,\s]+", text or "") if p]
    if not parts or not all(_INT_RE.match(p) for p in parts):
        raise ValidationError(
            _("Enter whole numbers of days separated by commas, e.g. 14, 7, 1."), field=field
        )
    return tuple(int(p) for p in parts)


def parse_settings_form(
    values: Mapping[str, Any], current: BillingSettings = DEFAULTS
) -> BillingSettings:
    """The modal's state → BillingSettings (validated by the workflow afterwards)."""

    def value(block: BillingSettingsIds) -> Any:
        return values.get(block, {}).get(BillingSettingsIds.VALUE, {})

    switches = {
        o["value"] for o in value(BillingSettingsIds.SWITCHES).get("selected_options") or []
    }
    unknown = switches - set(SWITCH_LABELS)
    if unknown:
        raise ValidationError(_("That form didn't come from DeviceCare."), field="switches")
    return BillingSettings(
        default_due_days=_int(
            value(BillingSettingsIds.DUE_DAYS).get("value"), "default_due_days", N_("The due date")
        ),
        automation_default="automation_default" in switches,
        pre_due_enabled="pre_due_enabled" in switches,
        pre_due_days=_day_list(value(BillingSettingsIds.PRE_DUE_DAYS).get("value"), "pre_due_days"),
        overdue_enabled="overdue_enabled" in switches,
        overdue_days=_day_list(value(BillingSettingsIds.OVERDUE_DAYS).get("value"), "overdue_days"),
        auto_cancel_enabled="auto_cancel_enabled" in switches,
        auto_cancel_days=_int(
            value(BillingSettingsIds.AUTO_CANCEL_DAYS).get("value"),
            "auto_cancel_days",
            N_("Auto-cancellation"),
        ),
        stop_reminders_on_partial_payment="stop_reminders_on_partial_payment" in switches,
        daily_run_time=value(BillingSettingsIds.RUN_TIME).get("selected_time") or "",
        waiver_approval_cents=_waiver_approval(
            value(BillingSettingsIds.WAIVER_APPROVAL), current.waiver_approval_cents
        ),
        family_page_photos="family_page_photos" in switches,
    )


def parse_facts_form(values: Mapping[str, Any]) -> dict[str, str | None]:
    """The district's facts typed in the form: "" for one left empty, None for one the form
    didn't have (a form opened before the field existed keeps the stored value)."""
    facts: dict[str, str | None] = {}
    for fact, block in FACT_BLOCKS.items():
        state = values.get(block, {}).get(BillingSettingsIds.VALUE)
        if state is None:
            facts[fact] = None
            continue
        raw = state.get("value")
        if raw is not None and not isinstance(raw, str):
            raise ValidationError(_("That form didn't come from DeviceCare."), field="switches")
        facts[fact] = raw or ""
    return facts


_FACT_LABELS = {FACT_COLUMNS[fact]: label for fact, label in FACT_LABELS.items()}


def _fact_value(value: Any) -> str:
    text = ", ".join(str(value or "").split("\n"))
    return f"“{text}”" if text else _("(not set)")


def _waiver_approval(state: dict[str, Any], current_cents: int) -> int:
    """Dollars typed in the form; a form opened before the field existed keeps the stored one."""
    if not state:
        return current_cents
    return parse_amount(str(state.get("value") or ""), field="waiver_approval_cents")


def _change_line(name: str, old: Any, new: Any) -> str:
    if name == "waiver_approval_cents":
        return _(
            "waivers needing approval: above {old} → above {new}",
            old=format_cents(old),
            new=format_cents(new),
        )
    if name in _FACT_LABELS:
        label = _(_FACT_LABELS[name]).lower()
        return f"{label}: {_fact_value(old)} → {_fact_value(new)}"
    return f"{name.replace('_', ' ')}: {old} → {new}"


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    if not changes:
        return _("Billing settings saved; nothing changed.")
    lines = [f"• {_change_line(name, old, new)}" for name, (old, new) in changes.items()]
    return _("Billing settings saved:") + "\n" + "\n".join(lines)


@on_subcommand(
    "settings",
    N_("opens the billing-automation settings."),
    what="/billing settings",
    refusal="{}",
    needs=Permission.MANAGE_SETTINGS,
    denied=N_("Billing settings need the Manage Settings permission."),
)
async def handle_billing_settings(cmd: Command) -> None:
    await cmd.ack()
    async with cmd.runtime.stores() as store:
        record = await store.settings.get()
        current, facts = billing_settings_from(record), facts_from(record)
        await store.commit()
    metadata = pack(SettingsForm(user_id=cmd.body["user_id"]), cmd.keys)
    await cmd.open_view(build_billing_settings_modal(current, metadata, facts))


# A bad value is shown next to its field; anything else closes the form and says why.
settings_form: ModalForm[SettingsForm, tuple[BillingSettings, dict[str, str | None]]] = ModalForm(
    BillingSettingsIds.CALLBACK,
    meta=SettingsForm,
    what="billing settings",
    doing=N_("save the billing settings"),
    fields=FIELD_BLOCKS,
    default_field=BillingSettingsIds.DUE_DAYS,
    shown_only=False,
    apart=N_(":warning: {} Nothing was changed."),
)


@settings_form.check
async def check_settings_form(
    form: Submitted[SettingsForm],
) -> tuple[BillingSettings, dict[str, str | None]]:
    """The form read and checked as a whole, without writing."""
    if form.meta.user_id != form.body["user"]["id"]:
        raise PermissionDenied(_("That form was opened by someone else."))
    # Checked again here: the permission may have been removed since the modal opened.
    require(form.actor, Permission.MANAGE_SETTINGS)
    async with form.runtime.reads() as store:
        record = await store.settings.get()
    try:
        new = parse_settings_form(form.values, billing_settings_from(record))
        facts = parse_facts_form(form.values)
    except ValidationError as exc:
        if exc.field != "switches":
            raise
        raise ForgedPayload(exc.message) from exc  # a value no form of ours offers: a refusal
    validate_billing_settings(new)
    clean_district_facts(merge_facts(facts_from(record), facts))
    return new, facts


@settings_form.write
async def save_settings_form(
    form: Submitted[SettingsForm], checked: tuple[BillingSettings, dict[str, str | None]]
) -> None:
    new, facts = checked
    async with form.runtime.stores() as store:
        ctx = form.context(store)
        # One transaction: a bad fact undoes the automation settings too.
        changes = await change_billing_settings(ctx, form.actor, new)
        changes |= await change_district_facts(ctx, form.actor, facts)
        await store.commit()
    await form.tell(_describe(changes))


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_billing_settings, settings_form)
