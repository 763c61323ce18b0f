"""Settings and role changes: permission, validation, audit."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from tests.builders import add_staff
from workflows.administration import SettingsChange, change_role, change_settings
from workflows.errors import PermissionDenied, ValidationError
from workflows.offenders import OffenderRule
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


async def test_settings_need_manage_settings_and_are_audited(stores, clock) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        with pytest.raises(PermissionDenied, match="Manage Settings"):
            await change_settings(
                Context(store, clock, TZ), clerk, SettingsChange(default_due_days=30)
            )
    async with stores() as store:
        changed = await change_settings(
            Context(store, clock, TZ),
            director,
            SettingsChange(
                default_due_days=30,
                invoice_prefix="lhs",
                automation_default=True,
                offender_rules=(OffenderRule("screen", 2),),
            ),
        )
        assert changed == {
            "default_due_days": (90, 30),
            "invoice_prefix": ("INV", "LHS"),
            "offender_rules": (
                changed["offender_rules"][0],
                [{"flag": "screen", "threshold": 2, "window": "school_year", "days": None}],
            ),
        }
    async with stores() as store:
        settings = await store.settings()
        assert (settings.default_due_days, settings.invoice_prefix) == (30, "LHS")
        log = await store.activity_for("settings", 1)
        assert log[-1].before["default_due_days"] == 90 and log[-1].after["default_due_days"] == 30
        # Re-applying the same values changes and logs nothing.
        assert (
            await change_settings(
                Context(store, clock, TZ), director, SettingsChange(default_due_days=30)
            )
            == {}
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (SettingsChange(default_due_days=0), "default_due_days"),
        (SettingsChange(invoice_prefix="9-bad"), "invoice_prefix"),
        (SettingsChange(restricted_statuses=("closed",)), "restricted_statuses"),
        (SettingsChange(school_year_start=(13, 1)), "school_year_start"),
    ],
)
async def test_bad_settings_are_refused_with_the_field(stores, clock, change, field) -> None:
    admin = await add_staff(stores, "Admin")
    async with stores() as store:
        with pytest.raises(ValidationError) as err:
            await change_settings(Context(store, clock, TZ), admin, change)
    assert err.value.field == field


async def test_roles_are_editable_by_manage_roles_only(stores, clock) -> None:
    admin = await add_staff(stores, "Admin")
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        with pytest.raises(PermissionDenied):
            await change_role(
                Context(store, clock, TZ),
                director,
                "Technician",
                allowed_statuses=["insurance_claim"],
            )
    async with stores() as store:
        assert await change_role(
            Context(store, clock, TZ),
            admin,
            "technician",
            allowed_statuses=["Awaiting Parts", "insurance_claim"],
        )
    tech = await add_staff(stores, "Technician")
    assert tech.allowed_statuses == frozenset({"awaiting_parts", "insurance_claim"})
    async with stores() as store:
        with pytest.raises(ValidationError):
            await change_role(
                Context(store, clock, TZ), admin, "Technician", permissions=["fly_to_the_moon"]
            )
        role = await store.get_role("Technician")
        log = await store.activity_for("role", role.id)
        assert log[-1].after["allowed_statuses"] == ["awaiting_parts", "insurance_claim"]
