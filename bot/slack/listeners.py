"""What every Slack listener used to open with, done once: the ack, who is acting, the signed
ref a button or a form carries, the form's values, domain errors as field errors, refusals
logged. A listener's body is then only its business logic.

    @on_click(WaiverAction.OPEN_REFUND, what="open the refund form", ref=InvoiceAdjust)
    async def handle_open_refund(click: Click[InvoiceAdjust]) -> None:
        ...

    refund_form = ModalForm(WaiverView.REFUND, meta=RefundModal, what="refund a payment", ...)

    @refund_form.check      # before the ack: read and check, write nothing
    async def check_refund(form: Submitted[RefundModal]) -> RefundPayment: ...

    @refund_form.write      # after the ack (a lazy listener): the write and the answer
    async def refund_submitted(form: Submitted[RefundModal], command: RefundPayment) -> None: ...

    def register(app, runtime):
        wire(app, runtime, handle_open_refund, refund_form)

A click is acked first; a forged or expired ref, a refused permission or a broken rule then
reaches the person as today (`reported`) and changes nothing. A submission is checked before
its ack so errors show next to their fields, and written after it by a lazy listener.
"""

from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.blocks import Block, form_values
from bot.slack.errors import (
    FormErrors,
    after_ack,
    modal_errors,
    record_refusal,
    reported,
    tell_user,
)
from bot.slack.metadata import ForgedPayload, Payload, unpack
from storage.uow import SqlUnitOfWork
from workflows.errors import DomainError, PermissionDenied
from workflows.permissions import Actor
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

R = TypeVar("R", bound=Payload | None)
M = TypeVar("M", bound=Payload)
C = TypeVar("C")

# Where a click's signed ref is: most buttons carry it as their value; a section's controls
# sign their block id; an input inside a modal finds it in the modal's private_metadata.
RefSource = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


def in_value(body: Mapping[str, Any], action: Mapping[str, Any]) -> Any:
    return action.get("value")


def in_block_id(body: Mapping[str, Any], action: Mapping[str, Any]) -> Any:
    return action.get("block_id")


def in_view_metadata(body: Mapping[str, Any], action: Mapping[str, Any]) -> Any:
    return (body.get("view") or {}).get("private_metadata")


@dataclass(frozen=True)
class Slack:
    """What a listener works with: the app's runtime, the Web API, the request and its actor."""

    runtime: Runtime
    client: AsyncWebClient
    body: dict[str, Any]
    actor: Actor
    keys: Keys

    @property
    def tz(self) -> ZoneInfo:
        return self.runtime.settings.tz

    def context(self, store: SqlUnitOfWork) -> Context:
        """The workflows' context for `store`, with the runtime's clock and the district's zone."""
        return Context(store, self.runtime.clock, self.tz)

    async def tell(self, text: str) -> None:
        """An ephemeral message where the person is (a DM from a modal)."""
        await tell_user(self.client, self.body, text)

    async def open_view(self, view: Block) -> None:
        await self.client.views_open(trigger_id=self.body["trigger_id"], view=view)


@dataclass(frozen=True)
class Click(Slack, Generic[R]):
    """A click (a block action), already acked, with the ref it carried, verified."""

    action: dict[str, Any]
    ref: R  # None for a click that carries no ref


@dataclass(frozen=True)
class Submitted(Slack, Generic[M]):
    """A modal's submission, with its private_metadata verified and its input values."""

    view: dict[str, Any]
    meta: M

    @property
    def values(self) -> Mapping[str, Any]:
        return form_values(self.view)

    @property
    def idempotency_key(self) -> str:
        """Slack keeps a view's id for the modal's life: a redelivered submission finds what
        the first one made instead of making another."""
        return f"slack:view:{self.view['id']}"

    async def show(self, view: Block, about: str) -> None:
        """The modal's final answer; when it was closed meanwhile the thread says it."""
        try:
            await self.client.views_update(view_id=self.view["id"], view=view)
        except SlackApiError as exc:
            log.info("%s: modal not updated (%s)", about, exc)


