"""Photos can be seen from Slack: the incident card and `/device` link each photo (to the file
in Slack, or a signed link to DeviceCare that opens the stored image), and a re-posted photo
gets a short reply instead of a second copy."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.photo_links import PHOTO_LINK_LIFETIME
from storage import models as m
from storage.blobs import sha256_hex
from tests.slack.conftest import SlackHarness
from tests.slack.fake_api import FakeFile
from tests.slack.money_helpers import all_text
from tests.slack.test_incidents import blocks_text, district_with_incident
from tests.slack.test_photos import card_ts, jpeg, photos, png, thread_event, wait_reply

SLACK_LINK = "https://district.slack.com/files/U_TECH/F1/crack.jpg"


async def test_the_card_links_a_slack_photo_to_the_file_in_slack(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg()))
    await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")]))
    await wait_reply(slack, ts)

    await slack.deliver_outbox()

    [update] = slack.fake.calls_to("chat.update")
    assert f":camera: 1 photo: <{SLACK_LINK}|1>" in blocks_text(update.args["blocks"])
    [photo] = await photos(slack)
    assert photo.source_url == SLACK_LINK


async def _mailed_photo(slack: SlackHarness, device_id: int, incident_id: int | None) -> bytes:
    """A photo that came by email: no Slack file to link to."""
    data = png()
    key = await slack.runtime.blobs.put(data, "image/png")
    async with slack.runtime.stores() as store:
        store.session.add(
            m.Photo(
                device_id=device_id,
                incident_id=incident_id,
                blob_key=key,
                content_type="image/png",
                size_bytes=len(data),
                sha256=sha256_hex(data),
                source="email",
                source_ref="<m1@example.org>",
                created_at=datetime(2026, 3, 1, tzinfo=UTC),
            )
        )
        await store.commit()
    return data


def _signed_paths(text: str) -> list[str]:
    return re.findall(r"<http://localhost:3000(/photos/p[0-9]+x[0-9]+\.[A-Za-z0-9_-]{27})\|", text)


async def test_device_links_a_mailed_photo_with_a_signed_link_that_opens_it(
    slack: SlackHarness,
) -> None:
    d, _ = await district_with_incident(slack)
    data = await _mailed_photo(slack, d.device_id, 1)

    response = await slack.sender.command("/device", "5CD1234XYZ", user="U_TECH")

    text = all_text(response.json()["blocks"])
    [path] = _signed_paths(text)
    assert ":camera: 1 photo: <http://localhost:3000/photos/" in text
    opened = await slack.sender.http.get(path)
    assert opened.status_code == 200 and opened.content == data
    assert opened.headers["content-type"] == "image/png"

    slack.clock.advance(seconds=PHOTO_LINK_LIFETIME.total_seconds() + 1)
    expired = await slack.sender.http.get(path)
    assert expired.status_code == 403 and "This photo link has expired" in expired.text


async def test_the_card_links_a_mailed_photo_too(slack: SlackHarness) -> None:
    d, _ = await district_with_incident(slack)
    await _mailed_photo(slack, d.device_id, 1)
    ts = await card_ts(slack)
    slack.fake.add_file(FakeFile("F1", "crack.jpg", jpeg()))
    await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")]))
    await wait_reply(slack, ts)

    await slack.deliver_outbox()

    [update] = slack.fake.calls_to("chat.update")
    text = blocks_text(update.args["blocks"])
    assert f":camera: 2 photos: <{SLACK_LINK}|1> <http://localhost:3000/photos/p" in text
    assert len(_signed_paths(text)) == 1


async def test_a_reposted_photo_is_told_it_is_already_on_the_record(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    data = jpeg()
    slack.fake.add_file(FakeFile("F1", "crack.jpg", data))
    slack.fake.add_file(FakeFile("F2", "crack (1).jpg", data))  # the same picture, re-posted
    await slack.sender.event(thread_event(ts, [("F1", "crack.jpg")]))
    await wait_reply(slack, ts)

    await slack.sender.event(thread_event(ts, [("F2", "crack (1).jpg")]), event_id="Ev2")

    [_, reply] = await wait_reply(slack, ts, count=2)
    assert reply.args["text"] == (
        ":paperclip: crack (1).jpg is already on the record of incident #1 "
        "(the same photo was added before)."
    )
    assert [p.source_ref for p in await photos(slack)] == ["F1"]
