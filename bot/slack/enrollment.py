"""`/billing enroll`: enroll a student in an insurance policy from Slack.

The modal picks the student (type-ahead), the policy and an optional premium waiver reason;
the workflow checks the permission again on submit, and a redelivered submission finds the
enrollment the first one made.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.runtime import Runtime
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
from bot.slack.errors import tell_user
from bot.slack.listeners import Command, ModalForm, Submitted, on_subcommand, wire
from bot.slack.metadata import pack
from storage.enrollment_store import enrollable_policies, search_students
from workflows.enrollment import (
    EnrollmentSource,
    EnrollStudent,
    check_enrollment,
    enroll_student,
)
from workflows.errors import PermissionDenied
from workflows.i18n import N_, _
from workflows.permissions import Permission, require

WHAT = "insurance enrollment"


@on_subcommand(
    "enroll",
    N_("enrolls a student in an insurance policy and bills the premium."),
    what=WHAT,
    refusal=":warning: {}",
)
async def handle_billing_enroll(cmd: Command) -> None:
    # The workflow's own refusal ("Your role (…) does not have …"), answered in the ack.
    require(cmd.actor, Permission.MANAGE_ENROLLMENTS)
    async with cmd.runtime.reads() as store:
        policies = await enrollable_policies(store)
    if not policies:
        await cmd.ack(no_policies_text())
        return
    await cmd.ack()
    form = EnrollForm(user_id=cmd.body["user_id"], channel_id=cmd.body.get("channel_id") or None)
    await cmd.open_view(build_enroll_modal(policies, pack(form, cmd.keys)))


def _where(form: Submitted[EnrollForm]) -> dict[str, Any]:
    """Where `/billing enroll` was typed: the result (or a failure) is told there."""
    where: dict[str, Any] = {"user": {"id": form.meta.user_id}}
    if form.meta.channel_id:
        where["channel_id"] = form.meta.channel_id
    return where


enroll_form: ModalForm[EnrollForm, EnrollStudent] = ModalForm(
    EnrollmentView.ENROLL.value,
    meta=EnrollForm,
    what=WHAT,
    doing=N_("enroll the student"),
    fields=FIELD_BLOCKS,
    default_field=EnrollmentField.STUDENT,
    shown_only=False,
    reply_to=_where,
)


@enroll_form.check
async def check_enroll_form(form: Submitted[EnrollForm]) -> EnrollStudent:
    """The form read and checked without writing."""
    if form.meta.user_id != form.body["user"]["id"]:
        raise PermissionDenied(_("That form was opened by someone else."))
    choice = read_enroll_form(form.values)
    command = EnrollStudent(
        student_id=choice.student_id,
        policy_id=choice.policy_id,
        waiver_reason=choice.waiver_reason,
        source=EnrollmentSource.STAFF,
    )
    return await form.checked_by(check_enrollment, command)


@enroll_form.write
async def enroll_submitted(form: Submitted[EnrollForm], command: EnrollStudent) -> None:
    async with form.runtime.stores() as store:
        done = await enroll_student(form.context(store), form.actor, command)
        student = await store.people.student(command.student_id)
        name = _("The student") if student is None else student.full_name
        await store.commit()
    await tell_user(form.client, _where(form), enrolled_text(done, name))


def register(app: AsyncApp, runtime: Runtime) -> None:
    @app.options(EnrollmentField.STUDENT.value)
    async def handle_student_options(ack: AsyncAck, payload: dict[str, Any]) -> None:
        async with runtime.reads() as store:
            students = await search_students(store, str(payload.get("value") or ""))
        await ack(options=[student_option(s) for s in students])

    wire(app, runtime, handle_billing_enroll, enroll_form)
