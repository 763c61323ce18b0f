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

Shortcuts (`on_shortcut`) run as clicks do. A slash command (`on_command`, or `on_subcommand`
for `/billing <name>`) answers in its ack or acks before slow work; a refusal raised before the
ack is the ack's answer, logged. A `ModalStep` is a modal whose ack draws its next view (a
look-up, or one short write), its errors by their fields or as another view.
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
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.blocks import Block, form_values
from bot.slack.errors import (
    FormErrors,
    after_ack,
    is_refusal,
    modal_errors,
    record_refusal,
    reported,
    tell_user,
)
from bot.slack.metadata import Payload, unpack
from storage.uow import SqlUnitOfWork
from workflows.errors import DomainError, PermissionDenied
from workflows.i18n import _
from workflows.permissions import Actor, Permission, permission_label
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

R = TypeVar("R", bound=Payload | None)
M = TypeVar("M", bound=Payload)
C = TypeVar("C")
T = TypeVar("T")
# A workflow's check of a command, which reads and raises but never writes.
Rule = Callable[[Context, Actor, T], Awaitable[object]]

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

    async def checked_by(self, rule: Rule[T], command: T) -> T:
        """`command`, once the workflow's read-only `rule` passes it (or raises what it breaks),
        in a read snapshot: no waiting on writers before the ack."""
        async with self.runtime.reads() as store:
            await rule(self.context(store), self.actor, command)
        return command

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


async def refusal_kept(runtime: Runtime, actor: Actor, what: str, exc: DomainError) -> None:
    """A refusal answered in the ack is on record before the answer goes out, so a refusal the
    person sees is already kept; a store that can't take it must not cost them the answer."""
    if not is_refusal(exc):
        return
    try:
        await record_refusal(runtime, actor, what, exc.message)
    except Exception:  # noqa: BLE001 - logged; the answer still goes out
        log.exception("couldn't record the refusal to %s", what)


async def redraw(
    client: AsyncWebClient, view: Mapping[str, Any], new_view: Block, about: str
) -> None:
    """`new_view` over the modal `view`, unless the modal changed meanwhile (Slack compares the
    hash): what the person did since wins."""
    try:
        await client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        if exc.response.get("error") != "hash_conflict":
            raise
        log.info("%s: the modal changed meanwhile; not redrawn", about)


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


# --- shortcuts ---------------------------------------------------------------------------------


ShortcutHandler = Callable[[Slack], Awaitable[None]]


@dataclass(frozen=True)
class ShortcutListener:
    callback_ids: tuple[str, ...]
    what: str
    handler: ShortcutHandler

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        keys = signing_keys(runtime.settings)

        async def listener(
            ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
        ) -> None:
            await ack()
            actor: Actor = context["actor"]
            async with reported(runtime, client, body, self.what, actor):
                await self.handler(Slack(runtime, client, body, actor, keys))

        listener.__name__ = getattr(self.handler, "__name__", "shortcut")
        for callback_id in self.callback_ids:
            app.shortcut(callback_id)(listener)


def on_shortcut(
    callback_ids: str | Iterable[str], *, what: str
) -> Callable[[ShortcutHandler], ShortcutListener]:
    """A global or message shortcut: acked at once, then run as a click is (`on_click`); the
    shortcut's payload is the listener's `body`."""
    ids = (callback_ids,) if isinstance(callback_ids, str) else tuple(callback_ids)

    def wrap(handler: ShortcutHandler) -> ShortcutListener:
        return ShortcutListener(ids, what, handler)

    return wrap


# --- slash commands ----------------------------------------------------------------------------


class _Ack:
    """Slack's ack, remembering whether it was sent: a command answers in it or after it."""

    def __init__(self, ack: AsyncAck) -> None:
        self._ack = ack
        self.sent = False

    async def __call__(self, **response: Any) -> None:
        self.sent = True
        await self._ack(**response)


@dataclass(frozen=True)
class Command(Slack):
    """A slash command (or a `/billing` subcommand), not yet acked: the handler answers in the
    ack (`ack(text)`) or acks (`ack()`) before slow work; its words are `args`."""

    answered: _Ack
    args: tuple[str, ...]

    async def ack(self, text: str | None = None, **response: Any) -> None:
        """The ack; with `text`, an ephemeral answer in it."""
        if text is not None:
            response = {"response_type": "ephemeral", "text": text, **response}
        await self.answered(**response)


