"""Hostile requests to /slack/events: refused with a 4xx and one log line, never a 5xx."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from bot.slack.gate import Installation, WorkspaceIdentity
from storage import models as m
from tests.slack.conftest import SlackHarness
from tests.slack.signing import slack_signature

FORM = "application/x-www-form-urlencoded"


def _interaction_body(payload: Any) -> str:
    return urlencode({"payload": json.dumps(payload)})


@pytest.mark.parametrize(
    ("body", "content_type", "timestamp"),
    [
        ("payload=%7Bnot json", FORM, None),
        ("{not json", "application/json", None),
        ("command=%2Fincident", FORM, "yesterday"),
        ("command=%2Fincident", FORM, ""),
        ("\udcff", FORM, None),
    ],
)
async def test_unsigned_requests_are_refused_before_their_body_is_read(
    slack: SlackHarness,
    body: str,
    content_type: str,
    timestamp: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {"Content-Type": content_type, "X-Slack-Signature": "v0=" + "0" * 64}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    else:
        headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
    content = body.encode("utf-8", "surrogateescape")
    with caplog.at_level(logging.INFO):
        response = await slack.sender.http.post("/slack/events", content=content, headers=headers)
    assert response.status_code == 401
    assert slack.fake.calls == []
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


async def test_a_request_without_signature_headers_is_refused(slack: SlackHarness) -> None:
    response = await slack.sender.http.post(
        "/slack/events", content=b"command=%2Fincident", headers={"Content-Type": FORM}
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": "U_TECH"}, "actions": None},
        {"type": "block_actions", "user": {"id": "U_TECH"}, "actions": [None]},
        {"type": "block_actions", "user": {"id": "U_TECH"}, "actions": "x"},
        {"type": "view_submission", "user": {"id": "U_TECH"}, "view": None},
        {"type": "view_submission", "user": {"id": "U_TECH"}, "view": {"callback_id": "x"}},
        {
            "type": "view_submission",
            "user": {"id": "U_TECH"},
            "view": {"type": "modal", "state": {"values": None}},
        },
        {"type": "block_suggestion", "user": {"id": "U_TECH"}, "value": None},
        {"type": "shortcut", "user": None},
        {"type": "block_actions", "user": "U_TECH", "actions": []},
        {"type": 5},
        {
            "type": "block_actions",
            "user": {"id": "U_TECH"},
            "actions": [{"action_id": "a", "value": 5}],
        },
        {
            "type": "block_actions",
            "user": {"id": "U_TECH"},
            "actions": [{"action_id": "a", "selected_option": "x"}],
        },
        {
            "type": "view_submission",
            "user": {"id": "U_TECH"},
            "view": {"type": "modal", "state": {"values": {"b": {"a": {"value": ["x"]}}}}},
        },
        {
            "type": "view_submission",
            "user": {"id": "U_TECH"},
            "view": {"type": "modal", "state": {"values": {"b": {"a": {"selected_users": [1]}}}}},
        },
        [1, 2, 3],
        "a string",
        7,
        None,
    ],
)
async def test_signed_but_malformed_interactions_get_400(
    slack: SlackHarness, payload: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await slack.staff("Technician", "U_TECH")
    if isinstance(payload, dict):
        payload = {"team": {"id": "T_DISTRICT"}, "api_app_id": "A_DEVICECARE", **payload}
    with caplog.at_level(logging.INFO):
        response = await slack.sender.send(_interaction_body(payload), FORM)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("[1, 2]", "application/json"),
        ('"event_callback"', "application/json"),
        ('{"type": "event_callback", "team_id": "T_DISTRICT", "event": null}', "application/json"),
        (
            '{"type": "event_callback", "team_id": "T_DISTRICT", "event": {"type": 3}}',
            "application/json",
        ),
        ("[" * 100_000 + "]" * 100_000, "application/json"),
        ("payload=" + "%5B" * 50_000, FORM),
        ("command=%2Fincident&text=%FF%FE", FORM),
    ],
)
async def test_signed_but_undecodable_bodies_get_400(
    slack: SlackHarness, body: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await slack.sender.send(body, content_type)
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_signed_non_utf8_body_gets_400(slack: SlackHarness) -> None:
    body = b"command=/incident&text=\xff\xfe"
    ts = str(int(time.time()))
    base = f"v0:{ts}:".encode() + body
    import hashlib
    import hmac

    signature = "v0=" + hmac.new(slack.sender.secret.encode(), base, hashlib.sha256).hexdigest()
    response = await slack.sender.http.post(
        "/slack/events",
        content=body,
        headers={
            "Content-Type": FORM,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
        },
    )
    assert response.status_code == 400


async def test_a_body_over_one_megabyte_is_refused_while_streaming(slack: SlackHarness) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(30 * 16):  # 30 MB in 64 KB pieces, with no Content-Length
            sent += 64 * 1024
            yield b"a" * (64 * 1024)

    ts = str(int(time.time()))
    response = await slack.sender.http.post(
        "/slack/events",
        content=chunks(),
        headers={
            "Content-Type": FORM,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    assert response.status_code == 413
    assert sent <= 2 * 1024 * 1024


async def test_a_declared_length_over_the_limit_is_refused_unread(slack: SlackHarness) -> None:
    body = "command=%2Fincident&text=" + "a" * (1024 * 1024)
    response = await slack.sender.send(body, FORM)
    assert response.status_code == 413
    assert slack.fake.calls == []


async def test_another_workspace_is_refused_and_nothing_changes(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await slack.staff("Technician", "U_TECH")
    with caplog.at_level(logging.INFO):
        response = await slack.sender.command("/incident", team_id="T_OTHER")
    assert response.status_code == 403
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []
    assert len([r for r in caplog.records if "T_OTHER" in r.getMessage()]) == 1


async def test_another_app_is_refused(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.command("/incident", api_app_id="A_OTHER")
    assert response.status_code == 403
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []


async def test_another_workspace_interaction_is_refused(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    payload = {
        "type": "block_actions",
        "team": {"id": "T_OTHER"},
        "user": {"id": "U_TECH"},
        "actions": [{"action_id": "x", "block_id": "b", "type": "button", "value": "v"}],
        "trigger_id": "t",
    }
    response = await slack.sender.interaction(payload)
    assert response.status_code == 403


async def test_our_workspace_is_learned_from_auth_test(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.command("/incident")
    assert response.status_code == 200
    assert [c.method for c in slack.fake.calls][:1] == ["auth.test"]
    asked = len(slack.fake.calls_to("auth.test"))
    await slack.sender.command("/incident")
    assert len(slack.fake.calls_to("auth.test")) == asked


async def test_url_verification_needs_no_workspace(slack: SlackHarness) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "unused"})
    response = await slack.sender.send(body, "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": "abc"}


async def test_a_valid_signature_over_other_bytes_is_refused(slack: SlackHarness) -> None:
    ts = str(int(time.time()))
    signature = slack_signature(slack.sender.secret, ts, "command=%2Fincident")
    response = await slack.sender.send(
        "command=%2Fwaive", FORM, timestamp=int(ts), signature=signature
    )
    assert response.status_code == 401


async def test_another_workspace_cannot_waive(slack: SlackHarness) -> None:
    from bot.slack.waiver_blocks import WaiverAction
    from tests.slack.money_helpers import submission
    from tests.slack.test_waivers import CLERK, open_modal, row, setup, waive_values

    invoice_id = await setup(slack)
    modal = await open_modal(slack, CLERK, WaiverAction.OPEN_WAIVE)
    async with slack.runtime.reads() as store:
        activity = await store.session.scalar(select(func.count()).select_from(m.ActivityEntry))
    payload = submission(CLERK, modal, "V_WAIVE", waive_values("5.00"))
    payload["team"] = {"id": "T_OTHER", "domain": "elsewhere"}
    response = await slack.sender.interaction(payload)
    assert response.status_code == 403
    assert (await row(slack, invoice_id)).waived_cents == 0
    async with slack.runtime.reads() as store:
        after = await store.session.scalar(select(func.count()).select_from(m.ActivityEntry))
    assert after == activity
    # The same submission from our own workspace is served.
    payload["team"] = {"id": "T_DISTRICT", "domain": "district"}
    assert (await slack.sender.interaction(payload)).status_code == 200
    await slack.fake.wait_for("views.update", lambda c: c.args.get("view_id") == "V_WAIVE")
    assert (await row(slack, invoice_id)).waived_cents == 500  # written after the answer


async def test_until_slack_says_which_workspace_requests_wait(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    slack.fake.fail_next("auth.test", status=400)
    waiting = await slack.sender.command("/incident")
    assert waiting.status_code == 503
    assert waiting.headers["Retry-After"] == "30"
    assert (await slack.sender.command("/incident")).status_code == 200


async def test_a_configured_workspace_is_not_asked_for(slack: SlackHarness) -> None:
    identity = WorkspaceIdentity(slack.worker_client, "T_CONFIGURED", "A_CONFIGURED")
    assert await identity.installation() == Installation("T_CONFIGURED", "A_CONFIGURED")
    assert slack.fake.calls_to("auth.test") == []
    # Only the app is configured: the workspace is learned, the app kept as configured.
    identity = WorkspaceIdentity(slack.worker_client, None, "A_CONFIGURED")
    assert await identity.installation() == Installation("T_DISTRICT", "A_CONFIGURED")


async def test_slacks_certificate_check_is_answered(slack: SlackHarness) -> None:
    response = await slack.sender.send("ssl_check=1&token=unused", FORM)
    assert response.status_code == 200


async def test_a_command_that_says_payload_is_still_judged_by_its_workspace(
    slack: SlackHarness,
) -> None:
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.command("/incident", text="payload", team_id="T_OTHER")
    assert response.status_code == 403
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []


async def test_a_body_read_two_ways_is_refused(slack: SlackHarness) -> None:
    body = "team_id=T_DISTRICT&command=%2Fincident&user_id=U_TECH"
    ts = str(int(time.time()))
    headers = [
        ("Content-Type", FORM),
        ("Content-Type", "application/json"),
        ("X-Slack-Request-Timestamp", ts),
        ("X-Slack-Signature", slack_signature(slack.sender.secret, ts, body)),
    ]
    response = await slack.sender.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 400


async def test_socket_mode_serves_only_this_workspace(slack: SlackHarness) -> None:
    from slack_bolt.request.async_request import AsyncBoltRequest

    from bot.slack.app import build_slack_app

    await slack.staff("Technician", "U_TECH")
    settings = slack.runtime.settings.model_copy(update={"slack_app_token": "xapp-test"})
    runtime = replace(slack.runtime, settings=settings)
    app = build_slack_app(runtime, slack.worker_client)

    def command(team_id: str) -> AsyncBoltRequest:
        form = {
            "team_id": team_id,
            "api_app_id": "A_DEVICECARE",
            "user_id": "U_TECH",
            "channel_id": "C_HELP",
            "command": "/incident",
            "text": "",
            "trigger_id": "trigger.1",
            "response_url": "https://hooks.slack.test/commands/1",
        }
        return AsyncBoltRequest(body=form, mode="socket_mode")

    refused = await app.async_dispatch(command("T_OTHER"))
    assert refused.status == 403
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []
    served = await app.async_dispatch(command("T_DISTRICT"))
    assert served.status == 200


async def test_a_client_leaving_mid_body_is_one_log_line(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.slack.app import build_slack_app
    from bot.web.app import create_web_app

    # Driven over raw ASGI: an HTTP client can't leave halfway through its own body.
    web = create_web_app(slack.runtime, build_slack_app(slack.runtime, slack.worker_client))
    messages = [
        {"type": "http.request", "body": b"command=%2Fin", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/slack/events",
        "raw_path": b"/slack/events",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("devicecare.test", 80),
        "headers": [(b"content-type", FORM.encode()), (b"content-length", b"100")],
    }
    with caplog.at_level(logging.INFO):
        await web(scope, receive, send)
    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.exc_info]
