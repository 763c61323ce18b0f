"""`/billing settings`: the billing-automation settings, for roles with Manage Settings."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.billing_settings_blocks import (
    FACT_BLOCKS,
    FIELD_BLOCKS,
    SWITCH_LABELS,
    BillingSettingsIds,
    build_billing_settings_modal,
)
from bot.slack.errors import after_ack, modal_errors, record_refusal, tell_user
from bot.slack.metadata import Payload, pack, unpack
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
from workflows.errors import DomainError, PermissionDenied, ValidationError
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")
_INT_RE = re.compile(r"^\s*[0-9]{1,4}\s*$")


class SettingsForm(Payload):
    """Marks a modal as the settings form DeviceCare opened for this user."""

    user_id: str


def _int(text: str | None, field: str, label: str) -> int:
    if text is None or not _INT_RE.match(text):
        raise ValidationError(f"{label} must be a whole number of days.", field=field)
    return int(text)


def _day_list(text: str | None, field: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,\s]+", text or "") if p]
    if not parts or not all(_INT_RE.match(p) for p in parts):
        raise ValidationError(
            "Enter whole numbers of days separated by commas, e.g. 14, 7, 1.", field=field
        )
    return tuple(int(p) for p in parts)


def parse_settings_form(
    values: dict[str, Any], current: BillingSettings = DEFAULTS
) -> BillingSettings:
    """The modal's state → BillingSettings (validated by the workflow afterwards)."""

    def value(block: BillingSettingsIds) -> Any:
        return values.get(block, {}).get(BillingSettingsIds.VALUE, {})

    switches = {
        o["value"] for o in value(BillingSettingsIds.SWITCHES).get("selected_options") or []
    }
    unknown = switches - set(SWITCH_LABELS)
    if unknown:
        raise ValidationError("That form didn't come from DeviceCare.", field="switches")
    return BillingSettings(
        default_due_days=_int(
            value(BillingSettingsIds.DUE_DAYS).get("value"), "default_due_days", "The due date"
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
            "Auto-cancellation",
        ),
        stop_reminders_on_partial_payment="stop_reminders_on_partial_payment" in switches,
        daily_run_time=value(BillingSettingsIds.RUN_TIME).get("selected_time") or "",
        waiver_approval_cents=_waiver_approval(
            value(BillingSettingsIds.WAIVER_APPROVAL), current.waiver_approval_cents
        ),
        family_page_photos="family_page_photos" in switches,
    )


def parse_facts_form(values: dict[str, Any]) -> dict[str, str | None]:
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
            raise ValidationError("That form didn't come from DeviceCare.", field="switches")
        facts[fact] = raw or ""
    return facts


_FACT_LABELS = {FACT_COLUMNS[fact]: label for fact, label in FACT_LABELS.items()}


def _fact_value(value: Any) -> str:
    text = ", ".join(str(value or "").split("\n"))
    return f"“{text}”" if text else "(not set)"


def _waiver_approval(state: dict[str, Any], current_cents: int) -> int:
    """Dollars typed in the form; a form opened before the field existed keeps the stored one."""
    if not state:
        return current_cents
    return parse_amount(str(state.get("value") or ""), field="waiver_approval_cents")


def _change_line(name: str, old: Any, new: Any) -> str:
    if name == "waiver_approval_cents":
        return f"waivers needing approval: above {format_cents(old)} → above {format_cents(new)}"
    if name in _FACT_LABELS:
        return f"{_FACT_LABELS[name].lower()}: {_fact_value(old)} → {_fact_value(new)}"
    return f"{name.replace('_', ' ')}: {old} → {new}"


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    if not changes:
        return "Billing settings saved; nothing changed."
    lines = [f"• {_change_line(name, old, new)}" for name, (old, new) in changes.items()]
    return "Billing settings saved:\n" + "\n".join(lines)


async def handle_billing_settings(call: BillingCall) -> None:
    if not call.actor.can(Permission.MANAGE_SETTINGS):
        await call.ack(
            response_type="ephemeral",
            text="Billing settings need the Manage Settings permission.",
        )
        return
    await call.ack()
    runtime = call.runtime
    async with runtime.stores() as store:
        record = await store.settings.get()
        current, facts = billing_settings_from(record), facts_from(record)
        await store.commit()
    metadata = pack(SettingsForm(user_id=call.command["user_id"]), signing_keys(runtime.settings))
    await call.client.views_open(
        trigger_id=call.command["trigger_id"],
        view=build_billing_settings_modal(current, metadata, facts),
    )


async def check_settings_form(
    runtime: Runtime, actor: Actor, body: dict[str, Any]
) -> tuple[BillingSettings, dict[str, str | None]]:
    """The form read and checked as a whole, without writing."""
    view = body["view"]
    form = unpack(SettingsForm, view.get("private_metadata"), signing_keys(runtime.settings))
    if form.user_id != body["user"]["id"]:
        raise PermissionDenied("That form was opened by someone else.")
    # Checked again here: the permission may have been removed since the modal opened.
    require(actor, Permission.MANAGE_SETTINGS)
    async with runtime.reads() as store:
        record = await store.settings.get()
    new = parse_settings_form(view["state"]["values"], billing_settings_from(record))
    facts = parse_facts_form(view["state"]["values"])
    validate_billing_settings(new)
    clean_district_facts(merge_facts(facts_from(record), facts))
    return new, facts


async def answer_settings_form(
    runtime: Runtime, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, actor: Actor
) -> None:
    """A bad value is shown next to its field; anything else closes the form and says why
    (a forged switch is a refusal). `save_settings_form` does the writing."""
    try:
        await check_settings_form(runtime, actor, body)
    except DomainError as exc:
        if exc.field in FIELD_BLOCKS:
            await ack(
                response_action="errors",
                errors=modal_errors(exc, FIELD_BLOCKS, BillingSettingsIds.DUE_DAYS),
            )
            return
        await ack()
        if isinstance(exc, PermissionDenied) or exc.field == "switches":
            await record_refusal(runtime, actor, "billing settings", exc.message)
        await tell_user(client, body, f":warning: {exc.message} Nothing was changed.")
        return
    await ack()


async def save_settings_form(
    runtime: Runtime, body: dict[str, Any], client: AsyncWebClient, actor: Actor
) -> None:
    try:
        new, facts = await check_settings_form(runtime, actor, body)
    except DomainError:
        return  # the ack told them
    async with after_ack(runtime, client, body, "save the billing settings", actor):
        async with runtime.stores() as store:
            ctx = Context(store, runtime.clock, runtime.settings.tz)
            # One transaction: a bad fact undoes the automation settings too.
            changes = await change_billing_settings(ctx, actor, new)
            changes |= await change_district_facts(ctx, actor, facts)
            await store.commit()
        await tell_user(client, body, _describe(changes))


def register(app: AsyncApp, runtime: Runtime) -> None:
    add_subcommand(
        app, "settings", "opens the billing-automation settings.", handle_billing_settings
    )

    async def handle_billing_settings_submitted(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await answer_settings_form(runtime, ack, body, client, context["actor"])

    async def save_billing_settings(
        body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await save_settings_form(runtime, body, client, context["actor"])

    app.view(BillingSettingsIds.CALLBACK)(
        ack=handle_billing_settings_submitted, lazy=[save_billing_settings]
    )