CommandHandler = Callable[[Command], Awaitable[None]]


@dataclass(frozen=True)
class CommandListener:
    """What a command is, apart from where Slack sends it (`on_command`, `on_subcommand`)."""

    what: str  # "/billing pause": logged with a refusal, and named by a `needs` refusal
    refusal: str  # the ack's text for a refusal, around the reason: ":no_entry: {}"
    needs: Permission | None
    handler: CommandHandler
    denied: str | None = None  # a `needs` refusal's reason; by default "`what` needs the …"
    # The ack's text for any other domain error, around it; or what makes that text of it.
    warning: str | Callable[[str], str] = ":warning: {}"

    def require(self, actor: Actor) -> None:
        if self.needs is not None and not actor.can(self.needs):
            label = permission_label(self.needs)
            raise PermissionDenied(
                _(self.denied)
                if self.denied
                else _(
                    "`{command}` needs the {permission} permission.",
                    command=self.what,
                    permission=label,
                )
            )

    async def run(
        self,
        runtime: Runtime,
        ack: AsyncAck,
        client: AsyncWebClient,
        body: dict[str, Any],
        actor: Actor,
        args: tuple[str, ...],
    ) -> None:
        answered = _Ack(ack)
        keys = signing_keys(runtime.settings)
        command = Command(runtime, client, body, actor, keys, answered, args)
        async with reported(runtime, client, body, self.what, actor):
            try:
                self.require(actor)
                await self.handler(command)
            except DomainError as exc:
                if answered.sent:
                    raise  # after the ack: told by `reported`
                await refusal_kept(runtime, actor, self.what, exc)
                template = self.refusal if is_refusal(exc) else self.warning
                if callable(template):
                    await command.ack(template(exc.message))
                else:
                    await command.ack(_(template).format(exc.message))


def _words(text: object) -> tuple[str, ...]:
    return tuple(str(text or "").split())


@dataclass(frozen=True)
class SlashCommand:
    name: str
    listener: CommandListener

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        async def listener(
            ack: AsyncAck,
            command: dict[str, Any],
            client: AsyncWebClient,
            context: AsyncBoltContext,
        ) -> None:
            words = _words(command.get("text"))
            await self.listener.run(runtime, ack, client, command, context["actor"], words)

        listener.__name__ = getattr(self.listener.handler, "__name__", "command")
        app.command(self.name)(listener)


@dataclass(frozen=True)
class BillingSubcommand:
    name: str
    summary: str
    listener: CommandListener

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        async def handler(call: BillingCall) -> None:
            await self.listener.run(
                runtime, call.ack, call.client, call.command, call.actor, call.args
            )

        add_subcommand(app, self.name, self.summary, handler)


def on_command(
    name: str,
    *,
    what: str,
    refusal: str = ":no_entry: {}",
    needs: Permission | None = None,
    denied: str | None = None,
    warning: str | Callable[[str], str] = ":warning: {}",
) -> Callable[[CommandHandler], SlashCommand]:
    """A slash command. Its handler acks, answering in the ack or before slow work; a refusal
    raised before the ack is the ack's answer (`refusal`, around the reason) and is logged, a
    domain error after it reaches the person as a click's does. With `needs`, anyone without
    that permission is refused before the handler runs (`denied` is the reason, when the
    command words it its own way). Any other domain error raised before the ack (e.g. words
    it can't read) is the ack's answer too, `warning` around its message."""

    def wrap(handler: CommandHandler) -> SlashCommand:
        listener = CommandListener(what, refusal, needs, handler, denied, warning)
        return SlashCommand(name, listener)

    return wrap


