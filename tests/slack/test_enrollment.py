"""`/billing enroll` end to end, and the device record's coverage lines."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.slack.enrollment_blocks import EnrollForm, EnrollmentField, EnrollmentView
from bot.slack.metadata import pack
from storage import models as m
from storage.device_coverage import import_coverage
from tests.builders import add_district, add_enrollable_policy
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import all_text, eventually

CLERK = "U_CLERK"
TECH = "U_TECH"


async def _open(slack: SlackHarness, user: str) -> dict[str, Any]:
    response = await slack.sender.command("/billing", "enroll", user=user)
    assert response.status_code == 200
    call = (await slack.fake.wait_for("views.open"))[-1]
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


async def _suggest(slack: SlackHarness, user: str, text: str) -> list[dict[str, Any]]:
    response = await slack.sender.interaction(
        {
            "type": "block_suggestion",
            "user": {"id": user},
            "action_id": EnrollmentField.STUDENT,
            "block_id": EnrollmentField.STUDENT,
            "value": text,
            "view": {"id": "V_ENROLL", "callback_id": EnrollmentView.ENROLL, "type": "modal"},
        }
    )
    assert response.status_code == 200
    options: list[dict[str, Any]] = response.json()["options"]
    return options


def _values(student: str, policy: str, waiver: str | None = None) -> dict[str, Any]:
    return {
        EnrollmentField.STUDENT: {
            EnrollmentField.STUDENT: {
                "type": "external_select",
                "selected_option": {"value": student},
            }
        },
        EnrollmentField.POLICY: {
            EnrollmentField.POLICY: {"type": "static_select", "selected_option": {"value": policy}}
        },
        EnrollmentField.WAIVER: {
            EnrollmentField.WAIVER: {"type": "plain_text_input", "value": waiver}
        },
    }


async def _submit(
    slack: SlackHarness,
    user: str,
    view: dict[str, Any],
    values: dict[str, Any],
    view_id: str = "V_ENROLL",
) -> Any:
    return await slack.sender.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                "id": view_id,
                "type": "modal",
                "callback_id": EnrollmentView.ENROLL,
                "private_metadata": view["private_metadata"],
                "state": {"values": values},
            },
        }
    )


async def _count(slack: SlackHarness, model: type) -> int:
    async with slack.runtime.stores() as store:
        stmt = select(func.count()).select_from(model)
        result = int((await store.session.execute(stmt)).scalar_one())
        await store.commit()
        return result


async def test_clerk_enrolls_a_student_once(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    policy_id = await add_enrollable_policy(slack.runtime.stores)
    await slack.staff("Billing Clerk", CLERK)
    view = await _open(slack, CLERK)
    assert view["callback_id"] == EnrollmentView.ENROLL
    policy_select = view["blocks"][1]["element"]
    assert policy_select["options"][0]["value"] == str(policy_id)
    assert (
        "Device Protection Plan \u00b7 2025-2026 \u00b7 $25.00"
        in (policy_select["options"][0]["text"]["text"])
    )
    options = await _suggest(slack, CLERK, "ana riv")
    assert [o["value"] for o in options] == [str(d.student_id)]
    assert "Ana Rivera \u00b7 grade 7 \u00b7 S1" == options[0]["text"]["text"]
    assert [o["value"] for o in await _suggest(slack, CLERK, "S1")] == [str(d.student_id)]

    response = await _submit(slack, CLERK, view, _values(str(d.student_id), str(policy_id)))
    assert response.status_code == 200 and response.content in (b"", b"{}")
    said = await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == CLERK)
    text = said[-1].args["text"]
    assert said[-1].args["channel"] == "C_HELP"
    assert "Ana Rivera is enrolled in *Device Protection Plan* (2025-2026)" in text
    assert "Premium invoice *INV-000001* for $25.00" in text
    assert "Coverage starts when the premium is paid" in text

    # Slack redelivers the submission: nothing more is enrolled or billed.
    again = await _submit(slack, CLERK, view, _values(str(d.student_id), str(policy_id)))
    assert again.status_code == 200
    said = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: c.args["user"] == CLERK, count=2
    )
    assert "was already enrolled" in said[-1].args["text"]
    assert await _count(slack, m.InsuranceEnrollment) == 1
    assert await _count(slack, m.Invoice) == 1


async def test_waiver_and_field_errors(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    policy_id = await add_enrollable_policy(slack.runtime.stores)
    await add_enrollable_policy(
        slack.runtime.stores, name="Closed Plan", window=(date(2025, 7, 1), date(2025, 9, 30))
    )
    await slack.staff("Billing Clerk", CLERK)
    view = await _open(slack, CLERK)
    closed_id = view["blocks"][1]["element"]["options"][0]["value"]  # sorted by name
    response = await _submit(slack, CLERK, view, _values(str(d.student_id), closed_id))
    body = response.json()
    assert body["response_action"] == "errors"
    assert "closed on Sep 30, 2025" in body["errors"][EnrollmentField.POLICY]
    response = await _submit(slack, CLERK, view, _values("", str(policy_id)))
    assert response.json()["errors"] == {EnrollmentField.STUDENT: "Pick the student."}
    assert await _count(slack, m.InsuranceEnrollment) == 0

    await _submit(slack, CLERK, view, _values(str(d.student_id), str(policy_id), "Free lunch"))
    said = await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == CLERK)
    text = said[-1].args["text"]
    assert "Premium $25.00 waived on invoice *INV-000001* (Free lunch)" in text
    assert "Coverage is active from Mar 2, 2026" in text


async def test_without_manage_enrollments_nothing_opens_or_changes(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    policy_id = await add_enrollable_policy(slack.runtime.stores)
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Technician", TECH)
    response = await slack.sender.command("/billing", "enroll", user=TECH)
    assert "Manage Enrollments" in response.json()["text"]
    assert slack.fake.calls_to("views.open") == []
    # A technician replaying the clerk's form (or crafting one) is refused and logged.
    view = await _open(slack, CLERK)
    response = await _submit(slack, TECH, view, _values(str(d.student_id), str(policy_id)))
    assert response.json()["response_action"] == "errors"
    # A form of their own (as if the permission was removed after it opened) is refused by
    # the workflow on the server.
    own = {"private_metadata": pack(EnrollForm(user_id=TECH), "test-secret-key")}
    response = await _submit(slack, TECH, own, _values(str(d.student_id), str(policy_id)))
    errors = response.json()["errors"]
    assert "does not have the Manage Enrollments permission" in errors[EnrollmentField.STUDENT]
    assert await _count(slack, m.InsuranceEnrollment) == 0

    async def three_refusals() -> bool:
        # A refusal is recorded just after the ack that answers it.
        async with slack.runtime.stores() as store:
            stmt = select(m.ActivityEntry).where(m.ActivityEntry.action == "refused")
            result = len((await store.session.execute(stmt)).scalars().all()) == 3
            await store.commit()
            return result

    await eventually(three_refusals, what="three refusals in the activity log")


async def test_device_record_shows_applecare_and_the_enrollment(
    slack: SlackHarness, tmp_path: Path
) -> None:
    d = await add_district(slack.runtime.stores)
    policy_id = await add_enrollable_policy(slack.runtime.stores)
    await slack.staff("Billing Clerk", CLERK)
    csv_file = tmp_path / "applecare.csv"
    csv_file.write_text(
        "Serial Number,Coverage Description,Coverage Start Date,Coverage End Date\n"
        "5CD1234XYZ,AppleCare+ for Schools,2025-09-01,2027-08-31\n",
        encoding="utf-8",
    )
    async with slack.runtime.stores() as store:
        await import_coverage(store.session, csv_file, slack.clock.now())
        await store.commit()
    view = await _open(slack, CLERK)
    await _submit(slack, CLERK, view, _values(str(d.student_id), str(policy_id)))
    await slack.fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == CLERK)

    response = await slack.sender.command("/device", "5CD1234XYZ", user=CLERK)
    text = all_text(response.json()["blocks"])
    assert ":large_blue_circle: AppleCare+ for Schools until Aug 31, 2027" in text
    assert "Device Protection Plan 2025-2026: awaiting premium" in text
    assert "No Active Coverage" in text
