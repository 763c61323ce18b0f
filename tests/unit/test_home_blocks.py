"""The fullest App Home stays inside Slack's limits, and its page buttons carry signed pages."""

from __future__ import annotations

from datetime import date
from typing import Any

from bot.slack.home_blocks import HomeLists, build_home_view
from bot.slack.home_lists import PAGE_SIZE, HomeAction, HomeList, HomePages, sees
from bot.slack.metadata import unpack
from storage.home_queries import (
    ApprovalLine,
    IncidentLine,
    OverdueLine,
    OverdueSummary,
    Page,
    PaymentLine,
    WaiverLine,
)
from workflows.permissions import DEFAULT_ROLES, Permission

SECRET = "unit-test-secret"
LONG = "x" * 2_000


def _page(lines: list[Any], page: int = 1, total: int = 40) -> Page[Any]:
    return Page(lines, page, PAGE_SIZE, total)


def _fullest() -> HomeLists:
    n = range(PAGE_SIZE)
    return HomeLists(
        incidents=_page(
            [
                IncidentLine(i, "open", date(2026, 2, 2), "SN" * 40, LONG[:200], ("screen",))
                for i in n
            ]
        ),
        overrides=_page([ApprovalLine(i, i, LONG[:200], LONG[:200]) for i in n]),
        waivers=_page([WaiverLine(i, "INV-1", LONG[:200], 5_000, LONG, LONG[:200]) for i in n]),
        payments=_page([PaymentLine(i, "INV-1", LONG[:200], 5_000, True, "check") for i in n]),
        overdue=OverdueSummary(
            40,
            400_000,
            _page([OverdueLine(i, "INV-1", LONG[:200], date(2026, 1, 1), 1, "first") for i in n]),
        ),
    )


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item)
    return found


def test_the_fullest_home_stays_inside_slacks_limits() -> None:
    view = build_home_view("Pat", _fullest(), pages=HomePages(), secret=SECRET)
    assert len(view["blocks"]) <= 100
    for block in view["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3_000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
    for node in _walk(view):
        if node.get("type") == "button":
            assert len(node["value"]) <= 2_000 and len(node["text"]["text"]) <= 75


def test_page_buttons_carry_the_other_lists_pages() -> None:
    pages = HomePages(waivers=3)
    view = build_home_view("Pat", _fullest(), pages=pages, secret=SECRET)
    turned = [
        unpack(HomePages, node["value"], SECRET)
        for node in _walk(view)
        if node.get("action_id") == HomeAction.PAGE
    ]
    assert HomePages(incidents=0, waivers=3) in turned  # incidents' Previous
    assert HomePages(incidents=2, waivers=3) in turned  # incidents' Next
    # Other lists' buttons keep the waivers page; the waivers' own turn it from the page shown.
    assert {t.page(HomeList.WAIVERS) for t in turned} == {0, 2, 3}


def test_who_sees_which_list() -> None:
    def lists(role: str) -> set[HomeList]:
        r = DEFAULT_ROLES[role]
        return {h for h in HomeList if sees(h, r.permissions, r.is_superadmin)}

    assert lists("Technician") == {HomeList.INCIDENTS}
    assert lists("Billing Clerk") == {HomeList.INCIDENTS, HomeList.PAYMENTS, HomeList.OVERDUE}
    assert lists("Finance Director") == set(HomeList)
    assert lists("Admin") == set(HomeList)
    assert sees(HomeList.OVERDUE, {Permission.VIEW_FINANCIAL_REPORTS.value}, False)
