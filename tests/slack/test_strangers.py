"""A Slack user who isn't staff is told whom to ask: the district's IT contact from its
settings (set in `/billing settings` or with `devicecare settings set`), never a command."""

from __future__ import annotations

import pytest

from bot.slack.actors import who_to_ask
from bot.slack.billing_settings_blocks import BillingSettingsIds as Ids
from tests.slack.conftest import SlackHarness
from tests.slack.test_billing_settings_facts import _open, _submit, _values
from workflows.district_facts import DistrictFacts, clean_it_contact
from workflows.errors import ValidationError


@pytest.mark.parametrize(
    ("name", "contact", "ask"),
    [
        (
            "Dana Reyes",
            "helpdesk@district.org",
            "Ask Dana Reyes (helpdesk@district.org) to add you.",
        ),
        ("Dana Reyes", "C0IT123456", "Ask Dana Reyes in <#C0IT123456> to add you."),
        ("Dana Reyes", "#it-help", "Ask Dana Reyes in #it-help to add you."),
        ("", "#it-help", "Ask in #it-help to be added."),
        (
            "",
            "helpdesk@district.org",
            "Ask your district's IT team (helpdesk@district.org) to add you.",
        ),
        ("Dana <Reyes>", "", "Ask Dana &lt;Reyes&gt; to add you."),
        ("", "", "Ask your district's DeviceCare administrator to add you."),
    ],
)
def test_whom_a_stranger_is_told_to_ask(name: str, contact: str, ask: str) -> None:
    text = who_to_ask(DistrictFacts(it_contact_name=name, it_contact=contact))
    assert text == f"You're not set up in DeviceCare yet. {ask}"
    assert "`" not in text  # no command to run


def test_the_it_contact_is_an_email_or_a_slack_channel() -> None:
    assert clean_it_contact(" helpdesk@district.org ") == "helpdesk@district.org"
    assert clean_it_contact("#IT-Help") == "#it-help"
    assert clean_it_contact("<#C0IT123456|it-help>") == "C0IT123456"
    assert clean_it_contact("C0IT123456") == "C0IT123456"
    assert clean_it_contact("") == ""
    for bad in ("call Dana", "it-help", "#", "#it help", "helpdesk@"):
        with pytest.raises(ValidationError, match="email address or a Slack channel"):
            clean_it_contact(bad)


async def set_contact(slack: SlackHarness, name: str, contact: str) -> dict[str, object]:
    await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    values = _values(**{Ids.IT_CONTACT_NAME: name, Ids.IT_CONTACT: contact})
    response = await _submit(slack, "U_FD", view, values)
    return response.json() if response.content else {}


async def test_a_stranger_is_told_to_ask_the_it_contact(slack: SlackHarness) -> None:
    assert await set_contact(slack, "Dana Reyes", "#IT-Help") == {}
    async with slack.runtime.stores() as store:
        settings = await store.settings.get()
        await store.commit()
    assert (settings.it_contact_name, settings.it_contact) == ("Dana Reyes", "#it-help")

    response = await slack.sender.command("/incident", user="U_STRANGER")
    assert response.json() == {
        "response_type": "ephemeral",
        "text": "You're not set up in DeviceCare yet. Ask Dana Reyes in #it-help to add you.",
    }

    # A click (no command to answer) reaches them by DM.
    await slack.sender.interaction(
        {
            "type": "block_actions",
            "user": {"id": "U_STRANGER"},
            "trigger_id": "trigger.x",
            "actions": [{"type": "button", "action_id": "incident_card.close", "value": "x"}],
        }
    )
    [dm] = await slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == "U_STRANGER"
    )
    assert dm.args["text"].endswith("Ask Dana Reyes in #it-help to add you.")


async def test_a_bad_it_contact_is_a_field_error(slack: SlackHarness) -> None:
    answer = await set_contact(slack, "Dana Reyes", "call Dana")
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [Ids.IT_CONTACT]  # type: ignore[call-overload]
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).it_contact == ""
        await store.commit()
