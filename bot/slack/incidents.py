"""Slack listeners for damage incidents: /incident, the "Open damage incident" shortcut, the
device type-ahead, the incident card (posted and updated through the outbox), the card's
actions, and photos dropped into the card's thread.

Handlers stay thin: ack, parse into a typed command, run the workflow in one transaction with
the card refresh queued in it, render. Permissions are the workflows' to check, at click time.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import date
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.actors import not_set_up_text, resolve_actor
from bot.slack.blocks import fmt_when
from bot.slack.cards import INCIDENT_CARD, queue_incident_card, queue_thread_message
from bot.slack.channel_errors import channel_error, give_up_on_channel
from bot.slack.errors import after_ack, modal_errors, record_refusal, reported, tell_user
from bot.slack.ids import IncidentAction, IncidentRef, SlackPostKind
from bot.slack.incident_blocks import (
    INCIDENT_COMMAND,
    NEW_INCIDENT_ERROR_BLOCKS,
    USAGE,
    CardInvoice,
    IncidentCard,
    IncidentField,
    IncidentShortcut,
    IncidentView,
    NewIncidentMeta,
    build_incident_card_message,
    build_incident_opened_modal,
    build_new_incident_modal,
    build_note_modal,
    build_photos_modal,
    build_status_modal,
    device_option,
    escape_mrkdwn,
    quote_mrkdwn,
    student_line,
    unescape_message_text,
)
from bot.slack.invoice_blocks import override_can_be_requested
from bot.slack.metadata import ForgedPayload, pack, unpack
from bot.slack.photo_lines import load_photo_urls
from bot.slack.photos import SlackFileRef, attach_slack_files, files_from_event, files_from_state
from storage.notice_queries import invoice_delivery_line
from storage.uow import SqlUnitOfWork
from workflows.clock import local_date
from workflows.errors import DomainError, InvalidTransition, NotFound, PermissionDenied
from workflows.errors import ValidationError as InputError
from workflows.incident_status import IncidentStatus, may_use, next_statuses, parse_status
from workflows.incidents import (
    OpenIncident,
    add_incident_note,
    change_incident_status,
    check_new_incident,
    check_note,
    end_of_local_day,
    incident_coverage_badge,
    open_incident,
    restricted_statuses,
)
from workflows.invoice_audit import load_invoice_audit
from workflows.invoices import InvoiceStatus
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

_NUMBER_RE = re.compile(r"#?([0-9]{1,12})")


# --- parsing ----------------------------------------------------------------------------------


def _state(view: Mapping[str, Any], field: IncidentField) -> dict[str, Any]:
    values = (view.get("state") or {}).get("values") or {}
    return (values.get(field) or {}).get(field) or {}


def parse_new_incident(view: Mapping[str, Any], meta: NewIncidentMeta) -> OpenIncident:
    """The new-incident modal's state as a command; the workflow checks the rules."""
    option = _state(view, IncidentField.DEVICE).get("selected_option") or {}
    value = str(option.get("value") or "")
    if not _is_id(value):
        raise InputError("Pick the device.", field="device")
    device_id = int(value)
    flags = tuple(
        str(o.get("value", ""))
        for o in _state(view, IncidentField.FLAGS).get("selected_options") or []
    )
    try:
        occurred_on = date.fromisoformat(_state(view, IncidentField.OCCURRED_ON)["selected_date"])
    except (KeyError, TypeError, ValueError):
        raise InputError("Pick the date it happened.", field="occurred_on") from None
    description = _state(view, IncidentField.DESCRIPTION).get("value") or ""
    return OpenIncident(
        device_id=device_id,
        occurred_on=occurred_on,
        flags=flags,
        description=description,
        ticket_ref=meta.ticket_ref,
        idempotency_key=f"slack:view:{view['id']}",
    )


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 12


def parse_incident_number(text: str) -> int | None:
    match = _NUMBER_RE.fullmatch(text.strip())
    return int(match.group(1)) if match else None


def status_choices(
    actor: Actor, current: IncidentStatus, restricted: frozenset[str]
) -> list[IncidentStatus]:
    """What this user may pick: statuses their role may use, and that they may set at all
    (a restricted status granted to a role needs no Manage Incidents; the rest do)."""
    manages = actor.can(Permission.MANAGE_INCIDENTS)
    return [
        s
        for s in next_statuses(actor, current, restricted)
        if manages or (s.value in restricted and s.value in actor.allowed_statuses)
    ]


# --- reading the card ---------------------------------------------------------------------------


