"""The Slack app's front door: signatures, unknown users, first contact, retries, errors."""

from __future__ import annotations

import time

import pytest

from bot.slack.metadata import ForgedPayload, Payload, pack, unpack
from tests.slack.conftest import SlackHarness
from tests.slack.signing import slack_signature


async def test_bad_signature_is_refused(slack: SlackHarness) -> None:
    response = await slack.sender.send(
        "command=%2Fincident&user_id=U_TECH",
        "application/x-www-form-urlencoded",
        signature="v0=" + "0" * 64,
    )
    assert response.status_code == 401
    assert slack.fake.calls == []


async def test_stale_timestamp_is_refused(slack: SlackHarness) -> None:
    old = int(time.time()) - 6 * 60
    body = "command=%2Fincident&user_id=U_TECH"
    response = await slack.sender.send(
        body,
        "application/x-www-form-urlencoded",
        timestamp=old,
        signature=slack_signature(slack.sender.secret, str(old), body),
    )
    assert response.status_code == 401


async def test_unknown_user_gets_a_clear_ephemeral_answer(slack: SlackHarness) -> None:
    response = await slack.sender.command("/incident", user="U_STRANGER")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "not set up in DeviceCare" in body["text"]


async def test_first_contact_links_staff_by_email(slack: SlackHarness) -> None:
    from tests.builders import add_staff

    await add_staff(slack.runtime.stores, "Technician", "new.tech@district.org")
    slack.fake.add_user("U_NEW", "New.Tech@district.org")
    response = await slack.sender.command("/incident", user="U_NEW")
    assert response.status_code == 200
    assert slack.fake.calls_to("users.info")[0].args["user"] == "U_NEW"
    async with slack.runtime.stores() as store:
        actor = await store.people.actor_by_slack_id("U_NEW")
        assert actor is not None and actor.role == "Technician"
        log = await store.activity.for_entity("staff", actor.staff_id)
        assert [e.action for e in log] == ["slack_linked"]
        assert log[0].after == {"slack_user_id": "U_NEW", "name": "Staff Member"}
        assert actor.name == "Staff Member"  # the Slack profile's name, not "New Tech"
        await store.commit()


class Demo(Payload):
    incident_id: int


def test_signed_payloads_round_trip_and_refuse_tampering() -> None:
    text = pack(Demo(incident_id=7), "k")
    assert unpack(Demo, text, "k") == Demo(incident_id=7)
    with pytest.raises(ForgedPayload):
        unpack(Demo, text, "other-key")
    version, name, data, sig = text.split(".")
    forged = pack(Demo(incident_id=8), "k").split(".")[2]
    with pytest.raises(ForgedPayload):
        unpack(Demo, ".".join([version, name, forged, sig]), "k")
    with pytest.raises(ForgedPayload):
        unpack(Demo, "garbage", "k")
    with pytest.raises(ForgedPayload):
        unpack(Demo, None, "k")


def test_actor_cache_expires() -> None:
    from bot.slack.actors import ActorCache
    from workflows.permissions import DEFAULT_ROLES

    cache = ActorCache(ttl=0.05)
    actor = DEFAULT_ROLES["Technician"].actor(1, "Pat")
    cache.put("U1", actor)
    assert cache.get("U1") == actor
    time.sleep(0.06)
    assert cache.get("U1") is None


async def test_requests_that_miss_the_actor_cache_together_share_one_lookup() -> None:
    import asyncio

    from bot.slack.actors import ActorCache
    from workflows.permissions import DEFAULT_ROLES, Actor

    cache = ActorCache()
    actor = DEFAULT_ROLES["Technician"].actor(1, "Pat")
    lookups: list[str] = []
    release = asyncio.Event()

    async def lookup(found: Actor | None) -> Actor | None:
        lookups.append("looked up")
        await release.wait()
        return found

    waiting = [asyncio.ensure_future(cache.resolve("U1", lambda: lookup(actor))) for _ in range(5)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one request giving up doesn't cancel the others' lookup
    release.set()
    assert await asyncio.gather(*waiting[1:]) == [actor] * 4
    assert lookups == ["looked up"]
    assert cache.get("U1") == actor
    # Someone DeviceCare doesn't know is looked up again next time, not remembered.
    assert await cache.resolve("U2", lambda: lookup(None)) is None
    assert cache.get("U2") is None
    assert await cache.resolve("U2", lambda: lookup(None)) is None
    assert len(lookups) == 3
