"""Slack listeners for damage incidents: /incident, the "Open damage incident" shortcut, the
device type-ahead, the incident card (posted and updated through the outbox), the card's
actions, and photos dropped into the card's thread.

Handlers stay thin: ack, parse into a typed command, run the workflow in one transaction with
the card refresh queued in it, render. Permissions are the workflows' to check, at click time.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.actors import not_set_up_text, resolve_actor
from bot.slack.blocks import Block, fmt_when
from bot.slack.cards import INCIDENT_CARD, queue_incident_card, queue_thread_message
from bot.slack.channel_errors import channel_error, give_up_on_channel
from bot.slack.errors import record_refusal, reported
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
from bot.slack.listeners import (
    Click,
    Command,
    ModalForm,
    Slack,
    Submitted,
    on_click,
    on_command,
    on_shortcut,
    redraw,
    wire,
)
from bot.slack.metadata import pack
from bot.slack.photo_lines import load_photo_urls
from bot.slack.photos import SlackFileRef, attach_slack_files, files_from_event, files_from_state
from bot.slack.shared_lookup import SharedLookup
from storage.notice_queries import invoice_delivery_line
from storage.uow import SqlUnitOfWork
from workflows.clock import local_date
from workflows.errors import DomainError, InvalidTransition, NotFound, PermissionDenied
from workflows.errors import ValidationError as InputError
from workflows.i18n import N_, _
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
        raise InputError(_("Pick the device."), field="device")
    device_id = int(value)
    flags = tuple(
        str(o.get("value", ""))
        for o in _state(view, IncidentField.FLAGS).get("selected_options") or []
    )
    try:
        occurred_on = date.fromisoformat(_state(view, IncidentField.OCCURRED_ON)["selected_date"])
    except (KeyError, TypeError, ValueError):
        raise InputError(_("Pick the date it happened."), field="occurred_on") from None
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
                    delivery=await invoice_delivery_line(store, invoice.id, ctx.tz),
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
MANAGE = Permission.MANAGE_INCIDENTS


class RestrictedStatuses:
    """The district's restricted statuses, cached briefly for each runtime: every status change
    checks them before its ack, and a settings change reaching Slack within seconds is enough.
    Requests that find the entry lapsed together read the settings once."""

    def __init__(self) -> None:
        self._cache: SharedLookup[int, frozenset[str]] = SharedLookup(SETTINGS_CACHE_SECONDS)
        self._watched: set[int] = set()

    async def __call__(self, runtime: Runtime) -> frozenset[str]:
        key = id(runtime)
        if key not in self._watched:  # a runtime's id is reused once it is gone
            self._watched.add(key)
            weakref.finalize(runtime, self._gone, key)
        return await self._cache.cached(key, lambda: self._read(runtime))

    def _gone(self, key: int) -> None:
        self._watched.discard(key)
        self._cache.forget(key)

    @staticmethod
    async def _read(runtime: Runtime) -> frozenset[str]:
        async with runtime.reads() as store:
            return restricted_statuses(await store.settings.get())


restricted = RestrictedStatuses()


def _today(runtime: Runtime) -> date:
    return local_date(runtime.clock.now(), runtime.settings.tz)


def _photos(view: Mapping[str, Any]) -> list[SlackFileRef]:
    values = (view.get("state") or {}).get("values") or {}
    return files_from_state(values, IncidentField.PHOTOS)


# --- /incident and the shortcut ------------------------------------------------------------


@on_command(INCIDENT_COMMAND, what="open incident", refusal=":warning: {}")
async def handle_incident_command(cmd: Command) -> None:
    text = str(cmd.body.get("text") or "").strip()
    if text:
        await _show_incident(cmd, text)
        return
    require(cmd.actor, MANAGE)
    await cmd.ack()
    metadata = pack(NewIncidentMeta(), cmd.keys)
    await cmd.open_view(build_new_incident_modal(metadata=metadata, today=_today(cmd.runtime)))


async def _show_incident(cmd: Command, text: str) -> None:
    number = parse_incident_number(text)
    if number is None:
        await cmd.ack(_(USAGE))
        return
    async with cmd.runtime.reads() as store:
        card = await load_incident_card(cmd.context(store), store, number, runtime=cmd.runtime)
    if card is None:
        await cmd.ack(
            _(":mag: There's no incident #{number}. Check the number on the card.", number=number)
        )
        return
    await cmd.ack(response_type="ephemeral", **build_incident_card_message(card, cmd.keys))


@on_shortcut(
    (IncidentShortcut.OPEN_FROM_MESSAGE.value, IncidentShortcut.NEW.value), what="open incident"
)
async def handle_incident_shortcut(slack: Slack) -> None:
    require(slack.actor, MANAGE)
    # A message shortcut carries the message (the help request); a global one doesn't.
    shortcut = slack.body
    where = shortcut.get("channel")
    channel = where.get("id") if isinstance(where, dict) else None
    message = shortcut.get("message")
    message = message if isinstance(message, dict) else {}
    ts = message.get("ts") or shortcut.get("message_ts")
    ticket_ref = await _permalink(slack.client, channel, ts)
    view = build_new_incident_modal(
        metadata=pack(NewIncidentMeta(ticket_ref=ticket_ref), slack.keys),
        today=_today(slack.runtime),
        description=unescape_message_text(str(message.get("text") or "")),
    )
    await slack.open_view(view)


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


async def device_options(runtime: Runtime, query: str) -> list[dict[str, Any]]:
    async with runtime.reads() as store:
        matches = await store.devices.search(query, limit=MAX_OPTIONS)
    return [
        device_option(x.device_id, x.serial, x.asset_tag, x.model, x.holder_name) for x in matches
    ]


@on_click(IncidentField.DEVICE.value, what="pick a device")
async def handle_device_selected(click: Click[None]) -> None:
    """Show who had the device on the chosen date (the workflow bills that student)."""
    view = click.body.get("view") or {}
    option = click.action.get("selected_option")
    if not view.get("id") or not option:
        return
    occurred = _today(click.runtime)
    picked = _state(view, IncidentField.OCCURRED_ON).get("selected_date")
    if picked:
        try:
            occurred = date.fromisoformat(picked)
        except ValueError:
            pass
    value = str(option.get("value") or "")
    line = await _holder_line(click.runtime, int(value), occurred) if _is_id(value) else None
    new_view = build_new_incident_modal(
        metadata=str(view.get("private_metadata") or ""),
        today=_today(click.runtime),
        device=option,
        student_line=line or _("That device isn't in DeviceCare."),
        description=_state(view, IncidentField.DESCRIPTION).get("value") or "",
    )
    await redraw(click.client, view, new_view, "device pick")


async def _holder_line(runtime: Runtime, device_id: int, occurred: date) -> str | None:
    """Who held the device at the end of `occurred`, where; None for a device not on file."""
    async with runtime.reads() as store:
        device = await store.devices.get(device_id)
        if device is None:
            return None
        at = end_of_local_day(occurred, runtime.settings.tz)
        holder_id = await store.devices.holder_at(device.id, at)
        student = None if holder_id is None else await store.people.student(holder_id)
        building_id = (student.building_id if student else None) or device.building_id
        building = None if building_id is None else await store.devices.building(building_id)
    return student_line(
        None if student is None else student.full_name,
        None if student is None else student.grade,
        None if building is None else building.name,
        occurred,
    )


new_incident_form: ModalForm[NewIncidentMeta, OpenIncident] = ModalForm(
    IncidentView.NEW.value,
    meta=NewIncidentMeta,
    what="open incident",
    doing=N_("open the incident"),
    fields=NEW_INCIDENT_ERROR_BLOCKS,
    default_field=IncidentField.DEVICE,
    shown_only=False,
    working=lambda form: build_incident_opened_modal(
        None, form.runtime.settings.slack_incidents_channel, len(_photos(form.view))
    ),
)


@new_incident_form.check
async def check_new_incident_form(form: Submitted[NewIncidentMeta]) -> OpenIncident:
    """The form read and checked without writing: a broken rule is shown next to its field."""
    command = parse_new_incident(form.view, form.meta)
    return await form.checked_by(check_new_incident, command)


@new_incident_form.write
async def open_submitted_incident(form: Submitted[NewIncidentMeta], command: OpenIncident) -> None:
    async with form.runtime.stores() as store:
        opened = await open_incident(form.context(store), form.actor, command)
        if opened.created:
            await queue_incident_card(store, opened.incident.id)
        await store.commit()
    incident_id = opened.incident.id
    files = _photos(form.view) if opened.created else []
    channel = form.runtime.settings.slack_incidents_channel
    # The number, in the modal that said it was being opened (closed meanwhile: the card says
    # it all).
    opened_view = build_incident_opened_modal(incident_id, channel, len(files))
    await form.show(opened_view, f"new incident #{incident_id}")
    if not files:
        return
    try:
        await _attach_photos(form, incident_id, files)
    except Exception:  # the incident is open: what failed is the photos alone
        log.exception("new incident #%s: photos not attached", incident_id)


async def _attach_photos(slack: Slack, incident_id: int, files: list[SlackFileRef]) -> None:
    async with reported(slack.runtime, slack.client, slack.body, "add photos", slack.actor):
        report = await attach_slack_files(
            slack.runtime, slack.client, slack.actor, incident_id, files, note_in_thread=True
        )
        if report.refused:
            await slack.tell(report.text)


# --- card actions --------------------------------------------------------------------------


def _card_form(
    view: IncidentView, field: IncidentField, *, what: str, doing: str | None
) -> ModalForm[IncidentRef, Any]:
    """A card action's modal: the incident in its signed metadata, every error by its input."""
    return ModalForm(view.value, meta=IncidentRef, what=what, doing=doing, fields=lambda _f: field)