async def load_incident_card(
    ctx: Context, store: SqlUnitOfWork, incident_id: int, *, runtime: Runtime | None = None
) -> IncidentCard | None:
    """The card as of now; with `runtime`, its photos are linked (bot.slack.photo_lines)."""
    incident = await store.incidents.get(incident_id)
    if incident is None:
        return None
    device = await store.devices.get(incident.device_id)
    assert device is not None  # incidents.device_id is a RESTRICT foreign key
    student = (
        None if incident.student_id is None else await store.people.student(incident.student_id)
    )
    building_id = (student.building_id if student else None) or device.building_id
    building = None if building_id is None else await store.devices.building(building_id)
    reporter = (
        None
        if incident.reported_by_id is None
        else await store.people.staff_name(incident.reported_by_id)
    )
    invoices = await store.invoices.for_incident(incident.id)
    offender: list[str] = []
    if student is not None:
        for badge in await store.student_flags.for_student(student.id):
            if badge.flag not in offender:
                offender.append(badge.flag)
    return IncidentCard(
        incident_id=incident.id,
        status=IncidentStatus(incident.status),
        occurred_on=incident.occurred_on,
        flags=tuple(incident.flag_names),
        description=incident.description,
        device_serial=device.serial,
        device_asset_tag=device.asset_tag,
        device_model=device.model,
        student_name=None if student is None else student.full_name,
        student_grade=None if student is None else student.grade,
        building=None if building is None else building.name,
        reported_by=reporter,
        coverage=await incident_coverage_badge(ctx, incident.id),
        offender_flags=tuple(offender),
        photo_count=await store.incidents.photo_count(incident.id),
        photo_urls=tuple(
            []
            if runtime is None
            else await load_photo_urls(runtime, store, incident_id=incident.id)
        ),
        note_count=await store.incidents.note_count(incident.id),
        ticket_ref=incident.ticket_ref,
        invoices=tuple(
            [
                CardInvoice(
                    number=invoice.number,
                    status_label=InvoiceStatus(invoice.status).label,
                    audit=await load_invoice_audit(store, invoice, tz=ctx.tz),
                    as_of=fmt_when(ctx.now(), ctx.tz),
                    delivery=await invoice_delivery_line(store.session, invoice.id, ctx.tz),
                )
                for invoice in invoices
            ]
        ),
        override_requestable=any(override_can_be_requested(i) for i in invoices)
        and await store.insurance.pending_override_for(incident.id) is None,
    )


# --- the feature ---------------------------------------------------------------------------------


SETTINGS_CACHE_SECONDS = 5.0
# Slack shows at most 100 options in an external select.
MAX_OPTIONS = 100


