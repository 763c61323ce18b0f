"""`/billing enroll`: enroll a student in an insurance policy from Slack.

The modal picks the student (type-ahead), the policy and an optional premium waiver reason;
the workflow checks the permission again on submit, and a redelivered submission finds the
enrollment the first one made.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.enrollment_blocks import (
    FIELD_BLOCKS,
    EnrollForm,
    EnrollmentField,
    EnrollmentView,
    build_enroll_modal,
    enrolled_text,
    no_policies_text,
    read_enroll_form,
    student_option,
)
from bot.slack.errors import after_ack, modal_errors, record_refusal, tell_user
from bot.slack.metadata import ForgedPayload, pack, unpack
from storage.enrollment_store import enrollable_policies, search_students
from workflows.enrollment import (
    EnrollmentSource,
    EnrollStudent,
    check_enrollment,
    enroll_student,
)
from workflows.errors import DomainError, PermissionDenied
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

WHAT = "insurance enrollment"


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)

    async def open_enroll(call: BillingCall) -> None:
        try:
            require(call.actor, Permission.MANAGE_ENROLLMENTS)
        except PermissionDenied as exc:
            await call.ack(response_type="ephemeral", text=f":warning: {exc.message}")
            await record_refusal(runtime, call.actor, WHAT, exc.message)
            return
        async with runtime.reads() as store:
            policies = await enrollable_policies(store.session)
        if not policies:
            await call.ack(response_type="ephemeral", text=no_policies_text())
            return
        await call.ack()
        form = EnrollForm(
            user_id=call.command["user_id"], channel_id=call.command.get("channel_id") or None
        )
        await call.client.views_open(
            trigger_id=call.command["trigger_id"],
            view=build_enroll_modal(policies, pack(form, secret)),
        )

    add_subcommand(
        app,
        "enroll",
        "enrolls a student in an insurance policy and bills the premium.",
        open_enroll,
    )

    @app.options(EnrollmentField.STUDENT.value)
    async def handle_student_options(ack: AsyncAck, payload: dict[str, Any]) -> None:
        async with runtime.reads() as store:
            students = await search_students(store.session, str(payload.get("value") or ""))
        await ack(options=[student_option(s) for s in students])

    async def check(
        actor: Actor, body: dict[str, Any], view: dict[str, Any]
    ) -> tuple[EnrollForm, EnrollStudent]:
        """The form read and checked without writing."""
        form = unpack(EnrollForm, view.get("private_metadata"), secret)
        if form.user_id != body["user"]["id"]:
            raise PermissionDenied("That form was opened by someone else.")
        choice = read_enroll_form((view.get("state") or {}).get("values") or {})
        cmd = EnrollStudent(
            student_id=choice.student_id,
            policy_id=choice.policy_id,
            waiver_reason=choice.waiver_reason,
            source=EnrollmentSource.STAFF,
        )
        async with runtime.reads() as store:
            await check_enrollment(Context(store, runtime.clock, runtime.settings.tz), actor, cmd)
        return form, cmd

    async def handle_enroll_submission(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """A broken rule is shown next to its field; `enroll_submitted` does the writing."""
        actor: Actor = context["actor"]
        try:
            await check(actor, body, view)
        except DomainError as exc:
            errors = modal_errors(exc, FIELD_BLOCKS, EnrollmentField.STUDENT)
            await ack(response_action="errors", errors=errors)
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(runtime, actor, WHAT, exc.message)
            return
        await ack()

    async def enroll_submitted(
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            form, cmd = await check(actor, body, view)
        except DomainError:
            return  # the form was answered with the error next to its field
        where: dict[str, Any] = {"user": {"id": form.user_id}}
        if form.channel_id:
            where["channel_id"] = form.channel_id
        async with after_ack(runtime, client, where, "enroll the student", actor):
            async with runtime.stores() as store:
                done = await enroll_student(
                    Context(store, runtime.clock, runtime.settings.tz), actor, cmd
                )
                student = await store.get_student(cmd.student_id)
                name = "The student" if student is None else student.full_name
            await tell_user(client, where, enrolled_text(done, name))

    app.view(EnrollmentView.ENROLL.value)(ack=handle_enroll_submission, lazy=[enroll_submitted])
