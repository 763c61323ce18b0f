"""Approval requests in Slack, whatever they approve: the request posted to the approvals channel
with Approve and Deny, the click decided by the workflow (permission checked there, at click
time; first decision wins), a late click told who decided, the post redrawn in place once
decided, and the requester told.

A kind (claim-cap overrides, waivers) is an `ApprovalKind`; `ApprovalFeature` is its listeners
and its outbox deliveries, so a new kind describes itself and writes no listener.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.blocks import Block
from bot.slack.kept_posts import post_and_keep
from bot.slack.listeners import Click, ClickListener, on_click
from bot.slack.metadata import Payload
from storage.models import SlackPost
from storage.uow import SqlUnitOfWork
from workflows.approvals import PENDING, ApprovalRules, Decision, decide
from workflows.errors import ConflictError
from workflows.i18n import _
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

OutboxHandler = Callable[[dict[str, Any]], Awaitable[None]]


class ApprovalsChannelMissing(RuntimeError):
    """SLACK_APPROVALS_CHANNEL isn't set; the request waits in the outbox until it is."""


class ApprovalFacts(Protocol):
    """What the request's post shows; only its status matters here."""

    @property
    def status(self) -> str: ...


F = TypeVar("F", bound=ApprovalFacts)
F_contra = TypeVar("F_contra", bound=ApprovalFacts, contravariant=True)
P = TypeVar("P", bound=Payload)


class RequestMessage(Protocol[F_contra]):
    def __call__(
        self, facts: F_contra, *, secret: Keys, tz: ZoneInfo
    ) -> tuple[str, list[Block]]: ...


@dataclass(frozen=True)
class ApprovalKind(Generic[F, P]):
    """One kind of approval request, as Slack shows and decides it."""

    noun: str  # "override": "That override request can't be decided now."
    what: str  # "claim-cap override": a refusal is logged as "approve a claim-cap override"
    rules: ApprovalRules[Any, Any]  # the workflow's part: permission, statuses, outbox rows
    approve_action: str
    deny_action: str
    ref: type[P]  # the signed value of Approve and Deny
    ref_id: Callable[[P], int]
    post_kind: str  # the `slack_posts` kind of the request's post, redrawn in place
    load_facts: Callable[[SqlUnitOfWork, int], Awaitable[F | None]]
    message: RequestMessage[F]  # the post: Approve / Deny while pending, the decision after
    already_decided: Callable[[F, ZoneInfo], str]
    # Tells the requester of the decision (a DM, a thread message), once per decision.
    tell_requester: Callable[[Runtime, AsyncWebClient, F], Awaitable[None]]
    # More work in the decision's own transaction (e.g. redraw a card that shows the request).
    after_decision: Callable[[SqlUnitOfWork, Decision[Any]], Awaitable[None]] | None = None


class ApprovalFeature(Generic[F, P]):
    """The Approve and Deny listeners of one kind, and its outbox deliveries."""

    def __init__(self, kind: ApprovalKind[F, P], runtime: Runtime) -> None:
        self.kind = kind
        self.runtime = runtime
        # Approve or Deny: the button's action id says which.
        self.decision: ClickListener[P] = on_click(
            (kind.approve_action, kind.deny_action), what=self._what, ref=kind.ref
        )(self.decide)
        self.handle_decision = self.decision.listener(runtime)  # what bolt calls for a click

    @property
    def secret(self) -> Keys:
        return signing_keys(self.runtime.settings)

    @property
    def tz(self) -> ZoneInfo:
        return self.runtime.settings.tz

    def register(self, app: AsyncApp) -> None:
        self.decision.register(app, self.runtime)

    def outbox_handlers(self, client: AsyncWebClient) -> dict[str, OutboxHandler]:
        outbox = self.kind.rules.outbox

        async def requested(payload: dict[str, Any]) -> None:
            await self.deliver_requested(client, payload)

        async def decided(payload: dict[str, Any]) -> None:
            await self.deliver_decided(client, payload)

        return {outbox.requested: requested} | {kind: decided for kind in outbox.decided.values()}

    # --- the click -----------------------------------------------------------------------------

    def _approves(self, action: Mapping[str, Any]) -> bool:
        return action.get("action_id") == self.kind.approve_action

    def _what(self, action: Mapping[str, Any]) -> str:
        return f"{'approve' if self._approves(action) else 'deny'} a {self.kind.what}"

    async def decide(self, click: Click[P]) -> None:
        kind, runtime = self.kind, self.runtime
        request_id = kind.ref_id(click.ref)
        result: Decision[Any] | None = None
        conflict: ConflictError | None = None
        try:
            async with runtime.stores() as store:
                # Permission is checked here, at click time, by the workflow.
                ctx = Context(store, runtime.clock, self.tz)
                approve = self._approves(click.action)
                result = await decide(ctx, click.actor, kind.rules, request_id, approve=approve)
                if result.changed and kind.after_decision is not None:
                    await kind.after_decision(store, result)
                await store.commit()
        except ConflictError as exc:
            conflict = exc  # usually: the other decision won; say who made it, below
        if result is not None and result.changed:
            return  # the post updates in place when the outbox delivers the decision
        async with runtime.reads() as store:
            facts = await kind.load_facts(store, request_id)
        if facts is None or facts.status == PENDING:
            raise conflict or ConflictError(
                _("That {noun} request can't be decided now.", noun=_(kind.noun))
            )
        await click.tell(kind.already_decided(facts, self.tz))

    # --- the outbox ----------------------------------------------------------------------------

    async def _load(self, payload: dict[str, Any]) -> tuple[int, F | None, SlackPost | None]:
        """The request the outbox row is about, its facts, and its post once posted."""
        request_id = int(payload[self.kind.rules.outbox.id_field])
        async with self.runtime.stores() as store:
            facts = await self.kind.load_facts(store, request_id)
            posted = await store.slack_posts.get(self.kind.post_kind, request_id)
            await store.commit()
        return request_id, facts, posted

    async def deliver_requested(self, client: AsyncWebClient, payload: dict[str, Any]) -> None:
        """Post the request, with its facts and Approve / Deny, to the approvals channel."""
        kind, runtime = self.kind, self.runtime
        request_id, facts, posted = await self._load(payload)
        if facts is None:
            return  # what it was about was deleted
        text, blocks = kind.message(facts, secret=self.secret, tz=self.tz)
        if posted is not None:  # a retry after the post went out: refresh it, don't repeat it
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
            return
        channel = runtime.settings.slack_approvals_channel
        if not channel:
            raise ApprovalsChannelMissing(
                f"set SLACK_APPROVALS_CHANNEL to post {kind.noun} requests"
            )
        await post_and_keep(
            runtime, client, kind.post_kind, request_id, channel=channel, text=text, blocks=blocks
        )

    async def deliver_decided(self, client: AsyncWebClient, payload: dict[str, Any]) -> None:
        """The request's post shows the decision in place; then the requester is told."""
        kind, runtime = self.kind, self.runtime
        request_id, facts, posted = await self._load(payload)
        if facts is None:
            return
        if posted is not None:
            text, blocks = kind.message(facts, secret=self.secret, tz=self.tz)
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
        else:
            log.info(
                "%s request %s was decided before its message was posted", kind.noun, request_id
            )
        await kind.tell_requester(runtime, client, facts)
