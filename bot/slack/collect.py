"""`/collect`: check devices in at a table, one student after another, in a single modal.

Scan (or type) a tag and press Enter → the modal shows the device, who holds it and the
collection fee items → tick what is missing → Check in → back to an empty scan with a line
saying what happened. The workflow checks Collect Devices at every step.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.blocks import Block, form_values
from bot.slack.collect_blocks import (
    COLLECT_COMMAND,
    CheckInForm,
    CollectField,
    CollectSession,
    CollectView,
    build_check_in_modal,
    build_scan_modal,
    error_block,
    has_fee_input,
    read_code,
    read_fee_ids,
    read_note,
    read_reason,
    result_line,
    tag_block,
)
from bot.slack.errors import record_refusal, tell_user
from bot.slack.metadata import ForgedPayload, pack, unpack
from storage.collections import Collections
from storage.uow import SqlUnitOfWork
from workflows.collection import (
    CollectDevice,
    CollectionResult,
    collect_device,
    parse_reason,
    preview_collection,
)
from workflows.errors import DomainError, PermissionDenied
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

WHAT = "collect a device"


class CollectFeature:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def secret(self) -> Keys:
        return signing_keys(self.runtime.settings)

    def context(self, store: SqlUnitOfWork) -> Context:
        return Context(store, self.runtime.clock, self.runtime.settings.tz)

    def register(self, app: AsyncApp) -> None:
        app.command(COLLECT_COMMAND)(self.handle_collect_command)
        app.action(CollectField.TAG.value)(self.handle_tag_entered)
        app.view(CollectView.SCAN.value)(self.handle_scan_submission)
        app.view(CollectView.CHECK_IN.value)(self.handle_check_in_submission)

    # --- views ------------------------------------------------------------------------------

    def scan_view(
        self, session: CollectSession, *, result: str | None = None, error: str | None = None
    ) -> Block:
        return build_scan_modal(session, pack(session, self.secret), result=result, error=error)

    async def check_in_view(self, actor: Actor, session: CollectSession, code: str) -> Block:
        """Look the device up (refusing unknown or already collected ones) and draw the step."""
        async with self.runtime.reads() as store:
            preview = await preview_collection(self.context(store), Collections(store), actor, code)
        form = CheckInForm(session=session, device_id=preview.device.id, nonce=uuid.uuid4().hex)
        return build_check_in_modal(preview, form, pack(form, self.secret))

    async def refused(self, actor: Actor, exc: DomainError) -> None:
        if isinstance(exc, PermissionDenied | ForgedPayload):
            await record_refusal(self.runtime, actor, WHAT, exc.message)

    # --- /collect ---------------------------------------------------------------------------

    async def handle_collect_command(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            require(actor, Permission.COLLECT_DEVICES)
        except PermissionDenied as exc:
            await ack(response_type="ephemeral", text=f":warning: {exc.message}")
            await record_refusal(self.runtime, actor, WHAT, exc.message)
            return
        await ack()
        session = CollectSession()
        code = str(command.get("text") or "").strip()
        view = self.scan_view(session)
        if code:  # `/collect CB-1042` goes straight to that device
            try:
                view = await self.check_in_view(actor, session, code)
            except DomainError as exc:
                await self.refused(actor, exc)
                view = self.scan_view(session, error=exc.message)
        await client.views_open(trigger_id=command["trigger_id"], view=view)

    # --- the scan step ----------------------------------------------------------------------

    async def handle_tag_entered(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        """Enter in the tag input (what a scanner sends): look up without a submit click."""
        await ack()
        actor: Actor = context["actor"]
        view = body.get("view") or {}
        try:
            session = unpack(CollectSession, view.get("private_metadata"), self.secret)
        except ForgedPayload as exc:
            await self.refused(actor, exc)
            await tell_user(client, body, f":warning: {exc.message}")
            return
        code = str(action.get("value") or read_code(form_values(view)))
        try:
            new_view = await self.check_in_view(actor, session, code)
        except DomainError as exc:
            await self.refused(actor, exc)
            new_view = self.scan_view(session, error=exc.message)
        try:
            await client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
        except SlackApiError as exc:
            if exc.response.get("error") != "hash_conflict":
                raise
            log.info("collect: the modal changed meanwhile; not redrawn")

    async def handle_scan_submission(
        self, ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """The Look up button (or Enter where Slack submits the form): the same look-up."""
        actor: Actor = context["actor"]
        try:
            session = unpack(CollectSession, view.get("private_metadata"), self.secret)
            new_view = await self.check_in_view(actor, session, read_code(form_values(view)))
        except DomainError as exc:
            await self.refused(actor, exc)
            await ack(response_action="errors", errors={tag_block(view): exc.message})
            return
        await ack(response_action="update", view=new_view)

    # --- the check-in step ----------------------------------------------------------------

    async def handle_check_in_submission(
        self, ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Check in before the ack: the answer is the next empty scan, with the result on top."""
        actor: Actor = context["actor"]
        try:
            form = unpack(CheckInForm, view.get("private_metadata"), self.secret)
        except ForgedPayload as exc:
            await self.refused(actor, exc)
            fresh = self.scan_view(CollectSession(), error=exc.message)
            await ack(response_action="update", view=fresh)
            return
        session = form.session
        values = form_values(view)
        try:
            cmd = CollectDevice(
                device_id=form.device_id,
                reason=parse_reason(read_reason(values)),
                fee_item_ids=read_fee_ids(values),
                note=read_note(values),
                idempotency_key=f"slack:collect:{form.nonce}",
            )
            async with self.runtime.stores() as store:
                result = await collect_device(self.context(store), Collections(store), actor, cmd)
                await store.commit()
        except DomainError as exc:
            await self.refused(actor, exc)
            block = error_block(exc.field, session.step, fees_shown=has_fee_input(view))
            if block is not None:
                await ack(response_action="errors", errors={block: exc.message})
            else:
                await ack(response_action="update", view=self.scan_view(session, error=exc.message))
            return
        # Back to an empty scan for the next student, with this one's result on top.
        after = self.next_session(session, cmd, result)
        await ack(response_action="update", view=self.scan_view(after, result=result_line(result)))

    @staticmethod
    def next_session(
        session: CollectSession, cmd: CollectDevice, result: CollectionResult
    ) -> CollectSession:
        billed = 0 if result.invoice is None else result.invoice.total_cents
        counted = 1 if result.created else 0
        return CollectSession(
            step=session.step + 1,
            checked_in=session.checked_in + counted,
            billed_cents=session.billed_cents + billed * counted,
            reason=cmd.reason.value,
        )


def register(app: AsyncApp, runtime: Runtime) -> None:
    CollectFeature(runtime).register(app)
