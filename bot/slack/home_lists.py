"""The App Home's lists: their ids, who sees each (by what they may do with it), and the
signed value of its Previous / Next buttons."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from bot.slack.metadata import Payload
from workflows.permissions import Permission

PAGE_SIZE = 5  # five lines a list keeps a full home (five lists) well under Slack's 100 blocks


class HomeAction(StrEnum):
    OPEN_INCIDENT = "home.open_incident"
    PAGE = "home.page"


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


class HomePages(Payload):
    """Which page of each list is shown (from 0): the value of every Previous / Next button."""

    incidents: int = 0
    overrides: int = 0
    waivers: int = 0
    payments: int = 0
    overdue: int = 0

    def page(self, home_list: HomeList) -> int:
        return int(getattr(self, home_list.value))

    def turned(self, home_list: HomeList, page: int) -> HomePages:
        return self.model_copy(update={home_list.value: max(page, 0)})
