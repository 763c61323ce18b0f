"""Fuzzing /slack/events: every command, action, modal, suggestion, shortcut and event the Slack
app listens for, signed as Slack signs them but carrying nonsense, and requests the gate must
refuse. Each case: no 5xx, no logged traceback, nothing changed when refused, ledger intact."""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.actors import NOT_SET_UP
from tests.fuzz.http_harness import (
    APP_ID,
    APP_SECRET,
    BILLING_CHANNEL,
    INCIDENTS_CHANNEL,
    STAFF_ROLES,
    TEAM_ID,
    FuzzApp,
    fuzz_app,  # noqa: F401 - the module's app
    fuzz_settings,
)
from tests.fuzz.http_strategies import (
    SlackCase,
    SlackWorld,
    bent_events,
    bent_interactions,
    block_actions,
    block_suggestions,
    events,
    hostile_requests,
    listeners,
    shortcuts,
    slack_headers,
    slash_commands,
    view_submissions,
)
from tests.slack.signing import SIGNING_SECRET


def _listeners() -> Any:
    """What the app listens for, read from the features' own `register` calls."""
    from pathlib import Path

    from bot.runtime import build_runtime
    from bot.settings import Settings

    runtime = build_runtime(
        Settings(
            _env_file=None, database_url="sqlite+aiosqlite:///unused.db", blob_dir=Path("unused")
        )
    )
    return listeners(runtime)


LISTENERS = _listeners()
WORLD = SlackWorld(
    listeners=LISTENERS,
    users=(*STAFF_ROLES, "U_STRANGER", "W_OTHER"),
    staff=len(STAFF_ROLES),
    channels=(INCIDENTS_CHANNEL, BILLING_CHANNEL, "C_HELP", "D_HOME"),
    ids=tuple(range(1, 9)),
    secret=APP_SECRET,
    team_id=TEAM_ID,
    app_id=APP_ID,
)


def _texts(response: httpx.Response, calls: list[Any]) -> list[str]:
    texts = [str(call.args.get("text") or "") for call in calls]
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if isinstance(answer, dict):
        texts.append(str(answer.get("text") or ""))
        if answer.get("response_action") == "errors":
            texts.append(":warning: " + json.dumps(answer.get("errors")))
    else:
        texts.append(str(answer))
    return texts


def _refused_for(case: SlackCase) -> Any:
    """A request from someone not on staff is refused whatever it asks; anyone else's is
    refused when the app answers with a warning or a modal's field errors."""
    stranger = case.user not in STAFF_ROLES

    def refused(response: httpx.Response, calls: list[Any]) -> bool:
        if stranger and not case.what.startswith("event"):
            return True
        prefix = NOT_SET_UP.split("{")[0]
        return any(t.startswith(":warning:") or prefix in t for t in _texts(response, calls))

    return refused


def _send(app: FuzzApp, case: SlackCase) -> Any:
    async def send() -> httpx.Response:
        headers = case.headers or slack_headers(SIGNING_SECRET, case.body, case.content_type)
        return await app.http.post("/slack/events", content=case.body, headers=headers)

    label = case.what.split(" ")[0]
    return app.run(
        app.check(send, refused=_refused_for(case), describe=case.describe(), label=label)
    )


def test_every_listener_is_fuzzed() -> None:
    """The manifest's commands are the ones the app registers, and every kind of listener
    is found (so a strategy isn't quietly empty)."""
    from pathlib import Path

    manifest = yaml.safe_load(Path("bot/slack/manifest.yml").read_text())
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == set(LISTENERS.commands)
    shortcuts_ = {s["callback_id"] for s in manifest["features"]["shortcuts"]}
    assert shortcuts_ == set(LISTENERS.shortcuts)
    for kind in ("actions", "views", "options", "events", "billing_subcommands", "payloads"):
        assert getattr(LISTENERS, kind), kind


@fuzz_settings(150)
@given(case=slash_commands(WORLD))
def test_slash_commands(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(200)
@given(case=block_actions(WORLD))
def test_block_actions(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(150)
@given(case=view_submissions(WORLD))
def test_view_submissions(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(60)
@given(case=st.one_of(block_suggestions(WORLD), shortcuts(WORLD)))
def test_suggestions_and_shortcuts(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(100)
@given(case=st.one_of(events(WORLD), bent_events(WORLD)))
def test_events(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(150)
@given(case=bent_interactions(WORLD))
def test_interactions_bent_anywhere(fuzz_app: FuzzApp, case: SlackCase) -> None:  # noqa: F811
    _send(fuzz_app, case)


@fuzz_settings(150)
@given(case=hostile_requests(SIGNING_SECRET, WORLD))
def test_the_gate_refuses_what_slack_did_not_send(
    fuzz_app: FuzzApp,  # noqa: F811
    case: SlackCase,
) -> None:
    answer = _send(fuzz_app, case)
    assert 400 <= answer.status < 500, case.describe()
