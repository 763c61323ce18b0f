"""Block Kit for the App Home tab: a workspace of paged lists with the buttons that act on them.

Each button carries the same action id and signed value as the message it mirrors (the incident
card, the approval requests, a reported payment, an invoice), so the same handler runs and checks
the clicker's permission again on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from bot.signing import Keys
from bot.slack.approval_blocks import decision_actions
from bot.slack.billing_report_blocks import BillingInvoiceAction, InvoiceRef
from bot.slack.blocks import Block, button, context_block, esc, header, section
from bot.slack.home_lists import HomeAction, HomeList, HomePages
from bot.slack.ids import IncidentRef
from bot.slack.metadata import Payload, pack
from bot.slack.override_blocks import OverrideAction, OverrideRef
from bot.slack.reply_blocks import PendingPaymentRef, ReplyAction
from bot.slack.waiver_blocks import WaiverAction, WaiverRef
from storage.home_queries import (
    ApprovalLine,
    IncidentLine,
    OverdueLine,
    OverdueSummary,
    Page,
    PaymentLine,
    WaiverLine,
)
from workflows.i18n import _
from workflows.incident_status import IncidentStatus
from workflows.money import format_cents
from workflows.offenders import flag_label

T = TypeVar("T")
MAX_BLOCKS = 100  # Slack's limit for a view
MAX_REASON = 150


@dataclass(frozen=True)
class HomeLists:
    """What one person's home shows: None for a list their role doesn't act on."""

    incidents: Page[IncidentLine]
    overrides: Page[ApprovalLine] | None = None
    waivers: Page[WaiverLine] | None = None
    payments: Page[PaymentLine] | None = None
    overdue: OverdueSummary | None = None


def _day(d: date) -> str:
    return f"{d:%b} {d.day}"


class _Builder:
    def __init__(self, pages: HomePages, secret: Keys) -> None:
        self.pages = pages
        self.secret = secret
        self.blocks: list[Block] = []

    def value(self, payload: Payload) -> str:
        return pack(payload, self.secret)

    def add_list(
        self,
        home_list: HomeList,
        title: str,
        page: Page[T],
        empty: str,
        line: Callable[[T], list[Block]],
    ) -> None:
        self.blocks += [{"type": "divider"}, header(title)]
        if not page.lines:
            self.blocks.append(section(empty))
            return
        for item in page.lines:
            self.blocks += line(item)
        self.add_pager(home_list, page)

    def add_pager(self, home_list: HomeList, page: Page[Any]) -> None:
        if not (page.has_previous or page.has_next):
            return
        first = page.page * page.size + 1
        last = first + len(page.lines) - 1
        elements: list[Block] = []
        if page.has_previous:
            back = self.pages.turned(home_list, page.page - 1)
            elements.append(button(_("Previous"), HomeAction.PAGE, self.value(back)))
        if page.has_next:
            ahead = self.pages.turned(home_list, page.page + 1)
            elements.append(button(_("Next"), HomeAction.PAGE, self.value(ahead)))
        self.blocks.append(
            context_block(_("{first}–{last} of {total}", first=first, last=last, total=page.total))
        )
        self.blocks.append({"type": "actions", "elements": elements})

    # --- one line of each list --------------------------------------------------------------

    def incident(self, line: IncidentLine) -> list[Block]:
        flags = ", ".join(flag_label(f) for f in line.flags) or _("Incident")
        student = esc(line.student) if line.student else _("no student")
        status = IncidentStatus(line.status).label
        text = (
            f"*#{line.id}* · `{esc(line.serial)}` · {student} · {status} · {flags} · "
            f"{_day(line.occurred_on)}"
        )
        ref = self.value(IncidentRef(incident_id=line.id))
        return [section(text, accessory=button(_("Open"), HomeAction.OPEN_INCIDENT, ref))]

    def override(self, line: ApprovalLine) -> list[Block]:
        student = esc(line.student) if line.student else _("no student")
        by = esc(line.requested_by) if line.requested_by else _("someone no longer on staff")
        value = self.value(OverrideRef(request_id=line.request_id))
        text = _(
            "Incident *#{incident}* · {student} · requested by {by}",
            incident=line.incident_id,
            student=student,
            by=by,
        )
        return [
            section(text),
            decision_actions(None, OverrideAction.APPROVE, OverrideAction.DENY, value),
        ]

    def waiver(self, line: WaiverLine) -> list[Block]:
        by = esc(line.requested_by) if line.requested_by else _("someone no longer on staff")
        reason = line.reason if len(line.reason) <= MAX_REASON else line.reason[:MAX_REASON] + "…"
        value = self.value(WaiverRef(adjustment_id=line.adjustment_id))
        asked = _(
            "*{amount}* off *{number}* · {student} · asked by {by}",
            amount=format_cents(line.amount_cents),
            number=esc(line.invoice_number),
            student=esc(line.student),
            by=by,
        )
        return [
            section(f"{asked}\n_{esc(reason)}_"),
            decision_actions(None, WaiverAction.APPROVE, WaiverAction.DENY, value),
        ]

    def payment(self, line: PaymentLine) -> list[Block]:
        amount = format_cents(line.amount_cents) if line.amount_given else _("an amount not given")
        text = _(
            "*{number}* · {student} · reported paying {amount} by {method}",
            number=esc(line.invoice_number),
            student=esc(line.student),
            amount=amount,
            method=esc(line.method),
        )
        value = self.value(PendingPaymentRef(pending_payment_id=line.pending_payment_id))
        confirm = button(_("Confirm"), ReplyAction.CONFIRM, value, style="primary")
        return [section(text, accessory=confirm)]

    def overdue(self, line: OverdueLine) -> list[Block]:
        due = f"{_day(line.due_date)}, {line.due_date.year}"
        text = _(
            "*{number}* · {student} · due {due} · {balance} owed",
            number=esc(line.number),
            student=esc(line.student),
            due=due,
            balance=format_cents(line.balance_cents),
        )
        value = self.value(InvoiceRef(invoice_id=line.invoice_id))
        return [section(text, accessory=button(_("Open"), BillingInvoiceAction.OPEN, value))]


def build_home_view(
    name: str, lists: HomeLists, *, pages: HomePages, secret: Keys
) -> dict[str, Any]:
    b = _Builder(pages, secret)
    b.blocks += [
        header("DeviceCare"),
        section(
            _(
                "Hi {name}. Open an incident with `/incident`; look a device up with "
                "`/device <serial, asset tag or student>`.",
                name=esc(name),
            )
        ),
    ]
    b.add_list(
        HomeList.INCIDENTS,
        _("Your open incidents"),
        lists.incidents,
        _("Nothing open. :white_check_mark:"),
        b.incident,
    )
    if lists.overrides is not None:
        b.add_list(
            HomeList.OVERRIDES,
            _("Waiting on you: claim-cap overrides"),
            lists.overrides,
            _("No override requests are waiting."),
            b.override,
        )
    if lists.waivers is not None:
        b.add_list(
            HomeList.WAIVERS,
            _("Waiting on you: waivers"),
            lists.waivers,
            _("No waiver requests are waiting."),
            b.waiver,
        )
    if lists.payments is not None:
        b.add_list(
            HomeList.PAYMENTS,
            _("Reported payments to confirm"),
            lists.payments,
            _("No reported payments are waiting."),
            b.payment,
        )
    if lists.overdue is not None:
        overdue = lists.overdue
        if overdue.count:
            b.blocks += [{"type": "divider"}, header(_("Overdue invoices"))]
            b.blocks.append(
                section(
                    _(
                        "*{count}* overdue, *{balance}* outstanding. Oldest first:",
                        count=overdue.count,
                        balance=format_cents(overdue.balance_cents),
                    )
                )
            )
            for line in overdue.page.lines:
                b.blocks += b.overdue(line)
            b.add_pager(HomeList.OVERDUE, overdue.page)
        else:
            b.add_list(
                HomeList.OVERDUE,
                _("Overdue invoices"),
                overdue.page,
                _("Nothing is overdue."),
                b.overdue,
            )
    # Five lists of five lines stay near 70 blocks; the assertion guards future growth.
    assert len(b.blocks) <= MAX_BLOCKS, f"the App Home grew to {len(b.blocks)} blocks"
    return {"type": "home", "blocks": b.blocks}


def build_unknown_home_view(text: str) -> dict[str, Any]:
    return {"type": "home", "blocks": [header("DeviceCare"), section(text)]}
