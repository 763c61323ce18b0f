"""Permissions, the acting user, and the role templates a new district starts with."""

from dataclasses import dataclass
from enum import StrEnum

from workflows.errors import PermissionDenied
from workflows.i18n import _
from workflows.incident_status import DEFAULT_RESTRICTED, IncidentStatus


class Permission(StrEnum):
    MANAGE_SETTINGS = "manage_settings"
    MANAGE_INVOICE_AUTOMATION = "manage_invoice_automation"
    OVERRIDE_CLAIM_CAP = "override_insurance_claim_cap"
    MANAGE_INCIDENTS = "manage_incidents"
    CREATE_INVOICES = "create_invoices"
    RECORD_PAYMENTS = "record_payments"
    CANCEL_INVOICES = "cancel_invoices"
    REPLACE_DEVICES = "replace_devices"
    MANAGE_POLICIES = "manage_policies"
    MANAGE_ROLES = "manage_roles"
    MANAGE_STAFF = "manage_staff"
    VIEW_REPORTS = "view_reports"
    VIEW_FINANCIAL_REPORTS = "view_financial_reports"
    WAIVE_CHARGES = "waive_charges"
    APPROVE_WAIVERS = "approve_waivers"
    ISSUE_REFUNDS = "issue_refunds"
    MANAGE_ENROLLMENTS = "manage_enrollments"
    MANAGE_FEES = "manage_fees"
    COLLECT_DEVICES = "collect_devices"
    # Export and erase a family's personal data (devicecare privacy); Admin only by default.
    MANAGE_FAMILY_DATA = "manage_family_data"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)


def permission_label(p: Permission) -> str:
    """Words for a permission, e.g. "Override Insurance Claim Cap", for messages and pickers."""
    return " ".join(word.capitalize() for word in p.value.split("_"))


@dataclass(frozen=True)
class Actor:
    """Whoever is acting: a staff member resolved from Slack, or the automation itself."""

    staff_id: int | None
    name: str
    role: str
    permissions: frozenset[Permission]
    allowed_statuses: frozenset[str] = frozenset()
    is_superadmin: bool = False

    def can(self, p: Permission) -> bool:
        return self.is_superadmin or p in self.permissions

    @classmethod
    def system(cls, name: str = "DeviceCare automation") -> "Actor":
        """The scheduler and mail agent act as this; it has no staff row to point at."""
        return cls(
            staff_id=None,
            name=name,
            role="System",
            permissions=ALL_PERMISSIONS,
            allowed_statuses=frozenset(s.value for s in IncidentStatus),
            is_superadmin=True,
        )


def require(actor: Actor, permission: Permission) -> None:
    """Raise PermissionDenied unless the actor holds `permission`."""
    if actor.can(permission):
        return
    label = permission_label(permission)
    if actor.role:
        message = _(
            "Your role ({role}) does not have the {permission} permission.",
            role=actor.role,
            permission=label,
        )
    else:
        message = _("You don't have the {permission} permission.", permission=label)
    raise PermissionDenied(message)


@dataclass(frozen=True)
class RoleTemplate:
    name: str
    permissions: frozenset[Permission]
    allowed_statuses: frozenset[str]
    is_superadmin: bool

    def actor(self, staff_id: int | None, name: str) -> Actor:
        """An Actor holding exactly this role's grants."""
        return Actor(
            staff_id=staff_id,
            name=name,
            role=self.name,
            permissions=self.permissions,
            allowed_statuses=self.allowed_statuses,
            is_superadmin=self.is_superadmin,
        )


def _role(
    name: str,
    permissions: frozenset[Permission] | set[Permission],
    statuses: set[IncidentStatus] | frozenset[IncidentStatus] = frozenset(),
    *,
    is_superadmin: bool = False,
) -> RoleTemplate:
    return RoleTemplate(
        name=name,
        permissions=frozenset(permissions),
        allowed_statuses=frozenset(s.value for s in statuses),
        is_superadmin=is_superadmin,
    )


_P = Permission
_S = IncidentStatus

DEFAULT_ROLES: dict[str, RoleTemplate] = {
    role.name: role
    for role in (
        _role("SuperAdmin", ALL_PERMISSIONS, DEFAULT_RESTRICTED, is_superadmin=True),
        _role("Admin", ALL_PERMISSIONS, DEFAULT_RESTRICTED),
        _role(
            "Technician",
            {
                _P.MANAGE_INCIDENTS,
                _P.REPLACE_DEVICES,
                _P.CREATE_INVOICES,
                _P.COLLECT_DEVICES,
                _P.VIEW_REPORTS,
            },
            {_S.AWAITING_PARTS, _S.VENDOR_REPAIR},
        ),
        _role(
            "Billing Clerk",
            {
                _P.CREATE_INVOICES,
                _P.RECORD_PAYMENTS,
                _P.CANCEL_INVOICES,
                _P.MANAGE_INVOICE_AUTOMATION,
                _P.WAIVE_CHARGES,
                _P.MANAGE_ENROLLMENTS,
                _P.MANAGE_FEES,
                _P.VIEW_REPORTS,
                _P.VIEW_FINANCIAL_REPORTS,
            },
            {_S.INSURANCE_CLAIM},
        ),
        _role(
            "Finance Director",
            {
                _P.MANAGE_SETTINGS,
                _P.MANAGE_INVOICE_AUTOMATION,
                _P.OVERRIDE_CLAIM_CAP,
                _P.CREATE_INVOICES,
                _P.RECORD_PAYMENTS,
                _P.CANCEL_INVOICES,
                _P.WAIVE_CHARGES,
                _P.APPROVE_WAIVERS,
                _P.ISSUE_REFUNDS,
                _P.MANAGE_ENROLLMENTS,
                _P.MANAGE_FEES,
                _P.MANAGE_POLICIES,
                _P.VIEW_REPORTS,
                _P.VIEW_FINANCIAL_REPORTS,
            },
            {_S.INSURANCE_CLAIM},
        ),
        _role(
            "Front Desk",
            {_P.MANAGE_INCIDENTS, _P.CREATE_INVOICES, _P.RECORD_PAYMENTS, _P.COLLECT_DEVICES},
        ),
    )
}
