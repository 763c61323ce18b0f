"""The manifest a district installs lists exactly what the app answers."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.slack.conftest import SlackHarness

MANIFEST = Path(__file__).resolve().parents[2] / "bot" / "slack" / "manifest.yml"


def _manifest() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(MANIFEST.read_text())


def test_manifest_uses_one_url_for_everything() -> None:
    manifest = _manifest()
    settings = manifest["settings"]
    urls = {command["url"] for command in manifest["features"]["slash_commands"]}
    urls |= {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        settings["interactivity"]["message_menu_options_url"],
    }
    assert urls == {"https://devicecare.example.org/slack/events"}
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "users:read.email", "files:read"} <= scopes


async def test_every_command_and_shortcut_is_answered(slack: SlackHarness) -> None:
    await slack.staff("SuperAdmin", "U_ADMIN")
    manifest = _manifest()
    for command in manifest["features"]["slash_commands"]:
        response = await slack.sender.command(command["command"], "", user="U_ADMIN")
        assert response.status_code == 200, command["command"]
    for shortcut in manifest["features"]["shortcuts"]:
        payload = {
            "type": "shortcut" if shortcut["type"] == "global" else "message_action",
            "callback_id": shortcut["callback_id"],
            "trigger_id": "t.1",
            "user": {"id": "U_ADMIN"},
            "channel": {"id": "C_HELP"},
            "message": {"ts": "1700000000.000100", "text": "Screen cracked"},
            "message_ts": "1700000000.000100",
            "response_url": "https://hooks.test/1",
        }
        response = await slack.sender.interaction(payload)
        assert response.status_code == 200, shortcut["callback_id"]
    for event in manifest["settings"]["event_subscriptions"]["bot_events"]:
        kind = event.split(".")[0]
        body = {
            "type": kind,
            "user": "U_ADMIN",
            "channel": "C_HELP",
            "ts": "1.2",
            "text": "hello",
            "tab": "home",
        }
        response = await slack.sender.event(body)
        assert response.status_code == 200, event