async def _open_card_form(click: Click[IncidentRef], build: Callable[..., Block]) -> None:
    """A note or photos modal for the card's incident (Manage Incidents)."""
    require(click.actor, MANAGE)
    metadata = pack(click.ref, click.keys)
    await click.open_view(build(metadata=metadata, incident_id=click.ref.incident_id))


@on_click(IncidentAction.CHANGE_STATUS.value, what="change incident status", ref=IncidentRef)
async def handle_change_status_click(click: Click[IncidentRef]) -> None:
    incident_id = click.ref.incident_id
    async with click.runtime.reads() as store:
        incident = await store.incidents.get(incident_id)
    if incident is None:
        raise NotFound(_("Incident #{number} doesn't exist.", number=incident_id))
    current = IncidentStatus(incident.status)
    choices = status_choices(click.actor, current, await restricted(click.runtime))
    if not choices:
        raise InvalidTransition(
            _(
                "Incident #{number} is {status}; there's no status your "
                "role can move it to from there.",
                number=incident_id,
                status=_(current.label),
            )
        )
    view = build_status_modal(
        metadata=pack(click.ref, click.keys),
        incident_id=incident_id,
        current=current,
        choices=choices,
    )
    await click.open_view(view)


# Checked before the ack (no writes, so no waiting on other writers): a forged form or a status
# this role may not use comes back as a field error. The change itself is written after the
# ack; the card updating in place confirms it, and anything the workflow still refuses reaches
# the person as a message.
status_form: ModalForm[IncidentRef, IncidentStatus] = _card_form(
    IncidentView.CHANGE_STATUS, IncidentField.STATUS, what="change incident status", doing=None
)


