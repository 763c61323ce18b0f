"""`/billing <subcommand>`: one slash command whose subcommands live in their own features.

A feature declares a subcommand with `bot.slack.listeners.on_subcommand`, which puts it here
(`add_subcommand(app, name, summary, fn)`); the handler gets a `BillingCall` and must ack
(Slack's 3 seconds) before any slow work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from workflows.i18n import _
from workflows.permissions import Actor


@dataclass(frozen=True)
class BillingCall:
    ack: AsyncAck
    client: AsyncWebClient
    command: dict[str, Any]
    actor: Actor
    args: tuple[str, ...]  # the words after the subcommand's name
    runtime: Runtime

    @property
    def rest(self) -> str:
        return " ".join(self.args)


Handler = Callable[[BillingCall], Awaitable[None]]
_REGISTRY_KEY = "devicecare_billing_subcommands"


def _registry(app: AsyncApp) -> dict[str, tuple[str, Handler]]:
    registry: dict[str, tuple[str, Handler]] | None = getattr(app, _REGISTRY_KEY, None)
    if registry is None:
        registry = {}
        setattr(app, _REGISTRY_KEY, registry)
    return registry


def add_subcommand(app: AsyncApp, name: str, summary: str, handler: Handler) -> None:
    """`/billing <name> …` runs `handler`; `summary` is its line in the usage text."""
    _registry(app)[name] = (summary, handler)


def usage(app: AsyncApp) -> str:
    lines = [
        f"• `/billing {name}` {_(summary)}"
        for name, (summary, _h) in sorted(_registry(app).items())
    ]
    return _("Usage — billing commands:") + "\n" + "\n".join(lines)


def register(app: AsyncApp, runtime: Runtime) -> None:
    @app.command("/billing")
    async def handle_billing_command(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, context: Any
    ) -> None:
        words = (command.get("text") or "").split()
        entry = _registry(app).get(words[0].lower()) if words else None
        if entry is None:
            await ack(response_type="ephemeral", text=usage(app))
            return
        _summary, handler = entry
        await handler(
            BillingCall(ack, client, command, context["actor"], tuple(words[1:]), runtime)
        )
