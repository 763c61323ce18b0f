"""The App Home's lists: their ids, who sees each (workflows.home_lists), and the signed
value of its Previous / Next buttons."""

from __future__ import annotations

from enum import StrEnum

from bot.slack.metadata import Payload
from workflows.home_lists import NEEDS, HomeList, sees

__all__ = ["NEEDS", "PAGE_SIZE", "HomeAction", "HomeList", "HomePages", "sees"]

PAGE_SIZE = 5  # five lines a list keeps a full home (five lists) well under Slack's 100 blocks


class HomeAction(StrEnum):
    OPEN_INCIDENT = "home.open_incident"
    PAGE = "home.page"


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