@status_form.check
async def check_status_form(form: Submitted[IncidentRef]) -> IncidentStatus:
    option = _state(form.view, IncidentField.STATUS).get("selected_option") or {}
    target = parse_status(str(option.get("value") or ""))
    if not may_use(form.actor, target, await restricted(form.runtime)):
        raise PermissionDenied(_("You can't move incidents to that status."))
    return target


@status_form.write
async def change_submitted_status(form: Submitted[IncidentRef], target: IncidentStatus) -> None:
    await _set_status(form, form.meta.incident_id, target)


async def _set_status(slack: Slack, incident_id: int, target: IncidentStatus) -> None:
    async with slack.runtime.stores() as store:
        await change_incident_status(slack.context(store), slack.actor, incident_id, target)
        await queue_incident_card(store, incident_id)
        await store.commit()


@on_click(IncidentAction.ADD_NOTE.value, what="add incident note", ref=IncidentRef)
async def handle_add_note_click(click: Click[IncidentRef]) -> None:
    await _open_card_form(click, build_note_modal)


note_form: ModalForm[IncidentRef, str] = _card_form(
    IncidentView.ADD_NOTE, IncidentField.NOTE, what="add incident note", doing=N_("add the note")
)


@note_form.check
async def check_note_form(form: Submitted[IncidentRef]) -> str:
    require(form.actor, MANAGE)
    note = str(_state(form.view, IncidentField.NOTE).get("value") or "")
    check_note(note)
    return note