class Answer(Exception, metaclass=ABCMeta):
    """A submission answered otherwise than by its field errors or the working view (e.g. a
    warning that re-renders the modal). Raised by a check; the ack sends `response()`."""

    @abstractmethod
    async def response(self) -> dict[str, Any]: ...


def field_errors(
    exc: DomainError,
    view: Mapping[str, Any],
    fields: Mapping[str, str],
    default: str,
    *,
    shown_only: bool = True,
) -> dict[str, str]:
    """The message next to the input it is about; a rule about no input puts it on `default`,
    and so does (with `shown_only`) an input this view doesn't show: Slack would refuse it."""
    errors = modal_errors(exc, fields, default)
    if not shown_only:  # a form whose every field input is always shown
        return errors
    present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    return {(block if block in present else default): text for block, text in errors.items()}


# --- clicks ------------------------------------------------------------------------------------


class ClickHandler(Protocol[R]):
    def __call__(self, click: Click[R], /) -> Awaitable[None]: ...


@dataclass(frozen=True)
class ClickListener(Generic[R]):
    action_ids: tuple[str, ...]
    what: Callable[[Mapping[str, Any]], str]  # "open the waiver form": told and logged
    ref: type[Payload] | None
    ref_from: RefSource
    handler: ClickHandler[R]

    async def __call__(self, click: Click[R]) -> None:
        await self.handler(click)

    def listener(self, runtime: Runtime) -> Callable[..., Awaitable[None]]:
        keys = signing_keys(runtime.settings)

        async def listener(
            ack: AsyncAck,
            body: dict[str, Any],
            action: dict[str, Any],
            client: AsyncWebClient,
            context: AsyncBoltContext,
        ) -> None:
            await ack()
            actor: Actor = context["actor"]
            async with reported(runtime, client, body, self.what(action), actor):
                source = self.ref_from(body, action)
                ref = None if self.ref is None else unpack(self.ref, source, keys)
                click = Click(runtime, client, body, actor, keys, action, cast(R, ref))
                await self.handler(click)

        listener.__name__ = getattr(self.handler, "__name__", "click")
        return listener

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        listener = self.listener(runtime)
        for action_id in self.action_ids:
            app.action(action_id)(listener)


def on_click(
    action_ids: str | Iterable[str],
    *,
    what: str | Callable[[Mapping[str, Any]], str],
    ref: type[R] | None = None,
    ref_from: RefSource = in_value,
) -> Callable[[ClickHandler[R]], ClickListener[R]]:
    """A click listener: acked at once, then `what` the person did is carried out as the
    clicking actor, with the click's signed ref unpacked (a forged one is refused, logged and
    told, and nothing runs). Domain errors reach the person as a warning."""
    ids = (action_ids,) if isinstance(action_ids, str) else tuple(action_ids)
    describe = what if callable(what) else (lambda _action: what)

    def wrap(handler: ClickHandler[R]) -> ClickListener[R]:
        return ClickListener(ids, describe, cast("type[Payload] | None", ref), ref_from, handler)

    return wrap


# --- modal submissions -------------------------------------------------------------------------


Check = Callable[[Submitted[M]], Awaitable[C]]
Write = Callable[[Submitted[M], C], Awaitable[None]]


