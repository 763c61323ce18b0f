"""Devices in Slack: Replace device from an incident, and `/device` lifetime records."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.blocks import Block, section
from bot.slack.cards import queue_incident_card, queue_thread_message
from bot.slack.device_blocks import (
    DEVICE_COMMAND,
    FIELD_BLOCKS,
    MAX_MATCHES,
    USAGE,
    DeviceAction,
    DeviceBlock,
    DeviceRef,
    DeviceView,
    ReplaceDeviceModal,
    ReplaceForm,
    SuggestedHolderRef,
    build_device_matches,
    build_device_record,
    build_device_replaced_modal,
    build_device_replacing_modal,
    build_replace_device_modal,
    holder_assigned_text,
    no_match_text,
    read_replace_form,
    replaced_thread_text,
    suggested_holder_button,
)
from bot.slack.errors import FormErrors, tell_user
from bot.slack.ids import IncidentAction, IncidentRef
from bot.slack.listeners import Click, ModalForm, Submitted, on_click, wire
from bot.slack.photo_lines import load_photo_urls
from bot.slack.response_url import reply
from bot.slack.sync_blocks import sync_context
from storage import models as m
from storage.device_coverage import coverage_for_device
from storage.enrollment_store import current_enrollments
from storage.sync_provenance import device_provenance, holder_suggestion
from storage.uow import SqlUnitOfWork
from workflows.clock import local_date
from workflows.device_search import MatchRank
from workflows.devices import (
    AssignSuggestedHolder,
    assign_suggested_holder,
    check_replacement,
    replace_device,
)
from workflows.errors import ConflictError, NotFound
from workflows.i18n import N_, _
from workflows.insurance import CoverageBadge, coverage_badge
from workflows.permissions import Actor, Permission, require
from workflows.sync import SOURCE_LABELS

log = logging.getLogger("devicecare.slack")


async def device_record(
    runtime: Runtime, store: SqlUnitOfWork, device_id: int, actor: Actor | None = None
) -> tuple[str, list[Block]] | None:
    """The `/device` answer for one device; coverage is the holder's, as of today. A source's
    suggested holder comes with a button for someone who may assign it (`actor`)."""
    history = await store.devices.history(device_id)
    if history is None:
        return None
    badge: CoverageBadge | None = None
    today = local_date(runtime.clock.now(), runtime.settings.tz)
    enrollments: list[m.InsuranceEnrollment] = []
    if history.holder is not None:
        coverage = await store.insurance.coverage_on(history.holder.id, today, device_id=device_id)
        used = 0 if coverage is None else await store.insurance.count_claims(coverage.claim_key)
        badge = coverage_badge(coverage, used)
        enrollments = await current_enrollments(store, history.holder.id, today)
    third_party = await coverage_for_device(store, device_id, today)
    provenance = await device_provenance(store, device_id)
    holder_id = None if history.holder is None else history.holder.id
    suggestion = await holder_suggestion(store, provenance, holder_id)
    holder_name = None if history.holder is None else history.holder.full_name
    offer = None
    if suggestion is not None and actor is not None and actor.can(Permission.REPLACE_DEVICES):
        keys = signing_keys(runtime.settings)
        offer = suggested_holder_button(device_id, suggestion, holder_id, holder_name, secret=keys)
    return build_device_record(
        history,
        badge,
        runtime.settings.tz,
        third_party=third_party,
        enrollments=enrollments,
        today=today,
        photo_urls=await load_photo_urls(runtime, store, device_id=device_id),
        synced=sync_context(provenance, suggestion, holder_name, runtime.settings.tz, offer),
    )


async def _check_replayed(store: SqlUnitOfWork, old: m.Device, serial: str) -> None:
    """An old device already replaced: by this very form (a redelivery), or by someone else."""
    new = None if old.replaced_by_id is None else await store.devices.get(old.replaced_by_id)
    if new is None or new.serial != m.normalize_serial(serial):
        raise ConflictError(
            _("{old} was already replaced by {new}.", old=old.serial, new=new.serial)
            if new
            else _("{old} was already replaced.", old=old.serial),
            field="new_serial",
        )


@on_click(IncidentAction.REPLACE_DEVICE, what="open the replace-device form", ref=IncidentRef)
async def handle_replace_device_button(click: Click[IncidentRef]) -> None:
    # Said now rather than after typing a serial; the workflow checks again on submit.
    require(click.actor, Permission.REPLACE_DEVICES)
    incident_id = click.ref.incident_id
    async with click.runtime.stores() as store:
        incident = await store.incidents.get(incident_id)
        if incident is None:
            raise NotFound(_("Incident #{number} doesn't exist.", number=incident_id))
        device = await store.devices.get(incident.device_id)
        if device is None:
            raise NotFound(_("That device isn't in DeviceCare."))
        if device.replaced_by_id is not None:
            new = await store.devices.get(device.replaced_by_id)
            raise ConflictError(
                _(
                    "Device {serial} was already replaced by {new}.",
                    serial=device.serial,
                    new=new.serial,
                )
                if new is not None
                else _("Device {serial} was already replaced.", serial=device.serial)
            )
        holder_id = await store.devices.current_holder(device.id)
        holder = None if holder_id is None else await store.people.student(holder_id)
        await store.commit()
    view = build_replace_device_modal(
        incident_id=incident_id,
        device=device,
        holder_name=None if holder is None else holder.full_name,
        secret=click.keys,
    )
    await click.open_view(view)


replace_form: ModalForm[ReplaceDeviceModal, ReplaceForm] = ModalForm(
    DeviceView.REPLACE,
    meta=ReplaceDeviceModal,
    what="replace a device",
    doing=N_("replace the device"),
    fields=FIELD_BLOCKS,
    default_field=DeviceBlock.NEW_SERIAL,
    working=lambda _form: build_device_replacing_modal(),
    shown_only=False,
)


@replace_form.check
async def check_replace_form(form: Submitted[ReplaceDeviceModal]) -> ReplaceForm:
    """The form read and checked without writing."""
    read = read_replace_form(form.values)
    if read.errors:
        raise FormErrors(read.errors)
    async with form.runtime.reads() as store:
        old = await store.devices.get(form.meta.device_id)
        if old is not None and old.replaced_by_id is not None:
            await _check_replayed(store, old, read.serial)
        else:
            command = read.command(form.meta.device_id)
            await check_replacement(form.context(store), form.actor, command)
    return read


@replace_form.write
async def replace_submitted_device(form: Submitted[ReplaceDeviceModal], read: ReplaceForm) -> None:
    meta, actor = form.meta, form.actor
    async with form.runtime.stores() as store:
        old = await store.devices.get(meta.device_id, lock=True)
        if old is not None and old.replaced_by_id is not None:
            await _check_replayed(store, old, read.serial)
            new = await store.devices.get(old.replaced_by_id)
            assert new is not None
            holder_id = await store.devices.current_holder(new.id)
            student = None if holder_id is None else await store.people.student(holder_id)
            name = _("The student") if student is None else student.full_name
            done = build_device_replaced_modal(old, new, name, again=True)
        else:
            result = await replace_device(form.context(store), actor, read.command(meta.device_id))
            student = await store.people.student(result.student_id)
            name = _("The student") if student is None else student.full_name
            old_row = await store.devices.get(result.old.id)
            new_row = await store.devices.get(result.new.id)
            assert old_row is not None and new_row is not None
            await queue_incident_card(store, meta.incident_id)
            await queue_thread_message(
                store,
                meta.incident_id,
                replaced_thread_text(old_row, new_row, name, actor.name),
                dedupe_key=f"device-replaced:{old_row.id}:{new_row.id}",
            )
            done = build_device_replaced_modal(old_row, new_row, name)
        await store.commit()
    await form.show(done, "device replacement")


@on_click(DeviceAction.SHOW, what="show a device", ref=DeviceRef)
async def handle_device_show(click: Click[DeviceRef]) -> None:
    async with click.runtime.stores() as store:
        record = await device_record(click.runtime, store, click.ref.device_id, click.actor)
        await store.commit()
    if record is None:
        raise NotFound(_("That device isn't in DeviceCare any more."))
    text, blocks = record
    await tell_user(click.client, click.body, text, blocks=blocks)  # just for the clicker


@on_click(
    DeviceAction.ASSIGN_SUGGESTED, what="assign a device's suggested holder", ref=SuggestedHolderRef
)
async def handle_assign_suggested(click: Click[SuggestedHolderRef]) -> None:
    ref = click.ref
    command = AssignSuggestedHolder(
        device_id=ref.device_id,
        student_id=ref.student_id,
        shown_holder_id=ref.shown_holder_id,
        source_label=SOURCE_LABELS.get(ref.source, ref.source),
    )
    async with click.runtime.stores() as store:
        change = await assign_suggested_holder(click.context(store), click.actor, command)
        student = await store.people.student(change.student_id)
        name = _("the student") if student is None else student.full_name
        said = holder_assigned_text(change.device.serial, name, changed=change.changed)
        record = await device_record(click.runtime, store, ref.device_id, click.actor)
        await store.commit()
    blocks = [section(said)] + ([] if record is None else record[1])
    await reply(click.client, click.body, said, blocks, replace=True)


async def device_command_answer(
    runtime: Runtime, command: Mapping[str, Any], actor: Actor | None = None
) -> dict[str, Any]:
    """`/device`: a read-only look-up takes milliseconds, so the answer goes back in the ack
    itself, which works in any channel or DM without the bot being a member."""
    query = " ".join(str(command.get("text") or "").split())[:100]
    if not query:
        return {"response_type": "ephemeral", "text": _(USAGE)}
    async with runtime.reads() as store:
        matches = await store.devices.search(query, limit=MAX_MATCHES + 1)
        # An exact serial, tag or student id (or full name) wins over partial matches.
        exact = [x for x in matches if x.rank is MatchRank.EXACT]
        matches = exact or matches
        if len(matches) == 1:
            record = await device_record(runtime, store, matches[0].device_id, actor)
            assert record is not None
            text, blocks = record
        elif matches:
            secret = signing_keys(runtime.settings)
            text, blocks = build_device_matches(
                query, matches[:MAX_MATCHES], secret=secret, more=len(matches) > MAX_MATCHES
            )
        else:
            text, blocks = no_match_text(query), []
    if blocks:
        return {"response_type": "ephemeral", "text": text, "blocks": blocks}
    return {"response_type": "ephemeral", "text": text}


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(
        app,
        runtime,
        handle_replace_device_button,
        replace_form,
        handle_device_show,
        handle_assign_suggested,
    )

    @app.command(DEVICE_COMMAND)
    async def handle_device_command(
        ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack(**await device_command_answer(runtime, command, context.get("actor")))