def on_subcommand(
    name: str,
    summary: str,
    *,
    what: str,
    refusal: str = ":no_entry: {}",
    needs: Permission | None = None,
    denied: str | None = None,
    warning: str | Callable[[str], str] = ":warning: {}",
) -> Callable[[CommandHandler], BillingSubcommand]:
    """`/billing <name> …`, as `on_command`; `summary` is its line in `/billing`'s usage and
    `args` are the words after `name`."""

    def wrap(handler: CommandHandler) -> BillingSubcommand:
        listener = CommandListener(what, refusal, needs, handler, denied, warning)
        return BillingSubcommand(name, summary, listener)

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
        # "refund the payment": "Couldn't refund the payment: …"; None: a failure after the
        # ack is told as a click's is (`reported`), under `what`
        doing: str | None,
        fields: Mapping[str, str] | Callable[[str | None], str],  # a rule's field -> block
        default_field: str = "",  # with a mapping: where a rule about no field goes
        working: Callable[[Submitted[M]], Block] | None = None,  # the ack's view while writing
        clear: bool = False,  # or: the ack closes the modal
        shown_only: bool = True,  # see field_errors
        reply_to: Callable[[Submitted[M]], Mapping[str, Any]] | None = None,
        # With a mapping: a rule about none of its fields closes the modal instead, and the
        # person is told `apart` around the reason (":warning: {} Nothing was changed.").
        apart: str | None = None,
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
        self.apart = apart
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

    def told_apart(self, exc: DomainError) -> str | None:
        """What the person is told, by message, of a rule about none of the form's fields."""
        if self.apart is None or callable(self.fields) or exc.field in self.fields:
            return None
        return _(self.apart).format(exc.message)

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
                form, _command = await self.checked(runtime, client, body, actor)
            except FormErrors as exc:
                await ack(response_action="errors", errors=exc.errors)
                return
            except Answer as exc:
                await ack(**await exc.response())
                return
            except DomainError as exc:
                await refusal_kept(runtime, actor, self.what, exc)
                apart = self.told_apart(exc)
                if apart is not None:
                    await ack()
                    await tell_user(client, body, apart)
                    return
                await ack(response_action="errors", errors=self.errors(exc, body))
                return
            if self.clear:
                await ack(response_action="clear")
            elif self.working is None:
                await ack()
            else:
                await ack(response_action="update", view=self.working(form))

        async def written(
            body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
        ) -> None:
            actor: Actor = context["actor"]
            try:
                form, command = await self.checked(runtime, client, body, actor)
            except (DomainError, FormErrors, Answer):
                return  # answered with the errors next to their fields
            where = body if self.reply_to is None else self.reply_to(form)
            if self.doing is None:
                told = reported(runtime, client, where, self.what, actor)
            else:
                told = after_ack(runtime, client, where, self.doing, actor)
            async with told:
                await write(form, command)

        answer.__name__ = f"answer_{self.callback_id}"
        written.__name__ = getattr(write, "__name__", f"write_{self.callback_id}")
        app.view(self.callback_id)(ack=answer, lazy=[written])


# --- modal steps -------------------------------------------------------------------------------


StepRefused = Callable[[Slack, Mapping[str, Any], M | None, DomainError], dict[str, Any]]
StepAnswer = Callable[[Submitted[M]], Awaitable[Block]]


class ModalStep(Generic[M]):
    """A modal whose ack draws its next view: a look-up, or a write short enough for Slack's
    3 seconds (one row). A domain error, a forged private_metadata (`meta` None) included, is
    logged where it is a refusal and answered by `refused`: field errors, or another view."""

    def __init__(
        self, callback_id: str, *, meta: type[M], what: str, refused: StepRefused[M]
    ) -> None:
        self.callback_id = callback_id
        self.meta = meta
        self.what = what
        self.refused = refused
        self._answer: StepAnswer[M] | None = None

    def answer(self, fn: StepAnswer[M]) -> StepAnswer[M]:
        self._answer = fn
        return fn

    def register(self, app: AsyncApp, runtime: Runtime) -> None:
        assert self._answer is not None, f"{self.callback_id} has no answer"
        answer = self._answer
        keys = signing_keys(runtime.settings)

        async def listener(
            ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
        ) -> None:
            actor: Actor = context["actor"]
            view: dict[str, Any] = body.get("view") or {}
            meta: M | None = None
            try:
                meta = unpack(self.meta, view.get("private_metadata"), keys)
                form = Submitted(runtime, client, body, actor, keys, view, meta)
                next_view = await answer(form)
            except DomainError as exc:
                await refusal_kept(runtime, actor, self.what, exc)
                slack = Slack(runtime, client, body, actor, keys)
                await ack(**self.refused(slack, view, meta, exc))
                return
            await ack(response_action="update", view=next_view)

        listener.__name__ = getattr(answer, "__name__", f"answer_{self.callback_id}")
        app.view(self.callback_id)(listener)


class Registers(Protocol):
    def register(self, app: AsyncApp, runtime: Runtime) -> None: ...


def wire(app: AsyncApp, runtime: Runtime, *listeners: Registers) -> None:
    """A feature's register(): its module-level listeners, put on the app."""
    for listener in listeners:
        listener.register(app, runtime)
