"""The Slack side every approval kind shares (bot.slack.approvals), shown with a kind that
exists only here. Its listeners are called as bolt calls them, against the fake Slack Web API;
its rows live in memory, its audit entries and posts in the real store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.approval_blocks import decision_actions
from bot.slack.approvals import ApprovalFeature, ApprovalKind, ApprovalsChannelMissing
from bot.slack.blocks import Block
from bot.slack.metadata import Payload, pack
from storage import models as m
from storage.uow import SqlUnitOfWork
from tests.integration.test_approval_rules import LoanBook
from tests.slack.conftest import APPROVALS_CHANNEL, SlackHarness
from workflows.approvals import Decision
from workflows.permissions import Actor

APPROVER, OTHER, CLERK = "U_APPROVER", "U_OTHER", "U_CLERK"


class LoanRef(Payload):
    loan_id: int


@dataclass(frozen=True)
class LoanFacts:
    loan_id: int
    status: str
    decided_by: str | None


class Loans:
    """The made-up kind: what it was asked, and its description for the component."""

    def __init__(self) -> None:
        self.book = LoanBook()
        self.after: list[int] = []
        self.told: list[str] = []

    async def facts(self, store: SqlUnitOfWork, loan_id: int) -> LoanFacts | None:
        loan = self.book.rows.get(loan_id)
        if loan is None:
            return None
        by = (
            None
            if loan.decided_by_id is None
            else await store.people.staff_name(loan.decided_by_id)
        )
        return LoanFacts(loan.id, loan.status, by)

    def kind(self) -> ApprovalKind[LoanFacts, LoanRef]:
        def message(facts: LoanFacts, *, secret: Keys, tz: ZoneInfo) -> tuple[str, list[Block]]:
            text = f"Loan {facts.loan_id}: {facts.status}"
            blocks: list[Block] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            if facts.status == "pending":
                value = pack(LoanRef(loan_id=facts.loan_id), secret)
                blocks.append(decision_actions("loan.actions", "loan.lend", "loan.keep", value))
            return text, blocks

        async def after_decision(store: SqlUnitOfWork, decision: Decision[Any]) -> None:
            self.after.append(decision.request.id)

        async def tell(runtime: Runtime, client: AsyncWebClient, facts: LoanFacts) -> None:
            await client.chat_postMessage(channel=CLERK, text=f"Your loan was {facts.status}.")

        return ApprovalKind(
            noun="loan",
            what="spare-device loan",
            rules=self.book.rules(),
            approve_action="loan.lend",
            deny_action="loan.keep",
            ref=LoanRef,
            ref_id=lambda ref: ref.loan_id,
            post_kind="loan_request",
            load_facts=self.facts,
            message=message,
            already_decided=lambda f, tz: f":lock: Already {f.status} by {f.decided_by}.",
            tell_requester=tell,
            after_decision=after_decision,
        )


class Acks:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, **kwargs: Any) -> None:
        self.count += 1


async def click(
    slack: SlackHarness,
    feature: ApprovalFeature[LoanFacts, LoanRef],
    user: str,
    actor: Actor,
    *,
    approve: bool,
    value: str,
) -> Acks:
    """What bolt does with a click on Approve or Deny: the listener, with its arguments."""
    ack = Acks()
    body = {"user": {"id": user}, "channel": {"id": APPROVALS_CHANNEL}}
    await feature.handle_decision(
        ack=ack,  # type: ignore[arg-type]
        body=body,
        action={"action_id": "loan.lend" if approve else "loan.keep", "value": value},
        client=slack.worker_client,
        context={"actor": actor},  # type: ignore[arg-type]
    )
    return ack


def value(slack: SlackHarness, loan_id: int = 1) -> str:
    return pack(LoanRef(loan_id=loan_id), signing_keys(slack.runtime.settings))


async def test_a_click_decides_once_and_a_late_click_hears_who_did(slack: SlackHarness) -> None:
    loans = Loans()
    feature = ApprovalFeature(loans.kind(), slack.runtime)
    approver = await slack.staff("Finance Director", APPROVER)
    other = await slack.staff("Finance Director", OTHER)

    ack = await click(slack, feature, APPROVER, approver, approve=True, value=value(slack))

    assert ack.count == 1
    assert (loans.book.rows[1].status, loans.after) == ("lent", [1])
    assert slack.fake.calls_to("chat.postEphemeral") == []  # the post itself will say it

    for approve in (False, True):
        await click(slack, feature, OTHER, other, approve=approve, value=value(slack))
    said = [c.args for c in slack.fake.calls_to("chat.postEphemeral")]
    assert [(s["user"], s["text"]) for s in said] == [
        (OTHER, ":lock: Already lent by Finance Director Person."),
    ] * 2
    assert (loans.book.rows[1].decided_by_id, loans.after) == (approver.staff_id, [1])


async def test_a_click_without_the_permission_changes_nothing(slack: SlackHarness) -> None:
    loans = Loans()
    feature = ApprovalFeature(loans.kind(), slack.runtime)
    clerk = await slack.staff("Billing Clerk", CLERK)

    await click(slack, feature, CLERK, clerk, approve=True, value=value(slack))

    assert loans.book.rows[1].status == "pending" and loans.after == []
    [said] = slack.fake.calls_to("chat.postEphemeral")
    assert said.args["user"] == CLERK and said.args["text"].startswith(":warning: ")
    async with slack.runtime.stores() as store:
        [refused] = (
            await store.session.execute(
                select(m.ActivityEntry).where(m.ActivityEntry.action == "refused")
            )
        ).scalars()
        await store.commit()
    assert refused.comment is not None and refused.comment.startswith(
        "approve a spare-device loan: "
    )


async def test_a_forged_or_unknown_request_is_refused(slack: SlackHarness) -> None:
    loans = Loans()
    feature = ApprovalFeature(loans.kind(), slack.runtime)
    approver = await slack.staff("Finance Director", APPROVER)

    await click(slack, feature, APPROVER, approver, approve=True, value="v1.LoanRef.e30.forged")
    await click(slack, feature, APPROVER, approver, approve=False, value=value(slack, 99))

    said = [c.args["text"] for c in slack.fake.calls_to("chat.postEphemeral")]
    assert said[0].startswith(":warning: That button or form didn't come from DeviceCare")
    assert said[1] == ":warning: That loan request doesn't exist."
    assert loans.book.rows[1].status == "pending"


async def test_the_post_is_made_once_then_redrawn_in_place(slack: SlackHarness) -> None:
    loans = Loans()
    feature = ApprovalFeature(loans.kind(), slack.runtime)
    handlers = feature.outbox_handlers(slack.worker_client)
    assert set(handlers) == {"slack.loan_requested", "slack.loan_decided"}
    approver = await slack.staff("Finance Director", APPROVER)

    await handlers["slack.loan_requested"]({"loan_id": 1})
    await handlers["slack.loan_requested"]({"loan_id": 1})  # a retry after the post went out
    [posted] = slack.fake.calls_to("chat.postMessage")
    assert (posted.args["channel"], posted.args["text"]) == (APPROVALS_CHANNEL, "Loan 1: pending")
    assert len(slack.fake.calls_to("chat.update")) == 1

    await click(slack, feature, APPROVER, approver, approve=False, value=value(slack))
    await handlers["slack.loan_decided"]({"loan_id": 1})

    redrawn = slack.fake.calls_to("chat.update")[-1].args
    assert redrawn["text"] == "Loan 1: refused" and "loan.lend" not in str(redrawn["blocks"])
    told = [c.args for c in slack.fake.calls_to("chat.postMessage")][1:]
    assert [(t["channel"], t["text"]) for t in told] == [(CLERK, "Your loan was refused.")]


async def test_without_an_approvals_channel_the_request_waits(slack: SlackHarness) -> None:
    loans = Loans()
    unset = slack.runtime.settings.model_copy(update={"slack_approvals_channel": None})
    feature = ApprovalFeature(loans.kind(), replace(slack.runtime, settings=unset))

    with pytest.raises(ApprovalsChannelMissing, match="to post loan requests"):
        await feature.deliver_requested(slack.worker_client, {"loan_id": 1})
    assert slack.fake.calls_to("chat.postMessage") == []
