"""Photos from Slack: dropped into an incident card's thread or uploaded in the modals, each one
downloaded with the bot token, checked by content, stored, and attached at most once."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

import pytest
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.slack.ids import IncidentAction, SlackPostKind
from bot.slack.incident_blocks import IncidentField, IncidentView
from bot.slack.photos import _may_carry_token, download_slack_file
from storage import models as m
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import BOT_TOKEN, Call, FakeFile
from tests.slack.test_incidents import (
    blocks_text,
    button_value,
    click,
    district_with_incident,
    eventually,
    open_new_incident_modal,
    state,
    submit,
    view_of,
)
from workflows.errors import ValidationError

MB = 1024 * 1024


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 90, 200, 255)).save(out, "PNG")
    return out.getvalue()


async def card_ts(slack: SlackHarness) -> str:
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, 1)
        await store.commit()
    assert post is not None
    return post.ts


def thread_event(
    thread_ts: str,
    files: list[tuple[str, str]],
    *,
    user: str = "U_TECH",
    channel: str = INCIDENTS_CHANNEL,
) -> dict[str, Any]:
    return {
        "type": "message",
        "subtype": "file_share",
        "channel": channel,
        "user": user,
        "ts": "1700000500.000100",
        "thread_ts": thread_ts,
        "text": "",
        "files": [{"id": fid, "name": name} for fid, name in files],
    }


def replies(slack: SlackHarness, thread_ts: str) -> list[Call]:
    return [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread_ts
    ]


async def wait_reply(slack: SlackHarness, thread_ts: str, count: int = 1) -> list[Call]:
    return await slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread_ts, count=count
    )


async def photos(slack: SlackHarness) -> list[m.Photo]:
    async with slack.runtime.stores() as store:
        result = list((await store.session.execute(select(m.Photo).order_by(m.Photo.id))).scalars())
        await store.commit()
        return result


# --- the card's thread ------------------------------------------------------------------------


async def test_a_photo_in_the_thread_is_attached(slack: SlackHarness) -> None:
    d, _ = await district_with_incident(slack)
    ts = await card_ts(slack)
    data = jpeg()
    slack.fake.add_file(FakeFile("F1", "crack.jpg", data))
    response = await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")]))
    assert response.status_code == 200

    [reply] = await wait_reply(slack, ts)
    assert reply.args["channel"] == INCIDENTS_CHANNEL
    assert reply.args["text"] == ":camera: Added 1 photo to incident #1: crack.jpg"
    assert slack.fake.downloads == [("F1", f"Bearer {BOT_TOKEN}")]
    [photo] = await photos(slack)
    assert (photo.incident_id, photo.device_id) == (1, d.device_id)  # the device's for life
    assert (photo.source, photo.source_ref, photo.original_filename) == ("slack", "F1", "crack.jpg")
    assert (photo.content_type, photo.width, photo.height) == ("image/jpeg", 64, 48)
    stored = await slack.runtime.blobs.get(photo.blob_key)  # re-encoded, never kept as sent
    assert Image.open(io.BytesIO(stored)).size == (64, 48) and len(stored) == photo.size_bytes

    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    assert update.args["ts"] == ts and "1 photo" in blocks_text(update.args["blocks"])


async def test_oversized_and_non_image_files_are_refused_with_reasons(
    slack: SlackHarness,
) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    slack.fake.add_file(
        FakeFile("F_BIG", "scan.png", os.urandom(int(7.2 * MB)), mimetype="image/png")
    )
    slack.fake.add_file(
        FakeFile("F_HEIC", "IMG_1.heic", b"not really a heic file", mimetype="image/heic")
    )
    slack.fake.add_file(
        FakeFile("F_HTML", "photo.jpg", b"<html><body>hi</body></html>", mimetype="text/html")
    )
    slack.fake.add_file(FakeFile("F_OK", "ok.png", png(), mimetype="image/png"))
    files = [
        ("F_BIG", "scan.png"),
        ("F_HEIC", "IMG_1.heic"),
        ("F_HTML", "photo.jpg"),
        ("F_OK", "ok.png"),
    ]
    await slack.sender.event(thread_event(ts, files))

    [reply] = await wait_reply(slack, ts)
    lines = reply.args["text"].split("\n")
    assert lines[0] == ":camera: Added 1 photo to incident #1: ok.png"
    assert lines[1] == ":warning: scan.png is 7.2 MB; photos can be at most 5 MB."
    assert lines[2].startswith(":warning: IMG_1.heic isn't a photo DeviceCare can read (")
    assert lines[3].startswith(":warning: photo.jpg isn't a photo DeviceCare can read (")
    assert "F_BIG" not in [f for f, _ in slack.fake.downloads]  # refused from files.info
    assert [p.source_ref for p in await photos(slack)] == ["F_OK"]


async def test_a_redelivered_event_attaches_nothing_twice(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg()))
    event = thread_event(ts, [("F1", "crack.jpg")])

    # Slack retries while the first delivery is still at work...
    await asyncio.gather(
        slack.sender.event(event, event_id="Ev1"),
        slack.sender.event(event, event_id="Ev1", retry_num=1),
    )
    await wait_reply(slack, ts)
    await asyncio.sleep(0.5)  # both deliveries are done
    downloads = len(slack.fake.downloads)
    # ...and again after it finished.
    await slack.sender.event(event, event_id="Ev1", retry_num=2)
    await asyncio.sleep(0.3)

    assert len(await photos(slack)) == 1
    assert len(replies(slack, ts)) == 1
    assert len(slack.fake.downloads) == downloads  # the late retry didn't even download


async def test_photos_from_a_role_without_manage_incidents(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    clerk = await slack.staff("Billing Clerk", "U_CLERK")
    ts = await card_ts(slack)
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg(), user="U_CLERK"))
    await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")], user="U_CLERK"))
    [reply] = await wait_reply(slack, ts)
    assert reply.args["text"] == (
        ":warning: <@U_CLERK> your photos weren't added: Your role (Billing Clerk) does not "
        "have the Manage Incidents permission."
    )
    assert slack.fake.downloads == [] and await photos(slack) == []
    async with slack.runtime.stores() as store:
        assert clerk.staff_id is not None
        assert [e.action for e in await store.activity.for_entity("security", clerk.staff_id)] == [
            "refused"
        ]
        await store.commit()


async def test_photos_from_an_unknown_user_are_not_taken(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg(), user="U_STRANGER"))
    await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")], user="U_STRANGER"))
    [reply] = await wait_reply(slack, ts)
    assert "not set up in DeviceCare" in reply.args["text"]
    assert slack.fake.downloads == [] and await photos(slack) == []


async def test_files_in_other_threads_are_left_alone(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    slack.fake.add_file(FakeFile("F1", "cat.jpg", jpeg()))
    response = await slack.sender.event(thread_event("1600000000.000001", [("F1", "cat.jpg")]))
    assert response.status_code == 200
    plain = {
        "type": "message",
        "channel": INCIDENTS_CHANNEL,
        "user": "U_TECH",
        "ts": "1700000600.000100",
        "text": "thanks!",
    }
    assert (await slack.sender.event(plain)).status_code == 200  # acknowledged, not retried
    await asyncio.sleep(0.3)
    assert slack.fake.calls_to("files.info") == [] and await photos(slack) == []


# --- the modals -------------------------------------------------------------------------------


async def test_photos_uploaded_with_a_new_incident(slack: SlackHarness) -> None:
    from tests.builders import add_district
    from tests.slack.test_incidents import new_incident_state

    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    slack.fake.add_file(FakeFile("F1", "front.jpg", jpeg()))
    slack.fake.add_file(FakeFile("F2", "notes.txt", b"just text", mimetype="text/plain"))
    modal = await open_new_incident_modal(slack)
    answer = await submit(
        slack,
        IncidentView.NEW,
        modal["private_metadata"],
        new_incident_state(d.device_id, files=(("F1", "front.jpg"), ("F2", "notes.txt"))),
    )
    assert "2 photos being checked" in blocks_text(answer["view"]["blocks"])

    # The refused file is explained to the person who uploaded it.
    [told] = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "U_TECH")
    assert "notes.txt isn't a photo DeviceCare can read" in told.args["text"]
    assert "Added 1 photo to incident #1: front.jpg" in told.args["text"]
    await eventually(lambda: _photo_count(slack, 1))
    [photo] = await photos(slack)
    assert (photo.source_ref, photo.device_id) == ("F1", d.device_id)

    await slack.deliver_outbox()  # the card (with the photo), then the thread note
    [card] = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args["channel"] == INCIDENTS_CHANNEL and "thread_ts" not in c.args
    ]
    ts = await card_ts(slack)
    assert any(
        "1 photo" in blocks_text(c.args.get("blocks"))
        for c in [card, *slack.fake.calls_to("chat.update")]
    )
    [note] = replies(slack, ts)
    assert note.args["text"].startswith(":camera: Added 1 photo to incident #1: front.jpg")


async def _photo_count(slack: SlackHarness, count: int) -> bool:
    return len(await photos(slack)) >= count


async def test_add_photos_from_the_card(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    await click(
        slack,
        IncidentAction.ADD_PHOTOS,
        button_value(card.args["blocks"], IncidentAction.ADD_PHOTOS),
    )
    modal = view_of((await slack.fake.wait_for("views.open", count=2))[-1])
    assert modal["callback_id"] == IncidentView.ADD_PHOTOS
    [block] = modal["blocks"]
    assert block["optional"] is False and block["element"]["type"] == "file_input"

    empty = state(**{IncidentField.PHOTOS: {"type": "file_input", "files": []}})
    answer = await submit(slack, IncidentView.ADD_PHOTOS, modal["private_metadata"], empty)
    assert answer["errors"] == {IncidentField.PHOTOS: "Add at least one photo."}

    slack.fake.add_file(FakeFile("F9", "side.png", png(), mimetype="image/png"))
    files = state(
        **{
            IncidentField.PHOTOS: {
                "type": "file_input",
                "files": [{"id": "F9", "name": "side.png"}],
            }
        }
    )
    assert await submit(slack, IncidentView.ADD_PHOTOS, modal["private_metadata"], files) == {}
    await eventually(lambda: _photo_count(slack, 1))
    # Submitting the same upload again (a double click) adds nothing.
    assert await submit(slack, IncidentView.ADD_PHOTOS, modal["private_metadata"], files) == {}
    await asyncio.sleep(0.3)
    assert [p.source_ref for p in await photos(slack)] == ["F9"]


# --- downloading ------------------------------------------------------------------------------


async def test_a_sign_in_page_instead_of_the_file_is_refused(slack: SlackHarness) -> None:
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg()))
    url = f"http://127.0.0.1:{slack.fake.port}/files/F1/crack.jpg"
    client = AsyncWebClient(token="xoxb-not-accepted", base_url=slack.fake.base_url)

    async def files_info(**_: Any) -> dict[str, Any]:
        return {
            "ok": True,
            "file": {
                "id": "F1",
                "name": "crack.jpg",
                "mimetype": "image/jpeg",
                "size": 1000,
                "url_private": url,
            },
        }

    client.files_info = files_info  # type: ignore[method-assign]
    with pytest.raises(ValidationError, match="Slack sent a sign-in page instead of the file"):
        await download_slack_file(client, "F1", api_url=slack.fake.base_url)


def test_the_bot_token_goes_only_to_slack() -> None:
    api = "http://127.0.0.1:5555/api/"
    assert _may_carry_token("https://files.slack.com/files-pri/T1-F1/a.jpg", None)
    assert _may_carry_token("http://127.0.0.1:5555/files/F1/a.jpg", api)
    assert not _may_carry_token("http://127.0.0.1:6666/files/F1/a.jpg", api)
    assert not _may_carry_token("http://files.slack.com/files-pri/a.jpg", None)
    assert not _may_carry_token("https://files.slack.com.evil.example/a.jpg", None)
    assert not _may_carry_token("https://evil.example/?https://files.slack.com/", None)


async def test_the_same_file_attached_twice_at_once_lands_once(slack: SlackHarness) -> None:
    from bot.slack.client import build_web_client
    from bot.slack.photos import SlackFileRef, attach_slack_files

    await district_with_incident(slack)
    tech = await _actor(slack, "U_TECH")
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg()))
    client = build_web_client(slack.runtime.settings)
    files = [SlackFileRef("F1", "crack.jpg")]
    first, second = await asyncio.gather(
        attach_slack_files(slack.runtime, client, tech, 1, files),
        attach_slack_files(slack.runtime, client, tech, 1, files),
    )
    assert sorted([first.attached, second.attached]) == [[], ["crack.jpg"]]
    assert sorted([first.already_attached, second.already_attached]) == [[], ["crack.jpg"]]
    assert len(await photos(slack)) == 1


async def _actor(slack: SlackHarness, slack_id: str) -> Any:
    async with slack.runtime.stores() as store:
        actor = await store.people.actor_by_slack_id(slack_id)
        await store.commit()
    assert actor is not None
    return actor
