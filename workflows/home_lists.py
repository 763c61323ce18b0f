"""The App Home's lists, and who sees each: whoever may act on what the list shows."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from workflows.permissions import Permission


class HomeList(StrEnum):
    INCIDENTS = "incidents"  # your open incidents: everyone on staff
    OVERRIDES = "overrides"
    WAIVERS = "waivers"
    PAYMENTS = "payments"
    OVERDUE = "overdue"


# A list is shown to whoever holds any of these; its buttons' handlers check again at click time.
NEEDS: dict[HomeList, tuple[Permission, ...]] = {
    HomeList.OVERRIDES: (Permission.OVERRIDE_CLAIM_CAP,),
    HomeList.WAIVERS: (Permission.APPROVE_WAIVERS,),
    HomeList.PAYMENTS: (Permission.RECORD_PAYMENTS,),
    HomeList.OVERDUE: (Permission.RECORD_PAYMENTS, Permission.VIEW_FINANCIAL_REPORTS),
}


def sees(home_list: HomeList, permissions: Collection[str], is_superadmin: bool) -> bool:
    if home_list == HomeList.INCIDENTS or is_superadmin:
        return True
    return any(p in permissions for p in NEEDS[home_list])