class ModalForm(Generic[M, C]):
    """One modal's submission. `check` reads and checks the form without writing; it runs
    before the ack, so its errors show next to their fields (a forged private_metadata, a
    refused permission: logged as refusals). `write` runs after the ack, as a lazy listener,
    with what `check` returned; what it raises reaches the person (`after_ack`)."""

    def __init__(
        self,
        callback_id: str,
        *,
        meta: type[M],
        what: str,  # "refund a payment": the refusal's log line
        doing: str,  # "refund the payment": "Couldn't refund the payment: …"
        fields: Mapping[str, str] | Callable[[str | None], str],  # a rule's field -> block
        default_field: str = "",  # with a mapping: where a rule about no field goes
        working: Callable[[], Block] | None = None,  # the view the ack shows while writing
        clear: bool = False,  # or: the ack closes the modal
        shown_only: bool = True,  # see field_errors
        reply_to: Callable[[Submitted[M]], Mapping[str, Any]] | None = None,
    ) -> None:
        self.callback_id = callback_id
        self.meta = meta
        self.what = what
        self.doing = doing
        self.fields = fields
        self.default_field = default_field
        self.working = working
        self.clear = clear
        self.shown_only = shown_only
        # Where a failure after the ack is told; by default the submitter, by DM.
        self.reply_to = reply_to
        self._check: Check[M, C] | None = None
        self._write: Write[M, C] | None = None

    def check(self, fn: Check[M, C]) -> Check[M, C]:
        self._check = fn
        return fn

    def write(self, fn: Write[M, C]) -> Write[M, C]:
        self._write = fn
        return fn

    async def checked(
        self, runtime: Runtime, client: AsyncWebClient, body: dict[str, Any], actor: Actor
    ) -> tuple[Submitted[M], C]:
        assert self._check is not None, f"{self.callback_id} has no check"
        keys = signing_keys(runtime.settings)
        view: dict[str, Any] = body.get("view") or {}
        meta = unpack(self.meta, view.get("private_metadata"), keys)
        form = Submitted(runtime, client, body, actor, keys, view, meta)
        return form, await self._check(form)

    def errors(self, exc: DomainError, body: Mapping[str, Any]) -> dict[str, str]:
        if callable(self.fields):
            return {self.fields(exc.field): exc.message}
        view = body.get("view") or {}
        return field_errors(exc, view, self.fields, self.default_field, shown_only=self.shown_only)

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        assert self._write is not None, f"{self.callback_id} has no write"
        write = self._write

        async def answer(
            ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
        ) -> None:
            actor: Actor = context["actor"]
            try:
                await self.checked(runtime, client, body, actor)
            except FormErrors as exc:
                await ack(response_action="errors", errors=exc.errors)
                return
            except Answer as exc:
                await ack(**await exc.response())
                return
            except DomainError as exc:
                if isinstance(exc, PermissionDenied | ForgedPayload):
                    # Kept before the answer, so a refusal the person sees is already on
                    # record; a store that can't take it must not cost them the answer.
                    try:
                        await record_refusal(runtime, actor, self.what, exc.message)
                    except Exception:  # noqa: BLE001 - logged; the answer still goes out
                        log.exception("couldn't record the refusal to %s", self.what)
                await ack(response_action="errors", errors=self.errors(exc, body))
                return
            if self.clear:
                await ack(response_action="clear")
            elif self.working is None:
                await ack()
            else:
                await ack(response_action="update", view=self.working())

        async def written(
            body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
        ) -> None:
            actor: Actor = context["actor"]
            try:
                form, command = await self.checked(runtime, client, body, actor)
            except (DomainError, FormErrors, Answer):
                return  # answered with the errors next to their fields
            where = body if self.reply_to is None else self.reply_to(form)
            async with after_ack(runtime, client, where, self.doing, actor):
                await write(form, command)

        answer.__name__ = f"answer_{self.callback_id}"
        written.__name__ = getattr(write, "__name__", f"write_{self.callback_id}")
        app.view(self.callback_id)(ack=answer, lazy=[written])


class Registers(Protocol):
    def register(self, app: AsyncApp, runtime: Runtime) -> None: ...


def wire(app: AsyncApp, runtime: Runtime, *listeners: Registers) -> None:
    """A feature's register(): its module-level listeners, put on the app."""
    for listener in listeners:
        listener.register(app, runtime)
