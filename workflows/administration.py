"""District settings and role permissions: who may change them, what is valid, and the audit."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from workflows.billing_settings import (
    BillingSettings,
    billing_settings_from,
    stored_values,
    validate_billing_settings,
)
from workflows.district_facts import (
    MAX_NAME,
    DistrictFacts,
    clean_district_facts,
    facts_from,
    merge_facts,
)
from workflows.district_facts import stored_values as fact_values
from workflows.errors import NotFound, ValidationError
from workflows.i18n import _
from workflows.incident_status import IncidentStatus, parse_status
from workflows.offenders import OffenderRule, parse_flags
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, SettingsRecord

PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9]{0,11}$")


@dataclass(frozen=True)
class SettingsChange:
    """Only the fields given (not None) change."""

    district_name: str | None = None
    default_due_days: int | None = None
    automation_default: bool | None = None
    invoice_prefix: str | None = None
    school_year_start: tuple[int, int] | None = None
    restricted_statuses: tuple[str, ...] | None = None
    offender_rules: tuple[OffenderRule, ...] | None = None


def _validated(change: SettingsChange) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if change.district_name is not None:
        name = clean_district_facts(DistrictFacts(name=change.district_name)).name
        if not name:
            raise ValidationError(
                _("The district name must be 1 to {max} characters.", max=MAX_NAME),
                field="district_name",
            )
        values["district_name"] = name
    # Checked with the other billing settings in change_settings, which has the stored row.
    if change.default_due_days is not None:
        values["default_due_days"] = change.default_due_days
    if change.automation_default is not None:
        values["automation_default"] = change.automation_default
    if change.invoice_prefix is not None:
        prefix = change.invoice_prefix.strip().upper()
        if not PREFIX_RE.match(prefix):
            raise ValidationError(
                _("The invoice prefix must be 1 to 12 letters or digits, starting with a letter."),
                field="invoice_prefix",
            )
        values["invoice_prefix"] = prefix
    if change.school_year_start is not None:
        month, day = change.school_year_start
        if not (1 <= month <= 12 and 1 <= day <= 28):
            raise ValidationError(
                _("The school year must start on a day 1-28 of a month 1-12."),
                field="school_year_start",
            )
        values["school_year_start_month"], values["school_year_start_day"] = month, day
    if change.restricted_statuses is not None:
        statuses = sorted({parse_status(s).value for s in change.restricted_statuses})
        if IncidentStatus.OPEN.value in statuses or IncidentStatus.CLOSED.value in statuses:
            raise ValidationError(
                _("Open and Closed can't be restricted; everyone needs them."),
                field="restricted_statuses",
            )
        values["restricted_statuses"] = statuses
    if change.offender_rules is not None:
        flags = [rule.flag for rule in change.offender_rules]
        if len(set(flags)) != len(flags):
            raise ValidationError(
                _("Each flag may have only one repeat-offender rule."), field="offender_rules"
            )
        parse_flags(flags)
        values["offender_rules"] = [
            {"flag": r.flag, "threshold": r.threshold, "window": r.window, "days": r.days}
            for r in change.offender_rules
        ]
    return values


async def change_settings(
    ctx: Context, actor: Actor, change: SettingsChange
) -> dict[str, tuple[Any, Any]]:
    """Apply a settings change; returns the fields that actually changed (old → new)."""
    require(actor, Permission.MANAGE_SETTINGS)
    values = _validated(change)
    settings = await ctx.store.settings.get()
    billing = {k: values[k] for k in ("default_due_days", "automation_default") if k in values}
    if billing:
        # The due days bound the pre-due reminders, so they're checked against the stored ones.
        validate_billing_settings(replace(billing_settings_from(settings), **billing))
    return await _apply(ctx, actor, settings, values, "settings_changed")


async def change_billing_settings(
    ctx: Context, actor: Actor, new: BillingSettings
) -> dict[str, tuple[Any, Any]]:
    """Replace the billing automation settings with `new`, validated as a whole.

    To change a few, start from the stored ones:
    `replace(billing_settings_from(await store.settings.get()), pre_due_days=(10, 3))`.
    Returns the fields that actually changed (old → new, as stored: day lists as lists, the
    run time as "HH:MM"); when none did, nothing is written or logged.
    """
    require(actor, Permission.MANAGE_SETTINGS)
    validate_billing_settings(new)
    settings = await ctx.store.settings.get()
    return await _apply(ctx, actor, settings, stored_values(new), "billing_settings_changed")


async def change_district_facts(
    ctx: Context, actor: Actor, changes: dict[str, str | None]
) -> dict[str, tuple[Any, Any]]:
    """Change the district's facts (`workflows.district_facts`): None keeps one, "" clears it.

    Checked as a whole after the change; a bad value raises ValidationError naming its settings
    field and changes nothing. Returns what changed (settings column: old → new), audited as
    one `district_facts_changed` entry with the actor; nothing is written when nothing changed.
    """
    require(actor, Permission.MANAGE_SETTINGS)
    settings = await ctx.store.settings.get()
    new = clean_district_facts(merge_facts(facts_from(settings), changes))
    return await _apply(ctx, actor, settings, fact_values(new), "district_facts_changed")


async def _apply(
    ctx: Context, actor: Actor, settings: SettingsRecord, values: dict[str, Any], action: str
) -> dict[str, tuple[Any, Any]]:
    """Write the values that differ from the stored ones and log them as one entry."""
    before = {
        k: _copy(getattr(settings, k, None))
        for k in values
        if getattr(settings, k, None) != values[k]
    }
    if not before:
        return {}
    after = {k: values[k] for k in before}
    for key, value in after.items():
        setattr(settings, key, value)
    await ctx.store.activity.log(actor, "settings", 1, action, before=before, after=after)
    return {k: (before[k], after[k]) for k in before}


def _copy(value: Any) -> Any:
    # JSON columns hand back their list: keep the old value even if that list is reused.
    return list(value) if isinstance(value, list) else value


async def change_role(
    ctx: Context,
    actor: Actor,
    role_name: str,
    *,
    permissions: Iterable[str] | None = None,
    allowed_statuses: Iterable[str] | None = None,
) -> bool:
    """Edit a role's permissions and restricted-status allow-list. Returns True if changed."""
    require(actor, Permission.MANAGE_ROLES)
    role = await ctx.store.people.role(role_name)
    if role is None:
        raise NotFound(
            _("There is no role called {role_name!r}.", role_name=role_name), field="role"
        )
    before = {
        "permissions": list(role.permissions),
        "allowed_statuses": list(role.allowed_statuses),
    }
    if permissions is not None:
        try:
            role.permissions = sorted({Permission(p).value for p in permissions})
        except ValueError as exc:
            raise ValidationError(
                _("Unknown permission: {exc}", exc=exc), field="permissions"
            ) from exc
    if allowed_statuses is not None:
        role.allowed_statuses = sorted({parse_status(s).value for s in allowed_statuses})
    after = {"permissions": list(role.permissions), "allowed_statuses": list(role.allowed_statuses)}
    if before == after:
        return False
    await ctx.store.activity.log(
        actor, "role", role.id, "role_changed", before=before, after=after, comment=role.name
    )
    return True
