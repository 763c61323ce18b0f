"""Settings and role changes: permission, validation, audit."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from storage import models as m
from storage.db import create_engine, session_factory
from storage.migrate import alembic_config, downgrade, upgrade
from tests.builders import add_staff
from workflows.administration import (
    SettingsChange,
    change_billing_settings,
    change_role,
    change_settings,
)
from workflows.billing_settings import DEFAULTS, BillingSettings, billing_settings_from
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
        await store.commit()
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
        await store.commit()
    async with stores() as store:
        settings = await store.settings.get()
        assert (settings.default_due_days, settings.invoice_prefix) == (30, "LHS")
        log = await store.activity.for_entity("settings", 1)
        assert log[-1].before["default_due_days"] == 90 and log[-1].after["default_due_days"] == 30
        # Re-applying the same values changes and logs nothing.
        assert (
            await change_settings(
                Context(store, clock, TZ), director, SettingsChange(default_due_days=30)
            )
            == {}
        )
        await store.commit()


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
        await store.commit()
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
        await store.commit()
    async with stores() as store:
        assert await change_role(
            Context(store, clock, TZ),
            admin,
            "technician",
            allowed_statuses=["Awaiting Parts", "insurance_claim"],
        )
        await store.commit()
    tech = await add_staff(stores, "Technician")
    assert tech.allowed_statuses == frozenset({"awaiting_parts", "insurance_claim"})
    async with stores() as store:
        with pytest.raises(ValidationError):
            await change_role(
                Context(store, clock, TZ), admin, "Technician", permissions=["fly_to_the_moon"]
            )
        role = await store.people.role("Technician")
        log = await store.activity.for_entity("role", role.id)
        assert log[-1].after["allowed_statuses"] == ["awaiting_parts", "insurance_claim"]
        await store.commit()


# --- billing automation settings ------------------------------------------------------------

BILLING_MIGRATION = "0003"


async def test_a_new_district_starts_with_the_default_billing_settings(stores) -> None:
    async with stores() as store:
        assert billing_settings_from(await store.settings.get()) == DEFAULTS
        await store.commit()


async def test_billing_settings_need_manage_settings(stores, clock) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        with pytest.raises(PermissionDenied, match="Manage Settings"):
            await change_billing_settings(
                Context(store, clock, TZ), clerk, replace(DEFAULTS, auto_cancel_enabled=True)
            )
        await store.commit()
    async with stores() as store:
        assert billing_settings_from(await store.settings.get()) == DEFAULTS
        assert await store.activity.for_entity("settings", 1) == []
        await store.commit()


async def test_billing_settings_change_is_stored_and_audited(stores, clock) -> None:
    director = await add_staff(stores, "Finance Director")
    new = BillingSettings(
        pre_due_days=(10, 3),
        overdue_days=(10, 21, 45),
        auto_cancel_enabled=True,
        auto_cancel_days=90,
        daily_run_time="5:30",
    )
    async with stores() as store:
        changed = await change_billing_settings(Context(store, clock, TZ), director, new)
        await store.commit()
    assert changed == {
        "pre_due_days": ([14, 7, 1], [10, 3]),
        "overdue_days": ([7, 14, 30], [10, 21, 45]),
        "auto_cancel_enabled": (False, True),
        "auto_cancel_days": (60, 90),
        "daily_run_time": ("06:00", "05:30"),
    }
    async with stores() as store:
        stored = billing_settings_from(await store.settings.get())
        assert stored == replace(new, daily_run_time="05:30")
        log = await store.activity.for_entity("settings", 1)
        assert [entry.action for entry in log] == ["billing_settings_changed"]
        assert log[0].actor_staff_id == director.staff_id
        assert log[0].before == {k: old for k, (old, _) in changed.items()}
        assert log[0].after == {k: new_value for k, (_, new_value) in changed.items()}
        await store.commit()
    # The same settings again change and log nothing.
    async with stores() as store:
        assert await change_billing_settings(Context(store, clock, TZ), director, stored) == {}
        await store.commit()
    async with stores() as store:
        assert len(await store.activity.for_entity("settings", 1)) == 1
        await store.commit()


async def test_bad_billing_settings_are_refused_and_nothing_is_stored(stores, clock) -> None:
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        with pytest.raises(ValidationError) as err:
            await change_billing_settings(
                Context(store, clock, TZ),
                director,
                replace(DEFAULTS, auto_cancel_days=30, overdue_days=(30, 14, 7)),
            )
        await store.commit()
    assert err.value.field == "overdue_days"
    async with stores() as store:
        assert billing_settings_from(await store.settings.get()) == DEFAULTS
        await store.commit()


async def test_due_days_in_change_settings_must_leave_room_for_pre_due_reminders(
    stores, clock
) -> None:
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        with pytest.raises(ValidationError) as err:
            await change_settings(
                Context(store, clock, TZ), director, SettingsChange(default_due_days=10)
            )
        await store.commit()
    assert err.value.field == "pre_due_days"  # 14 days before would precede the invoice
    async with stores() as store:
        changed = await change_billing_settings(
            Context(store, clock, TZ), director, replace(DEFAULTS, pre_due_days=(7, 1))
        )
        assert changed == {"pre_due_days": ([14, 7, 1], [7, 1])}
        await store.commit()
    async with stores() as store:
        changed = await change_settings(
            Context(store, clock, TZ), director, SettingsChange(default_due_days=10)
        )
        assert changed == {"default_due_days": (90, 10)}
        await store.commit()


async def test_the_migration_gives_an_existing_district_the_defaults(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    before_billing = script.get_revision(BILLING_MIGRATION).down_revision
    assert isinstance(before_billing, str)
    await asyncio.to_thread(downgrade, database_url, before_billing)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM district_settings"))
            await conn.execute(
                text(
                    "INSERT INTO district_settings (id, district_name, default_due_days,"
                    " automation_default, invoice_prefix, school_year_start_month,"
                    " school_year_start_day, restricted_statuses, offender_rules)"
                    " VALUES (1, 'Lakeview', 60, :off, 'LV', 8, 15, '[]', '[]')"
                ),
                {"off": False},
            )
        await asyncio.to_thread(upgrade, database_url)
        async with session_factory(engine)() as session:
            row = await session.get(m.DistrictSettings, 1)
            assert row is not None
            assert billing_settings_from(row) == replace(
                DEFAULTS, default_due_days=60, automation_default=False
            )
    finally:
        await engine.dispose()
