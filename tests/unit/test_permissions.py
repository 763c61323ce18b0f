import pytest

from workflows.errors import PermissionDenied
from workflows.incident_status import DEFAULT_RESTRICTED
from workflows.permissions import (
    ALL_PERMISSIONS,
    DEFAULT_ROLES,
    Actor,
    Permission,
    permission_label,
    require,
)

P = Permission


def actor(role: str) -> Actor:
    return DEFAULT_ROLES[role].actor(staff_id=1, name="Pat")


def test_permission_values_are_stable() -> None:
    # Stored in the database and in role settings: renaming a value breaks existing data.
    assert P.OVERRIDE_CLAIM_CAP == "override_insurance_claim_cap"
    assert {p.value for p in P} == {
        "manage_settings",
        "manage_invoice_automation",
        "override_insurance_claim_cap",
        "manage_incidents",
        "create_invoices",
        "record_payments",
        "cancel_invoices",
        "replace_devices",
        "manage_policies",
        "manage_roles",
        "manage_staff",
        "view_reports",
        "view_financial_reports",
        "waive_charges",
        "approve_waivers",
        "issue_refunds",
        "manage_enrollments",
        "manage_fees",
        "collect_devices",
        "manage_family_data",
    }


def test_migration_grants_match_the_shipped_roles() -> None:
    # Migration 0006 gave existing districts' shipped roles the permissions added with it.
    import importlib.util
    from pathlib import Path

    path = Path("storage/migrations/versions/0006_fees_waivers_enrollment.py")
    spec = importlib.util.spec_from_file_location("m0006", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    added = {
        P.APPROVE_WAIVERS,
        P.ISSUE_REFUNDS,
        P.MANAGE_ENROLLMENTS,
        P.MANAGE_FEES,
        P.COLLECT_DEVICES,
    }
    for name, role in DEFAULT_ROLES.items():
        expected = {p.value for p in role.permissions & added}
        if name == "Billing Clerk":
            expected.add(P.WAIVE_CHARGES.value)
        assert set(module.NEW_GRANTS.get(name, [])) == expected, name


@pytest.mark.parametrize(
    ("permission", "label"),
    [
        (P.OVERRIDE_CLAIM_CAP, "Override Insurance Claim Cap"),
        (P.MANAGE_INVOICE_AUTOMATION, "Manage Invoice Automation"),
        (P.VIEW_FINANCIAL_REPORTS, "View Financial Reports"),
        (P.WAIVE_CHARGES, "Waive Charges"),
    ],
)
def test_permission_label(permission: Permission, label: str) -> None:
    assert permission_label(permission) == label


def test_actor_can_only_what_it_holds() -> None:
    tech = actor("Technician")
    assert tech.can(P.MANAGE_INCIDENTS)
    assert not tech.can(P.OVERRIDE_CLAIM_CAP)


def test_superadmin_can_everything_even_without_grants() -> None:
    boss = Actor(
        staff_id=1, name="Sam", role="SuperAdmin", permissions=frozenset(), is_superadmin=True
    )
    assert all(boss.can(p) for p in P)


def test_system_actor() -> None:
    system = Actor.system()
    assert system.staff_id is None
    assert system.name == "DeviceCare automation"
    assert system.is_superadmin
    assert all(system.can(p) for p in P)
    assert Actor.system("Billing run").name == "Billing run"


def test_require_passes_silently() -> None:
    require(actor("Finance Director"), P.OVERRIDE_CLAIM_CAP)


def test_require_names_role_and_permission() -> None:
    with pytest.raises(PermissionDenied) as info:
        require(actor("Technician"), P.OVERRIDE_CLAIM_CAP)
    assert info.value.message == (
        "Your role (Technician) does not have the Override Insurance Claim Cap permission."
    )


def test_require_without_role_name() -> None:
    nobody = Actor(staff_id=None, name="?", role="", permissions=frozenset())
    with pytest.raises(PermissionDenied) as info:
        require(nobody, P.RECORD_PAYMENTS)
    assert info.value.message == "You don't have the Record Payments permission."


def test_default_role_names() -> None:
    assert set(DEFAULT_ROLES) == {
        "SuperAdmin",
        "Admin",
        "Technician",
        "Billing Clerk",
        "Finance Director",
        "Front Desk",
    }
    assert all(name == role.name for name, role in DEFAULT_ROLES.items())


def test_superadmin_and_admin_hold_everything() -> None:
    assert DEFAULT_ROLES["SuperAdmin"].is_superadmin
    assert DEFAULT_ROLES["SuperAdmin"].permissions == ALL_PERMISSIONS
    admin = DEFAULT_ROLES["Admin"]
    assert not admin.is_superadmin
    assert admin.permissions == ALL_PERMISSIONS
    assert admin.allowed_statuses == {s.value for s in DEFAULT_RESTRICTED}


@pytest.mark.parametrize(
    ("role", "permissions", "statuses"),
    [
        (
            "Technician",
            {
                P.MANAGE_INCIDENTS,
                P.REPLACE_DEVICES,
                P.CREATE_INVOICES,
                P.COLLECT_DEVICES,
                P.VIEW_REPORTS,
            },
            {"awaiting_parts", "vendor_repair"},
        ),
        (
            "Billing Clerk",
            {
                P.CREATE_INVOICES,
                P.RECORD_PAYMENTS,
                P.CANCEL_INVOICES,
                P.MANAGE_INVOICE_AUTOMATION,
                P.WAIVE_CHARGES,
                P.MANAGE_ENROLLMENTS,
                P.MANAGE_FEES,
                P.VIEW_REPORTS,
                P.VIEW_FINANCIAL_REPORTS,
            },
            {"insurance_claim"},
        ),
        (
            "Finance Director",
            {
                P.MANAGE_SETTINGS,
                P.MANAGE_INVOICE_AUTOMATION,
                P.OVERRIDE_CLAIM_CAP,
                P.CREATE_INVOICES,
                P.RECORD_PAYMENTS,
                P.CANCEL_INVOICES,
                P.WAIVE_CHARGES,
                P.APPROVE_WAIVERS,
                P.ISSUE_REFUNDS,
                P.MANAGE_ENROLLMENTS,
                P.MANAGE_FEES,
                P.MANAGE_POLICIES,
                P.VIEW_REPORTS,
                P.VIEW_FINANCIAL_REPORTS,
            },
            {"insurance_claim"},
        ),
        (
            "Front Desk",
            {P.MANAGE_INCIDENTS, P.CREATE_INVOICES, P.RECORD_PAYMENTS, P.COLLECT_DEVICES},
            set(),
        ),
    ],
)
def test_default_role_grants(role: str, permissions: set[Permission], statuses: set[str]) -> None:
    template = DEFAULT_ROLES[role]
    assert template.permissions == permissions
    assert template.allowed_statuses == statuses
    assert template.is_superadmin is False


def test_role_template_builds_actor() -> None:
    clerk = DEFAULT_ROLES["Billing Clerk"].actor(staff_id=9, name="Kim")
    assert clerk.staff_id == 9
    assert clerk.role == "Billing Clerk"
    assert clerk.allowed_statuses == {"insurance_claim"}
    assert clerk.can(P.RECORD_PAYMENTS)
    assert clerk.can(P.WAIVE_CHARGES)
    assert not clerk.can(P.APPROVE_WAIVERS)
