"""Photo downloads on Slack's real file hosts: GovSlack's files.slack-gov.com, and Slack's
redirects, with the bot token sent to Slack hosts only.

The stand-in also answers over https on host names this test resolves to 127.0.0.1, with a
certificate from a test CA the client trusts; the Slack app gets that client the way a
deployment gets its own (build_slack_app's `client`).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.slack.photos import MAX_REDIRECTS, _may_carry_token
from tests.slack.conftest import SlackHarness, open_harness
from tests.slack.fake_api import BOT_TOKEN, FakeFile, FakeSlack
from tests.slack.test_incidents import district_with_incident
from tests.slack.test_photos import card_ts, jpeg, photos, thread_event, wait_reply
from workflows.clock import FixedClock

HOSTS = ("files.slack-gov.com", "slack-gov.com", "files.slack.com", "cdn.example.net")
TOKEN = f"Bearer {BOT_TOKEN}"


class Loopback(AbstractResolver):
    """Resolves the test's host names to 127.0.0.1, and nothing else."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in HOSTS:
            raise OSError(f"{host} is not a test host")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def gov(
    engine: AsyncEngine, database_url: str, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[SlackHarness]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*HOSTS).configure_cert(server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    fake = FakeSlack()
    await fake.start(tls=server)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=Loopback(), ssl=trusting)
    )
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.base_url, session=session)
    async with open_harness(database_url, clock, tmp_path, fake, client) as harness:
        yield harness
    await fake.stop()


def at(slack: SlackHarness, host: str, path: str) -> str:
    return f"https://{host}:{slack.fake.tls_port}{path}"


def seen(slack: SlackHarness) -> list[tuple[str, str, str | None]]:
    return [(r.host, r.path, r.authorization) for r in slack.fake.file_requests]


async def test_a_photo_on_govslack_is_downloaded_with_the_token(gov: SlackHarness) -> None:
    await district_with_incident(gov)
    ts = await card_ts(gov)
    path = "/files/F1/crack.jpg"
    gov.fake.add_file(
        FakeFile("F1", "crack.jpg", jpeg(), url_private=at(gov, "files.slack-gov.com", path))
    )
    await gov.sender.event(thread_event(ts, [("F1", "crack.jpg")]))

    [reply] = await wait_reply(gov, ts)
    assert reply.args["text"] == ":camera: Added 1 photo to incident #1: crack.jpg"
    assert seen(gov) == [("files.slack-gov.com", path, TOKEN)]
    assert [p.source_ref for p in await photos(gov)] == ["F1"]


async def test_a_redirect_to_another_host_is_followed_without_the_token(
    gov: SlackHarness,
) -> None:
    await district_with_incident(gov)
    ts = await card_ts(gov)
    gov.fake.redirects["a"] = at(gov, "slack-gov.com", "/hop/b")  # Slack to Slack: token kept
    gov.fake.redirects["b"] = at(gov, "cdn.example.net", "/public/F1/crack.jpg")
    gov.fake.add_file(
        FakeFile("F1", "crack.jpg", jpeg(), url_private=at(gov, "files.slack-gov.com", "/hop/a"))
    )
    await gov.sender.event(thread_event(ts, [("F1", "crack.jpg")]))

    [reply] = await wait_reply(gov, ts)
    assert reply.args["text"] == ":camera: Added 1 photo to incident #1: crack.jpg"
    assert seen(gov) == [
        ("files.slack-gov.com", "/hop/a", TOKEN),
        ("slack-gov.com", "/hop/b", TOKEN),
        ("cdn.example.net", "/public/F1/crack.jpg", None),  # the token stayed on Slack
    ]


async def test_refused_downloads_never_reach_another_host(gov: SlackHarness) -> None:
    await district_with_incident(gov)
    ts = await card_ts(gov)
    # An external file: its url_private is outside Slack, so it isn't fetched at all.
    gov.fake.add_file(
        FakeFile(
            "F_EXT",
            "ext.jpg",
            jpeg(),
            url_private=at(gov, "cdn.example.net", "/public/F_EXT/ext.jpg"),
        )
    )
    # A redirect that would drop to plain http.
    gov.fake.redirects["down"] = f"http://cdn.example.net:{gov.fake.port}/public/F_DOWN/d.jpg"
    gov.fake.add_file(
        FakeFile("F_DOWN", "d.jpg", jpeg(), url_private=at(gov, "files.slack.com", "/hop/down"))
    )
    # A redirect loop.
    gov.fake.redirects["loop"] = at(gov, "files.slack.com", "/hop/loop")
    gov.fake.add_file(
        FakeFile("F_LOOP", "loop.jpg", jpeg(), url_private=at(gov, "files.slack.com", "/hop/loop"))
    )
    files = [("F_EXT", "ext.jpg"), ("F_DOWN", "d.jpg"), ("F_LOOP", "loop.jpg")]
    await gov.sender.event(thread_event(ts, files))

    [reply] = await wait_reply(gov, ts)
    assert reply.args["text"].split("\n") == [
        ":warning: ext.jpg couldn't be downloaded from Slack.",
        ":warning: d.jpg couldn't be downloaded from Slack.",
        ":warning: loop.jpg couldn't be downloaded from Slack.",
    ]
    hosts = {host for host, _, _ in seen(gov)}
    assert hosts == {"files.slack.com"}
    loops = [r for r in gov.fake.file_requests if r.path == "/hop/loop"]
    assert len(loops) == MAX_REDIRECTS + 1
    assert all(r.authorization == TOKEN for r in gov.fake.file_requests)
    assert await photos(gov) == []


def test_slack_and_govslack_hosts_carry_the_token() -> None:
    assert _may_carry_token("https://files.slack-gov.com/files-pri/T1-F1/a.jpg", None)
    assert _may_carry_token("https://slack-gov.com/files-pri/T1-F1/a.jpg", None)
    assert _may_carry_token("https://FILES.SLACK.COM/files-pri/T1-F1/a.jpg", None)
    assert not _may_carry_token("https://files.slack-gov.com.evil.example/a.jpg", None)
    assert not _may_carry_token("https://evilslack-gov.com/a.jpg", None)
    assert not _may_carry_token("http://files.slack-gov.com/a.jpg", None)
