"""Block Kit every approval request shares: Approve and Deny under a pending request."""

from __future__ import annotations

from bot.slack.blocks import Block, button
from workflows.i18n import _


def decision_actions(
    block_id: str | None, approve_action: str, deny_action: str, value: str
) -> Block:
    """Both buttons carry the request's signed ref; the action says which decision it is."""
    block: Block = {
        "type": "actions",
        "elements": [
            button(_("Approve"), approve_action, value, style="primary"),
            button(_("Deny"), deny_action, value, style="danger"),
        ],
    }
    if block_id is not None:
        block["block_id"] = block_id
    return block
