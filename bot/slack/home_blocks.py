"""Block Kit for the App Home tab."""

from __future__ import annotations

from datetime import date
from typing import Any

from storage.home_queries import ApprovalLine, IncidentLine, OverdueSummary
from workflows.incident_status import IncidentStatus
from workflows.money import format_cents
from workflows.offenders import flag_label

Block = dict[str, Any]


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _day(d: date) -> str:
    return f"{d:%b} {d.day}"


def _incident_line(line: IncidentLine) -> str:
    flags = ", ".join(flag_label(f) for f in line.flags)
    student = line.student or "no student"
    status = IncidentStatus(line.status).label
    when = _day(line.occurred_on)
    return f"*#{line.id}* · `{line.serial}` · {student} · {status} · {flags} · {when}"


def build_home_view(
    name: str,
    incidents: list[IncidentLine],
    approvals: list[ApprovalLine] | None,
    overdue: OverdueSummary | None,
) -> dict[str, Any]:
    blocks: list[Block] = [
        _header("DeviceCare"),
        _section(
            f"Hi {name}. Open an incident with `/incident`; look a device up with "
            "`/device <serial, asset tag or student>`."
        ),
        {"type": "divider"},
        _header("Your open incidents"),
    ]
    if incidents:
        blocks += [_section(_incident_line(line)) for line in incidents]
    else:
        blocks.append(_section("Nothing open. :white_check_mark:"))
    if approvals is not None:
        blocks += [{"type": "divider"}, _header("Waiting on you: claim-cap overrides")]
        if approvals:
            blocks += [
                _section(
                    f"Incident *#{a.incident_id}* · {a.student or 'no student'} · "
                    f"requested by {a.requested_by or 'someone no longer on staff'} — "
                    "decide in the approvals channel."
                )
                for a in approvals
            ]
        else:
            blocks.append(_section("No override requests are waiting."))
    if overdue is not None:
        blocks += [{"type": "divider"}, _header("Overdue invoices")]
        if overdue.count:
            blocks.append(
                _section(
                    f"*{overdue.count}* overdue, "
                    f"*{format_cents(overdue.balance_cents)}* outstanding. "
                    "Oldest first:"
                )
            )
            blocks += [
                _section(
                    f"*{o.number}* · {o.student} · due {_day(o.due_date)}, {o.due_date.year} · "
                    f"{format_cents(o.balance_cents)} owed"
                )
                for o in overdue.oldest
            ]
        else:
            blocks.append(_section("Nothing is overdue."))
    return {"type": "home", "blocks": blocks[:100]}


def build_unknown_home_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            _header("DeviceCare"),
            _section(
                "You're not set up in DeviceCare yet. Ask a DeviceCare administrator to add "
                "you with your work email."
            ),
        ],
    }
