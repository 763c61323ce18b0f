"""Requests the HTTP fuzz suite (tests/fuzz) found mishandled, each refused now with a 4xx or
a clear message, one log line and nothing changed."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from tests.slack.conftest import SlackHarness

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "payload",
    [
        {
            "type": "view_submission",
            "user": {"id": ""},
            "view": {"type": "modal", "callback_id": "incident.new_modal"},
        },
        {"type": "block_actions", "user": {"id": ""}, "actions": [{"action_id": "incident.close"}]},
    ],
)
async def test_an_interaction_from_an_empty_user_id_gets_400(
    slack: SlackHarness, payload: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    # It used to reach the listeners with no one behind it: a KeyError and a 500.
    with caplog.at_level(logging.INFO):
        response = await slack.sender.interaction(payload)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


async def test_a_command_from_an_empty_user_id_gets_400(slack: SlackHarness) -> None:
    response = await slack.sender.command("/incident", user="")
    assert response.status_code == 400
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []


@pytest.mark.parametrize("kind", [["block_actions"], {"a": 1}])
async def test_a_type_that_is_a_list_or_an_object_gets_400(
    slack: SlackHarness, kind: object, caplog: pytest.LogCaptureFixture
) -> None:
    # A list or an object as `type` used to raise TypeError (unhashable) in the gate: a 500.
    payload = {"type": kind, "user": {"id": "U_TECH"}, "actions": [{"action_id": "x"}]}
    with caplog.at_level(logging.INFO):
        response = await slack.sender.interaction(payload)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]


VIEW = {"type": "modal", "callback_id": "incident.new_modal", "state": {"values": {}}}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "view_submission", "user": {"id": "U_TECH"}, "view": VIEW, "response_urls": None},
        {
            "type": "view_submission",
            "user": {"id": "U_TECH"},
            "view": VIEW,
            "response_urls": [{"response_url": "https://a.test"}, {"response_url": "b"}],
        },
        {"type": "view_submission", "user": {"id": "U_TECH"}, "view": VIEW, "authorizations": [5]},
        {"type": "something_new", "user": ["id"]},
        {"type": "something_new", "user": {"id": "U_TECH"}, "message": {"channel": 7}},
    ],
)
async def test_context_the_slack_app_cannot_read_gets_400(
    slack: SlackHarness, payload: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    # The Slack app reads user, channel, team and response URLs from every request before any
    # listener runs; these shapes made it raise (TypeError, AttributeError, KeyError): a 500.
    with caplog.at_level(logging.INFO):
        response = await slack.sender.interaction(payload)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]


async def test_an_event_whose_user_is_a_number_gets_400(slack: SlackHarness) -> None:
    response = await slack.sender.event({"type": "message", "user": 5, "channel": "C_HELP"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": "\x00"}, "actions": [{"action_id": "x"}]},
        {
            "type": "view_submission",
            "user": {"id": "U_TECH"},
            "view": {
                "type": "modal",
                "callback_id": "incident.new_modal",
                "state": {"values": {"b": {"a": {"type": "plain_text_input", "value": "a\x00"}}}},
            },
        },
    ],
)
async def test_a_nul_character_anywhere_gets_400(
    slack: SlackHarness, payload: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL can't store or compare text with NUL in it: looking up such a user raised
    # CharacterNotInRepertoireError, a 500.
    await slack.staff("Technician", "U_TECH")
    with caplog.at_level(logging.INFO):
        response = await slack.sender.interaction(payload)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_command_with_a_nul_character_gets_400(slack: SlackHarness) -> None:
    response = await slack.sender.command("/incident", user="U\x00")
    assert response.status_code == 400
    response = await slack.sender.command("/device", text="5CD\x00")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        {
            "type": "block_actions",
            "user": {"id": "U_TECH"},
            "actions": [{"action_id": "x"}],
            "event": [],
        },
        {
            "type": "block_actions",
            "user": {"id": "U_TECH"},
            "actions": [{"action_id": "x"}],
            "view": None,
        },
        {"type": "something_new", "user": {"id": "U_TECH"}, "view": [1]},
    ],
)
async def test_an_event_or_view_that_is_not_an_object_gets_400(
    slack: SlackHarness, payload: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    # The Slack app reads `event` (to skip its own) and, when no listener takes a request,
    # `view` (to log it) from every request: AttributeError there was a 500.
    await slack.staff("Technician", "U_TECH")
    with caplog.at_level(logging.INFO):
        response = await slack.sender.interaction(payload)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_command_whose_user_field_is_empty_gets_400(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # The Slack app reads a form's `user` before its `user_id`; an empty one left the request
    # with no one behind it, and the listener (which acts as someone) raised KeyError: a 500.
    await slack.staff("SuperAdmin", "U_ADMIN")
    with caplog.at_level(logging.INFO):
        form = {
            "team_id": "T_DISTRICT",
            "api_app_id": "A_DEVICECARE",
            "user_id": "U_ADMIN",
            "user": "",
            "channel_id": "C_HELP",
            "command": "/incident",
            "text": "",
            "trigger_id": "t.1",
        }
        response = await slack.sender.send(urlencode(form), FORM)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if "names no user" in r.getMessage()]) == 1
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []


async def test_an_authorization_whose_own_authorizations_are_odd_gets_400(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # The Slack app reads an authorization as it reads the payload, `authorizations` included:
    # `false` there raised TypeError, a 500.
    event = {"type": "app_home_opened", "user": "U_ADMIN", "tab": "home", "channel": "D_HOME"}
    body = {
        "token": "unused",
        "team_id": "T_DISTRICT",
        "api_app_id": "A_DEVICECARE",
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": 1700000001,
        "event": event,
        "authorizations": [{"team_id": "T_DISTRICT", "user_id": "U_BOT", "authorizations": False}],
    }
    with caplog.at_level(logging.INFO):
        response = await slack.sender.send(json.dumps(body), "application/json")
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