class IncidentFeature:
    """The listeners, with the runtime they work against."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._restricted: tuple[float, frozenset[str]] | None = None

    async def restricted(self) -> frozenset[str]:
        """The district's restricted statuses, cached briefly: every status change checks them
        before its ack, and a settings change reaching Slack within seconds is enough."""
        cached = self._restricted
        now = time.monotonic()
        if cached is None or cached[0] < now:
            async with self.runtime.reads() as store:
                cached = (
                    now + SETTINGS_CACHE_SECONDS,
                    restricted_statuses(await store.settings.get()),
                )
            self._restricted = cached
        return cached[1]

    @property
    def secret(self) -> Keys:
        return signing_keys(self.runtime.settings)

    def context(self, store: SqlUnitOfWork) -> Context:
        return Context(store, self.runtime.clock, self.runtime.settings.tz)

    def today(self) -> date:
        return local_date(self.runtime.clock.now(), self.runtime.settings.tz)

    def register(self, app: AsyncApp) -> None:
        app.command(INCIDENT_COMMAND)(self.handle_incident_command)
        app.shortcut(IncidentShortcut.OPEN_FROM_MESSAGE.value)(self.handle_incident_shortcut)
        app.shortcut(IncidentShortcut.NEW.value)(self.handle_incident_shortcut)
        app.options(IncidentField.DEVICE.value)(self.handle_device_options)
        app.action(IncidentField.DEVICE.value)(self.handle_device_selected)
        app.view(IncidentView.NEW.value)(
            ack=self.handle_new_incident_submission, lazy=[self.open_submitted_incident]
        )
        app.action(IncidentAction.CHANGE_STATUS.value)(self.handle_change_status_click)
        app.view(IncidentView.CHANGE_STATUS.value)(self.handle_status_submission)
        app.action(IncidentAction.ADD_NOTE.value)(self.handle_add_note_click)
        app.view(IncidentView.ADD_NOTE.value)(
            ack=self.handle_note_submission, lazy=[self.add_submitted_note]
        )
        app.action(IncidentAction.ADD_PHOTOS.value)(self.handle_add_photos_click)
        app.view(IncidentView.ADD_PHOTOS.value)(self.handle_photos_submission)
        app.action(IncidentAction.CLOSE.value)(self.handle_close_click)
        app.event({"type": "message", "subtype": "file_share"})(self.handle_thread_photos)

    # --- /incident and the shortcut ------------------------------------------------------------

    async def handle_incident_command(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        text = (command.get("text") or "").strip()
        if text:
            await self._show_incident(ack, text)
            return
        try:
            require(actor, Permission.MANAGE_INCIDENTS)
        except PermissionDenied as exc:
            await ack(response_type="ephemeral", text=f":warning: {exc.message}")
            await record_refusal(self.runtime, actor, "open incident", exc.message)
            return
        await ack()
        view = build_new_incident_modal(
            metadata=pack(NewIncidentMeta(), self.secret), today=self.today()
        )
        await client.views_open(trigger_id=command["trigger_id"], view=view)

    async def _show_incident(self, ack: AsyncAck, text: str) -> None:
        number = parse_incident_number(text)
        if number is None:
            await ack(response_type="ephemeral", text=USAGE)
            return
        async with self.runtime.reads() as store:
            card = await load_incident_card(
                self.context(store), store, number, runtime=self.runtime
            )
        if card is None:
            await ack(
                response_type="ephemeral",
                text=f":mag: There's no incident #{number}. Check the number on the card.",
            )
            return
        await ack(response_type="ephemeral", **build_incident_card_message(card, self.secret))

    async def handle_incident_shortcut(
        self,
        ack: AsyncAck,
        shortcut: dict[str, Any],
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(self.runtime, client, body, "open incident", actor):
            require(actor, Permission.MANAGE_INCIDENTS)
            # A message shortcut carries the message (the help request); a global one doesn't.
            where = shortcut.get("channel")
            channel = where.get("id") if isinstance(where, dict) else None
            message = shortcut.get("message")
            message = message if isinstance(message, dict) else {}
            ts = message.get("ts") or shortcut.get("message_ts")
            ticket_ref = await self._permalink(client, channel, ts)
            view = build_new_incident_modal(
                metadata=pack(NewIncidentMeta(ticket_ref=ticket_ref), self.secret),
                today=self.today(),
                description=unescape_message_text(str(message.get("text") or "")),
            )
            await client.views_open(trigger_id=shortcut["trigger_id"], view=view)

    @staticmethod
    async def _permalink(client: AsyncWebClient, channel: object, ts: object) -> str | None:
        if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
            return None  # a global shortcut, or a payload not shaped as Slack sends it
        try:
            response = await client.chat_getPermalink(channel=channel, message_ts=ts)
        except SlackApiError as exc:
            # e.g. a private channel the app isn't in: keep a reference that still finds it.
            log.warning("chat.getPermalink failed: %s", exc.response.get("error"))
            return f"slack:{channel}/{ts}"
        permalink = response.get("permalink")
        return str(permalink) if permalink else f"slack:{channel}/{ts}"

    # --- the new-incident modal ----------------------------------------------------------------

    async def handle_device_options(self, ack: AsyncAck, payload: dict[str, Any]) -> None:
        query = str(payload.get("value") or "")
        async with self.runtime.reads() as store:
            matches = await store.devices.search(query, limit=MAX_OPTIONS)
        await ack(
            options=[
                device_option(x.device_id, x.serial, x.asset_tag, x.model, x.holder_name)
                for x in matches
            ]
        )

    async def handle_device_selected(
        self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Show who had the device on the chosen date (the workflow bills that student)."""
        await ack()
        view = body.get("view") or {}
        action = (body.get("actions") or [{}])[0]
        option = action.get("selected_option")
        if not view.get("id") or not option:
            return
        occurred = self.today()
        picked = _state(view, IncidentField.OCCURRED_ON).get("selected_date")
        if picked:
            try:
                occurred = date.fromisoformat(picked)
            except ValueError:
                pass
        line = "That device isn't in DeviceCare."
        async with self.runtime.reads() as store:
            value = str(option.get("value") or "")
            device = await store.devices.get(int(value)) if _is_id(value) else None
            if device is not None:
                holder_id = await store.devices.holder_at(
                    device.id, end_of_local_day(occurred, self.runtime.settings.tz)
                )
                student = None if holder_id is None else await store.people.student(holder_id)
                building_id = (student.building_id if student else None) or device.building_id
                building = (
                    None if building_id is None else await store.devices.building(building_id)
                )
                line = student_line(
                    None if student is None else student.full_name,
                    None if student is None else student.grade,
                    None if building is None else building.name,
                    occurred,
                )
        description = _state(view, IncidentField.DESCRIPTION).get("value") or ""
        new_view = build_new_incident_modal(
            metadata=str(view.get("private_metadata") or ""),
            today=self.today(),
            device=option,
            student_line=line,
            description=description,
        )
        try:
            await client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
        except SlackApiError as exc:
            if exc.response.get("error") != "hash_conflict":
                raise
            log.info("device pick: the modal changed meanwhile; not redrawn")

    async def handle_new_incident_submission(
        self, ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Check the form without writing (a broken rule is shown next to its field), then
        answer; `open_submitted_incident` opens it once Slack has the answer."""
        actor: Actor = context["actor"]
        try:
            await self._checked_new_incident(actor, view)
        except DomainError as exc:
            errors = modal_errors(exc, NEW_INCIDENT_ERROR_BLOCKS, IncidentField.DEVICE)
            await ack(response_action="errors", errors=errors)
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(self.runtime, actor, "open incident", exc.message)
            return
        values = (view.get("state") or {}).get("values") or {}
        photos = len(files_from_state(values, IncidentField.PHOTOS))
        channel = self.runtime.settings.slack_incidents_channel
        await ack(response_action="update", view=build_incident_opened_modal(None, channel, photos))

    async def _checked_new_incident(self, actor: Actor, view: dict[str, Any]) -> OpenIncident:
        meta = unpack(NewIncidentMeta, view.get("private_metadata"), self.secret)
        cmd = parse_new_incident(view, meta)
        async with self.runtime.reads() as store:
            await check_new_incident(self.context(store), actor, cmd)
        return cmd

    async def open_submitted_incident(
        self,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        # Bolt starts a lazy listener alongside the ack, whatever the ack answers: a form
        # refused with field errors is left alone here.
        try:
            cmd = await self._checked_new_incident(actor, view)
        except DomainError:
            return
        async with after_ack(self.runtime, client, body, "open the incident", actor):
            async with self.runtime.stores() as store:
                opened = await open_incident(self.context(store), actor, cmd)
                if opened.created:
                    await queue_incident_card(store, opened.incident.id)
                incident_id = opened.incident.id
                await store.commit()
            values = (view.get("state") or {}).get("values") or {}
            files = files_from_state(values, IncidentField.PHOTOS) if opened.created else []
            channel = self.runtime.settings.slack_incidents_channel
            try:  # the number, in the modal that said it was being opened
                await client.views_update(
                    view_id=view["id"],
                    view=build_incident_opened_modal(incident_id, channel, len(files)),
                )
            except SlackApiError as exc:  # closed meanwhile: the card says it all
                log.info("new incident #%s: modal not updated (%s)", incident_id, exc)
        if files:
            await self._attach_from_modal(client, body, actor, incident_id, files)

    async def _attach_from_modal(
        self,
        client: AsyncWebClient,
        body: dict[str, Any],
        actor: Actor,
        incident_id: int,
        files: list[SlackFileRef],
    ) -> None:
        async with reported(self.runtime, client, body, "add photos", actor):
            report = await attach_slack_files(
                self.runtime, client, actor, incident_id, files, note_in_thread=True
            )
            if report.refused:
                await tell_user(client, body, report.text)

    # --- card actions --------------------------------------------------------------------------

    def _ref(self, action: Mapping[str, Any]) -> IncidentRef:
        return unpack(IncidentRef, action.get("value"), self.secret)

    async def handle_change_status_click(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(self.runtime, client, body, "change incident status", actor):
            ref = self._ref(action)
            async with self.runtime.reads() as store:
                incident = await store.incidents.get(ref.incident_id)
            if incident is None:
                raise NotFound(f"Incident #{ref.incident_id} doesn't exist.")
            restricted = await self.restricted()
            current = IncidentStatus(incident.status)
            choices = status_choices(actor, current, restricted)
            if not choices:
                raise InvalidTransition(
                    f"Incident #{ref.incident_id} is {current.label}; there's no status your "
                    "role can move it to from there."
                )
            view = build_status_modal(
                metadata=pack(ref, self.secret),
                incident_id=ref.incident_id,
                current=current,
                choices=choices,
            )
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def handle_status_submission(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            # Checked before the ack (no writes, so no waiting on other writers): a forged form
            # or a status this role may not use comes back as a field error.
            ref = unpack(IncidentRef, view.get("private_metadata"), self.secret)
            option = _state(view, IncidentField.STATUS).get("selected_option") or {}
            target = parse_status(str(option.get("value") or ""))
            if not may_use(actor, target, await self.restricted()):
                raise PermissionDenied("You can't move incidents to that status.")
        except DomainError as exc:
            await ack(response_action="errors", errors={IncidentField.STATUS: exc.message})
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(self.runtime, actor, "change incident status", exc.message)
            return
        # The change itself is written after the ack; the card updating in place confirms it,
        # and anything the workflow still refuses reaches the person as a message.
        await ack()
        async with reported(self.runtime, client, body, "change incident status", actor):
            async with self.runtime.stores() as store:
                await change_incident_status(self.context(store), actor, ref.incident_id, target)
                await queue_incident_card(store, ref.incident_id)
                await store.commit()

    async def handle_add_note_click(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(self.runtime, client, body, "add incident note", actor):
            ref = self._ref(action)
            require(actor, Permission.MANAGE_INCIDENTS)
            view = build_note_modal(metadata=pack(ref, self.secret), incident_id=ref.incident_id)
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def handle_note_submission(
        self, ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Check the note without writing, answer, then `add_submitted_note` stores it."""
        actor: Actor = context["actor"]
        try:
            self._checked_note(actor, view)
        except DomainError as exc:
            await ack(response_action="errors", errors={IncidentField.NOTE: exc.message})
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(self.runtime, actor, "add incident note", exc.message)
            return
        await ack()

    def _checked_note(self, actor: Actor, view: dict[str, Any]) -> tuple[IncidentRef, str]:
        ref = unpack(IncidentRef, view.get("private_metadata"), self.secret)
        require(actor, Permission.MANAGE_INCIDENTS)
        note = str(_state(view, IncidentField.NOTE).get("value") or "")
        check_note(note)
        return ref, note

    async def add_submitted_note(
        self,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            ref, note = self._checked_note(actor, view)
        except DomainError:
            return  # answered with the error next to the field
        async with after_ack(self.runtime, client, body, "add the note", actor):
            async with self.runtime.stores() as store:
                await add_incident_note(self.context(store), actor, ref.incident_id, note)
                await queue_incident_card(store, ref.incident_id)
                await queue_thread_message(
                    store,
                    ref.incident_id,
                    f":memo: *{escape_mrkdwn(actor.name)}* added a note:\n{quote_mrkdwn(note)}",
                )
                await store.commit()

    async def handle_add_photos_click(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(self.runtime, client, body, "add photos", actor):
            ref = self._ref(action)
            require(actor, Permission.MANAGE_INCIDENTS)
            view = build_photos_modal(metadata=pack(ref, self.secret), incident_id=ref.incident_id)
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def handle_photos_submission(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        values = (view.get("state") or {}).get("values") or {}
        files = files_from_state(values, IncidentField.PHOTOS)
        try:
            ref = unpack(IncidentRef, view.get("private_metadata"), self.secret)
            require(actor, Permission.MANAGE_INCIDENTS)
            if not files:
                raise InputError("Add at least one photo.", field="photo")
        except DomainError as exc:
            await ack(response_action="errors", errors={IncidentField.PHOTOS: exc.message})
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(self.runtime, actor, "add photos", exc.message)
            return
        await ack()
        await self._attach_from_modal(client, body, actor, ref.incident_id, files)

    async def handle_close_click(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(self.runtime, client, body, "close incident", actor):
            ref = self._ref(action)
            async with self.runtime.stores() as store:
                await change_incident_status(
                    self.context(store), actor, ref.incident_id, IncidentStatus.CLOSED
                )
                await queue_incident_card(store, ref.incident_id)
                await store.commit()

    # --- photos in the card's thread -----------------------------------------------------------

    async def handle_thread_photos(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        channel, thread_ts = event.get("channel"), event.get("thread_ts")
        if not channel or not thread_ts or thread_ts == event.get("ts"):
            return
        async with self.runtime.stores() as store:
            post = await store.slack_posts.at(str(channel), str(thread_ts))
            await store.commit()
        if post is None or post.kind != SlackPostKind.INCIDENT_CARD:
            return
        files = files_from_event(event)
        user = event.get("user")
        if not files or not user:
            return
        incident_id = post.entity_id

        async def reply(text: str) -> None:
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)

        actor = await resolve_actor(self.runtime, client, str(user))
        if actor is None:
            log.info("photos from unknown Slack user %s in incident #%s ignored", user, incident_id)
            await reply(f"<@{user}> " + await not_set_up_text(self.runtime))
            return
        try:
            report = await attach_slack_files(self.runtime, client, actor, incident_id, files)
        except DomainError as exc:
            if isinstance(exc, PermissionDenied):
                await record_refusal(self.runtime, actor, "add photos", exc.message)
            await reply(f":warning: <@{user}> your photos weren't added: {exc.message}")
            return
        if report.text:
            await reply(report.text)


# --- the incident card through the outbox -------------------------------------------------------


def card_handler(runtime: Runtime, client: AsyncWebClient) -> Any:
    """Post the card in the incidents channel the first time; update it in place after.

    A card deleted in Slack (`message_not_found`) is posted again and its new place kept. A
    channel Slack refuses (the app isn't in it, it is gone or archived) fails the row at once
    and tells the technician who opened the incident.
    """
    secret = signing_keys(runtime.settings)

    async def deliver(payload: dict[str, Any]) -> None:
        incident_id = int(payload["incident_id"])
        async with runtime.stores() as store:
            card = await load_incident_card(
                Context(store, runtime.clock, runtime.settings.tz),
                store,
                incident_id,
                runtime=runtime,
            )
            post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id)
            reporter = await _reporter_slack_id(store, incident_id)
            await store.commit()
        if card is None:
            log.warning("incident #%s is gone; its card isn't posted", incident_id)
            return
        message = build_incident_card_message(card, secret)
        channel = runtime.settings.slack_incidents_channel
        try:
            if post is not None:
                await _update_or_repost(runtime, client, incident_id, post, message)
                return
            if not channel:
                raise RuntimeError(
                    "SLACK_INCIDENTS_CHANNEL isn't set; incident cards can't be posted"
                )
            await _post_once(runtime, client, incident_id, channel, message)
        except SlackApiError as exc:
            error = channel_error(exc)
            if error is None:
                raise
            where = post.channel if post is not None else str(channel)
            raise await give_up_on_channel(
                runtime,
                client,
                channel=where,
                error=error,
                what=f"the card for incident #{incident_id}",
                notify=reporter,
            ) from exc

    return deliver


async def _reporter_slack_id(store: SqlUnitOfWork, incident_id: int) -> str | None:
    incident = await store.incidents.get(incident_id)
    if incident is None or incident.reported_by_id is None:
        return None
    return await store.people.staff_slack_id(incident.reported_by_id)


async def _post_once(
    runtime: Runtime,
    client: AsyncWebClient,
    incident_id: int,
    channel: str,
    message: dict[str, Any],
    *,
    replacing: str | None = None,
) -> None:
    """Post the card unless another worker already has (or, with `replacing`, has already
    replaced the deleted card `replacing`); update that one instead."""
    async with runtime.stores() as store:
        # Two workers delivering at once must not post two cards: the incident's lock makes
        # the second wait, then find the first one's post.
        await store.incidents.get(incident_id, lock=True)
        post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, incident_id)
        if post is None or post.ts == replacing:
            response = await client.chat_postMessage(channel=channel, **message)
            where, ts = str(response["channel"]), str(response["ts"])
            if post is None:
                await store.slack_posts.save(SlackPostKind.INCIDENT_CARD, incident_id, where, ts)
            else:
                log.info("incident #%s: its card was deleted in Slack; posted again", incident_id)
                await store.slack_posts.move(SlackPostKind.INCIDENT_CARD, incident_id, where, ts)
            await store.commit()
            return
        await store.commit()
    await client.chat_update(channel=post.channel, ts=post.ts, **message)


async def _update_or_repost(
    runtime: Runtime, client: AsyncWebClient, incident_id: int, post: Any, message: dict[str, Any]
) -> None:
    try:
        await client.chat_update(channel=post.channel, ts=post.ts, **message)
    except SlackApiError as exc:
        if exc.response.get("error") != "message_not_found":
            raise
        channel = runtime.settings.slack_incidents_channel or post.channel
        await _post_once(runtime, client, incident_id, channel, message, replacing=post.ts)


def register(app: AsyncApp, runtime: Runtime) -> None:
    IncidentFeature(runtime).register(app)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    return {INCIDENT_CARD: card_handler(runtime, client)}
