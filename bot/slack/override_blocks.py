"""Block Kit for claim-cap overrides: the approval request with its facts, and its decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.signing import Keys
from bot.slack.approval_blocks import decision_actions
from bot.slack.blocks import (
    MINUS,
    Block,
    context_block,
    esc,
    fields_section,
    fmt_date,
    fmt_when,
    header,
    mrkdwn,
    section,
)
from bot.slack.metadata import Payload, pack
from workflows.i18n import _
from workflows.insurance import Split
from workflows.labels import decision_label, flags_text
from workflows.money import format_cents


class OverrideAction(StrEnum):
    APPROVE = "override.approve"
    DENY = "override.deny"


class OverrideRef(Payload):
    """The value of the Approve and Deny buttons."""

    request_id: int


class OverrideBlock(StrEnum):
    FACTS = "override.facts"
    DECISION = "override.decision"
    ACTIONS = "override.actions"


@dataclass(frozen=True)
class OverrideFacts:
    """What an approver needs to decide, and what was decided."""

    request_id: int
    incident_id: int
    occurred_on: date
    flags: tuple[str, ...]
    status: str  # pending / approved / denied
    student_name: str
    policy_label: str | None  # "District Plan (2025-2026)"; None when the enrollment is gone
    claims_used: int | None  # claims on the enrollment other than this one
    max_claims: int | None
    invoice_number: str | None
    full_price_cents: int | None  # the invoice subtotal, billed without coverage
    with_override: Split | None  # how it splits when the policy applies anyway
    requested_by: str
    requester_slack_id: str | None
    requested_at: datetime
    reason: str | None
    decided_by: str | None = None
    decided_at: datetime | None = None


def who(name: str, slack_id: str | None) -> str:
    return f"<@{slack_id}>" if slack_id else esc(name)


def _amount_fields(facts: OverrideFacts) -> list[Block]:
    if facts.full_price_cents is None:
        return [
            mrkdwn(
                _(
                    "*Amounts*\nNo invoice yet: the override applies to this incident's next "
                    "invoice."
                )
            )
        ]
    invoice = f" ({esc(facts.invoice_number)})" if facts.invoice_number else ""
    owed = _(
        "*Without coverage*\n{amount} owed{invoice}",
        amount=format_cents(facts.full_price_cents),
        invoice=invoice,
    )
    fields = [mrkdwn(owed)]
    split = facts.with_override
    if split is not None:
        label = (
            _("With the override") if facts.status != "approved" else _("Now, with the override")
        )
        owed = _(
            "{amount} owed (insurance {insurance})",
            amount=format_cents(split.client_cents),
            insurance=MINUS + format_cents(split.policy_cents),
        )
        fields.append(mrkdwn(f"*{label}*\n{owed}"))
    return fields


def _fact_fields(facts: OverrideFacts) -> list[Block]:
    flags = esc(flags_text(facts.flags))
    claims = _("unknown")
    if facts.claims_used is not None and facts.max_claims is not None:
        claims = _("{used} of {max} this term", used=facts.claims_used, max=facts.max_claims)
    policy = esc(facts.policy_label or _("No enrollment any more"))
    incident = f"#{facts.incident_id} \u00b7 {fmt_date(facts.occurred_on)} \u00b7 {flags}"
    return [
        mrkdwn(_("*Student*") + f"\n{esc(facts.student_name)}"),
        mrkdwn(_("*Policy*") + f"\n{policy}"),
        mrkdwn(_("*Claims used*") + f"\n{claims}"),
        mrkdwn(_("*Incident*") + f"\n{incident}"),
        *_amount_fields(facts),
    ]


def decision_line(facts: OverrideFacts, tz: ZoneInfo) -> str:
    if facts.status == "pending":
        return ""
    mark = ":white_check_mark:" if facts.status == "approved" else ":no_entry_sign:"
    decision = decision_label(facts.status)
    by = esc(facts.decided_by or _("someone"))
    if facts.decided_at is None:
        return _("{mark} *{decision}* by {by}", mark=mark, decision=decision, by=by)
    return _(
        "{mark} *{decision}* by {by} on {when}",
        mark=mark,
        decision=decision,
        by=by,
        when=fmt_when(facts.decided_at, tz),
    )


def override_summary(facts: OverrideFacts) -> str:
    """Plain text for notifications."""
    text = _("Claim-cap override for {student}", student=facts.student_name)
    if facts.policy_label:
        text += f" ({facts.policy_label})"
    if facts.status == "pending":
        return text + ": " + _("waiting for a decision")
    decided = decision_label(facts.status).lower()
    return (
        text + ": " + _("{decision} by {by}", decision=decided, by=facts.decided_by or _("someone"))
    )


def build_override_request_message(
    facts: OverrideFacts, *, secret: Keys, tz: ZoneInfo
) -> tuple[str, list[Block]]:
    """The approvals-channel message; Approve/Deny while pending, the decision after."""
    # The requester's name, not a mention: they hear the outcome in the incident's thread.
    requested = _(
        "Requested by {who} on {when}",
        who=esc(facts.requested_by),
        when=fmt_when(facts.requested_at, tz),
    )
    reason = _("Reason: {reason}", reason=esc(facts.reason)) if facts.reason else ""
    blocks: list[Block] = [
        header(_("Claim-cap override requested")),
        fields_section(_fact_fields(facts), block_id=OverrideBlock.FACTS),
        context_block(requested, reason),
    ]
    if facts.status == "pending":
        value = pack(OverrideRef(request_id=facts.request_id), secret)
        blocks.append(
            decision_actions(
                OverrideBlock.ACTIONS, OverrideAction.APPROVE, OverrideAction.DENY, value
            )
        )
    else:
        blocks.append(section(decision_line(facts, tz), block_id=OverrideBlock.DECISION))
    return override_summary(facts), blocks


def already_decided_text(facts: OverrideFacts, tz: ZoneInfo) -> str:
    by = esc(facts.decided_by or _("someone"))
    decision = decision_label(facts.status).lower()
    if facts.decided_at is None:
        return _(
            ":lock: This override request was already decided by {by}: {decision}. "
            "Nothing was changed.",
            by=by,
            decision=decision,
        )
    return _(
        ":lock: This override request was already decided by {by}: {decision} on {when}. "
        "Nothing was changed.",
        by=by,
        decision=decision,
        when=fmt_when(facts.decided_at, tz),
    )


def decided_thread_text(facts: OverrideFacts) -> str:
    """What the requester reads in the incident thread."""
    requester = who(facts.requested_by, facts.requester_slack_id)
    by = esc(facts.decided_by or _("an approver"))
    if facts.status == "approved":
        text = _(
            ":white_check_mark: {requester} your claim-cap override was approved by {by}.",
            requester=requester,
            by=by,
        )
        if facts.with_override is not None and facts.invoice_number:
            text += " " + _(
                "Invoice {number} now: {amount} owed (insurance {insurance}).",
                number=esc(facts.invoice_number),
                amount=format_cents(facts.with_override.client_cents),
                insurance=format_cents(facts.with_override.policy_cents),
            )
        elif facts.invoice_number is None:
            text += " " + _("It applies to this incident's next invoice.")
        return text
    text = _(
        ":no_entry_sign: {requester} your claim-cap override was denied by {by}.",
        requester=requester,
        by=by,
    )
    if facts.invoice_number and facts.full_price_cents is not None:
        text += " " + _(
            "Invoice {number} stays at full price ({amount}).",
            number=esc(facts.invoice_number),
            amount=format_cents(facts.full_price_cents),
        )
    return text


def requested_thread_text(requested_by: str) -> str:
    return _(
        ":hourglass_flowing_sand: {who} asked for a claim-cap override; "
        "an approver will decide in the approvals channel.",
        who=esc(requested_by),
    )