@note_form.write
async def add_submitted_note(form: Submitted[IncidentRef], note: str) -> None:
    incident_id = form.meta.incident_id
    async with form.runtime.stores() as store:
        await add_incident_note(form.context(store), form.actor, incident_id, note)
        await queue_incident_card(store, incident_id)
        await queue_thread_message(
            store,
            incident_id,
            _(":memo: *{name}* added a note:", name=escape_mrkdwn(form.actor.name))
            + f"\n{quote_mrkdwn(note)}",
        )
        await store.commit()


@on_click(IncidentAction.ADD_PHOTOS.value, what="add photos", ref=IncidentRef)
async def handle_add_photos_click(click: Click[IncidentRef]) -> None:
    await _open_card_form(click, build_photos_modal)


photos_form: ModalForm[IncidentRef, list[SlackFileRef]] = _card_form(
    IncidentView.ADD_PHOTOS, IncidentField.PHOTOS, what="add photos", doing=None
)


@photos_form.check
async def check_photos_form(form: Submitted[IncidentRef]) -> list[SlackFileRef]:
    require(form.actor, MANAGE)
    files = _photos(form.view)
    if not files:
        raise InputError(_("Add at least one photo."), field="photo")
    return files


@photos_form.write
async def add_submitted_photos(form: Submitted[IncidentRef], files: list[SlackFileRef]) -> None:
    await _attach_photos(form, form.meta.incident_id, files)


@on_click(IncidentAction.CLOSE.value, what="close incident", ref=IncidentRef)
async def handle_close_click(click: Click[IncidentRef]) -> None:
    await _set_status(click, click.ref.incident_id, IncidentStatus.CLOSED)


# --- photos in the card's thread -----------------------------------------------------------


async def add_thread_photos(
    runtime: Runtime, client: AsyncWebClient, event: dict[str, Any]
) -> None:
    channel, thread_ts = event.get("channel"), event.get("thread_ts")
    if not channel or not thread_ts or thread_ts == event.get("ts"):
        return
    async with runtime.stores() as store:
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

    actor = await resolve_actor(runtime, client, str(user))
    if actor is None:
        log.info("photos from unknown Slack user %s in incident #%s ignored", user, incident_id)
        await reply(f"<@{user}> " + await not_set_up_text(runtime))
        return
    try:
        report = await attach_slack_files(runtime, client, actor, incident_id, files)
    except DomainError as exc:
        if isinstance(exc, PermissionDenied):
            await record_refusal(runtime, actor, "add photos", exc.message)
        await reply(
            _(
                ":warning: <@{user}> your photos weren't added: {reason}",
                user=user,
                reason=exc.message,
            )
        )
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
                told=_("The card for incident #{number}", number=incident_id),
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
    wire(
        app,
        runtime,
        handle_incident_command,
        handle_incident_shortcut,
        handle_device_selected,
        new_incident_form,
        handle_change_status_click,
        status_form,
        handle_add_note_click,
        note_form,
        handle_add_photos_click,
        photos_form,
        handle_close_click,
    )

    @app.options(IncidentField.DEVICE.value)
    async def handle_device_options(ack: AsyncAck, payload: dict[str, Any]) -> None:
        await ack(options=await device_options(runtime, str(payload.get("value") or "")))

    @app.event({"type": "message", "subtype": "file_share"})
    async def handle_thread_photos(event: dict[str, Any], client: AsyncWebClient) -> None:
        await add_thread_photos(runtime, client, event)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    return {INCIDENT_CARD: card_handler(runtime, client)}
