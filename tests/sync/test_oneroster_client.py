"""The OneRoster 1.1 client against the local stand-in: tokens, paging, faults, and records
read exactly as the CSV reader reads the same values."""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from base64 import b64encode
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.sync.http import Backoff, SourceUnavailable
from bot.sync.oneroster import DEFAULT_SCOPE, OneRosterClient, roster_rows
from storage.roster_files import Problem, read_orgs, read_users
from tests.sync_standins.oneroster import (
    CLIENT_ID,
    CLIENT_SECRET,
    OneRosterStandIn,
    org_record,
    user_record,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "roster"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def students(n: int, *, start: int = 1, modified: str = "2025-08-01T00:00:00Z") -> list[dict]:
    return [
        user_record(
            {
                "sourcedId": f"stu-{i}",
                "role": "student",
                "givenName": f"Given{i}",
                "familyName": f"Family{i}",
                "orgSourcedIds": "org-hms",
                "grades": "07",
                "dateLastModified": modified,
            }
        )
        for i in range(start, start + n)
    ]


class Sleeps:
    """Backoff's sleep, recorded instead of waited."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def standin() -> AsyncIterator[OneRosterStandIn]:
    server = OneRosterStandIn(
        orgs=[org_record(r) for r in csv_rows(FIXTURES / "district/orgs.csv")]
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(standin: OneRosterStandIn, sleeps: Sleeps) -> AsyncIterator[OneRosterClient]:
    client = make_client(standin, sleeps)
    yield client
    await client.aclose()


def make_client(
    server: OneRosterStandIn, sleeps: Sleeps, *, secret: str = CLIENT_SECRET, **kwargs: Any
) -> OneRosterClient:
    kwargs.setdefault("page_size", 100)
    return OneRosterClient(
        server.base_url,
        server.token_url,
        CLIENT_ID,
        secret,
        backoff=Backoff(attempts=4, sleep=sleeps),
        **kwargs,
    )


def ids(records: list[Any]) -> list[str]:
    return [r["sourcedId"] for r in records]


# --- tokens and paging ----------------------------------------------------------------------


async def test_pages_through_users_with_one_token(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(250)

    users = await client.listing("users")

    assert ids(users) == [f"stu-{i}" for i in range(1, 251)]
    reads = standin.reads("users")
    assert [(h.query["offset"], h.query["limit"]) for h in reads] == [
        ("0", "100"),
        ("100", "100"),
        ("200", "100"),
    ]
    assert all(h.status == 200 for h in reads)
    # One token for the whole listing, asked for with Basic auth and the roster-core scope.
    (token_request,) = standin.token_requests
    assert token_request.status == 200
    assert len({h.authorization for h in reads}) == 1
    assert reads[0].authorization and reads[0].authorization.startswith("Bearer ")
    assert client.scope == DEFAULT_SCOPE


async def test_the_secret_is_form_encoded_in_basic_auth(standin: OneRosterStandIn) -> None:
    # The stand-in decodes as RFC 6749 2.3.1 says; a raw "+" would turn into a space there.
    standin.users = students(1)
    sent = []

    async def record(request: Any) -> None:
        sent.append(request.headers.get("authorization"))

    client = make_client(standin, Sleeps())
    client.http.event_hooks["request"].append(record)
    try:
        await client.listing("users")
    finally:
        await client.aclose()
    encoded = b64encode(b"devicecare-client:s3cr3t%2B%2F%3Dvalue").decode()
    assert sent[0] == f"Basic {encoded}"


async def test_a_server_that_caps_the_page_size_loses_nothing(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(95)
    standin.max_limit = 40

    users = await client.listing("users")

    assert ids(users) == [f"stu-{i}" for i in range(1, 96)]
    assert [h.query["offset"] for h in standin.reads("users")] == ["0", "40", "80"]


async def test_without_a_total_the_link_header_ends_the_listing(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)
    standin.send_total = False

    assert len(await client.listing("users")) == 150
    assert [h.query["offset"] for h in standin.reads("users")] == ["0", "100"]


async def test_without_total_or_links_an_empty_page_ends_the_listing(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)
    standin.send_total = standin.send_links = False

    assert len(await client.listing("users")) == 150
    assert [h.query["offset"] for h in standin.reads("users")] == ["0", "100", "150"]


async def test_an_empty_roster_is_one_request(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    assert await client.listing("users") == []
    assert len(standin.reads("users")) == 1


async def test_changed_since_uses_the_date_last_modified_filter(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(3) + students(2, start=4, modified="2025-09-02T10:00:00Z")

    snapshot = await client.read_roster(since="2025-09-01T00:00:00Z")

    assert [r.sis_id for r in snapshot.rows.users.rows] == ["stu-4", "stu-5"]
    assert not snapshot.complete
    assert snapshot.cursor == "2025-09-02T10:00:00Z"
    (read,) = standin.reads("users")
    assert read.query["filter"] == "dateLastModified>'2025-09-01T00:00:00Z'"
    # Orgs are always read whole: a student's orgs must all be known.
    assert "filter" not in standin.reads("orgs")[0].query


async def test_a_full_read_is_complete_and_resumes_from_the_latest_change(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(2) + students(1, start=3, modified="2025-10-05T08:30:00Z")

    snapshot = await client.read_roster()

    assert snapshot.complete
    assert snapshot.cursor == "2025-10-05T08:30:00Z"
    assert [o.sis_id for o in snapshot.rows.orgs] == ["org-crsd", "org-hms", "org-res"]


# --- faults ---------------------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(
    standin: OneRosterStandIn, client: OneRosterClient, sleeps: Sleeps
) -> None:
    standin.users = students(150)
    standin.fail("users", "429", offset=100)

    assert len(await client.listing("users")) == 150
    assert sleeps.waits == [1.0]
    assert [h.status for h in standin.reads("users")] == [200, 429, 200]


@pytest.mark.parametrize("kind", ["500", "drop"])
async def test_an_outage_on_one_page_is_retried(
    standin: OneRosterStandIn, client: OneRosterClient, sleeps: Sleeps, kind: str
) -> None:
    standin.users = students(150)
    standin.fail("users", kind, offset=100, times=2)

    assert len(await client.listing("users")) == 150
    assert len(sleeps.waits) == 2
    assert [h.query["offset"] for h in standin.reads("users")] == ["0", "100", "100", "100"]


async def test_an_expired_token_is_renewed_and_the_page_read_again(
    standin: OneRosterStandIn, client: OneRosterClient, sleeps: Sleeps
) -> None:
    standin.users = students(250)
    standin.fail("users", "expire", offset=200)

    assert len(await client.listing("users")) == 250
    assert [h.status for h in standin.token_requests] == [200, 200]
    assert [h.status for h in standin.reads("users")] == [200, 200, 401, 200]
    assert sleeps.waits == []  # a refused token is retried at once, not after a wait


async def test_a_token_past_its_lifetime_is_refused_and_renewed(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    # The provider's clock runs ahead of ours (or our margin is too thin): its 401 decides.
    seconds = [0.0]
    standin.clock = lambda: seconds[0]
    standin.token_lifetime = 600
    standin.users = students(250)

    def an_hour_later(collection: str, offset: int) -> None:
        if offset == 100:
            seconds[0] += 3600

    standin.on_page = an_hour_later

    assert len(await client.listing("users")) == 250
    assert [h.status for h in standin.reads("users")] == [200, 200, 401, 200]
    assert len(standin.token_requests) == 2


async def test_a_source_that_stays_down_is_unavailable(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)
    standin.fail("users", "500", offset=100, times=10)

    with pytest.raises(SourceUnavailable, match="gave up after 4 attempts"):
        await client.listing("users")


async def test_a_page_that_is_not_json_stops_the_read(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)
    standin.fail("users", "malformed", offset=100)

    with pytest.raises(SourceUnavailable, match="users page at offset 100 is not JSON"):
        await client.read_roster()


async def test_wrong_credentials_are_refused_without_retries(
    standin: OneRosterStandIn, sleeps: Sleeps
) -> None:
    client = make_client(standin, sleeps, secret="not-the-secret")
    try:
        with pytest.raises(SourceUnavailable, match="401") as raised:
            await client.read_roster()
    finally:
        await client.aclose()
    assert "not-the-secret" not in str(raised.value)
    assert len(standin.token_requests) == 1
    assert sleeps.waits == []
    assert standin.reads("orgs") == []


async def test_an_unknown_scope_is_refused(standin: OneRosterStandIn, sleeps: Sleeps) -> None:
    client = make_client(standin, sleeps, scope="roster-everything")
    try:
        with pytest.raises(SourceUnavailable, match="invalid_scope"):
            await client.listing("orgs")
    finally:
        await client.aclose()


async def test_a_listing_that_moves_while_paged_is_read_again(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)

    def grow_once(collection: str, offset: int) -> None:
        if offset == 0 and len(standin.users) == 150:
            standin.users.append(students(1, start=151)[0])

    standin.on_page = grow_once

    users = await client.listing("users")

    assert len(users) == 151
    assert [h.query["offset"] for h in standin.reads("users")] == ["0", "100", "0", "100"]


async def test_a_listing_that_keeps_moving_is_unavailable(
    standin: OneRosterStandIn, client: OneRosterClient
) -> None:
    standin.users = students(150)
    standin.on_page = lambda collection, offset: standin.users.extend(
        students(1, start=len(standin.users) + 1)
    )

    with pytest.raises(SourceUnavailable, match="while it was read"):
        await client.listing("users")


async def test_credentials_and_tokens_never_reach_the_log(
    standin: OneRosterStandIn, client: OneRosterClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    standin.users = students(150)
    standin.fail("users", "expire", offset=100)
    standin.fail("users", "429", offset=100)

    await client.read_roster()

    issued = list(standin.tokens)
    assert len(issued) == 2
    for secret in [CLIENT_SECRET, "s3cr3t%2B", *issued]:
        assert secret not in caplog.text
    assert CLIENT_SECRET not in repr(client)


# --- records read as the CSV reader reads them ------------------------------------------------


def shifted(rows: list[Any]) -> list[Any]:
    """CSV rows carry file lines (the header is line 1); records carry positions from 1."""
    return [dataclasses.replace(row, line=row.line - 1) for row in rows]


def reasons(problems: list[Problem], shift: int = 0) -> list[tuple[int, str]]:
    """(line, reason), lines shifted by `shift`, the lines reasons name ("first on line 2") too."""

    def moved(reason: str) -> str:
        return re.sub(r"on line (\d+)", lambda m: f"on line {int(m[1]) + shift}", reason)

    return [(p.line + shift, moved(p.reason)) for p in problems]


@pytest.mark.parametrize("folder", ["district", "bad", "next_day", "joins_household"])
def test_records_become_the_rows_their_csv_lines_become(folder: str) -> None:
    orgs_csv, users_csv = FIXTURES / folder / "orgs.csv", FIXTURES / folder / "users.csv"
    csv_problems: list[Problem] = []
    orgs, orgs_rejected = read_orgs(orgs_csv, csv_problems)
    users = read_users(users_csv, csv_problems)

    snapshot = roster_rows(
        [org_record(r) for r in csv_rows(orgs_csv)], [user_record(r) for r in csv_rows(users_csv)]
    )

    rows = snapshot.rows
    assert rows.orgs == shifted(orgs)
    assert rows.orgs_rejected == orgs_rejected
    assert rows.users.rows == shifted(users.rows)
    assert rows.users.seen == users.seen
    assert rows.users.skipped_roles == users.skipped_roles
    assert rows.users.rejected == users.rejected
    assert reasons(rows.problems) == reasons(csv_problems, -1)
    assert {p.file for p in rows.problems} <= {"orgs", "users"}


def test_the_bad_fixture_is_a_real_parity_check() -> None:
    users_csv = FIXTURES / "bad" / "users.csv"
    snapshot = roster_rows([], [user_record(r) for r in csv_rows(users_csv)])
    assert len(snapshot.rows.problems) >= 4
    assert snapshot.where(snapshot.rows.problems[-1]).startswith("users #")


def test_a_record_that_cannot_be_read_is_a_problem_not_a_failure() -> None:
    good = students(2)
    not_an_object = "stu-x"
    grades_not_a_list = {**students(1, start=3)[0], "grades": "07"}
    agent_without_id = {**students(1, start=4)[0], "agents": [{"type": "user"}]}
    name_is_a_number = {**students(1, start=5)[0], "givenName": 5}
    guardian_with_bad_orgs = {
        **user_record(
            {"sourcedId": "par-9", "role": "parent", "givenName": "P", "familyName": "Q"}
        ),
        "orgs": "org-hms",
    }
    records = [good[0], not_an_object, grades_not_a_list, agent_without_id, name_is_a_number]
    records += [guardian_with_bad_orgs, good[1]]

    snapshot = roster_rows([], records)

    users = snapshot.rows.users
    assert [r.sis_id for r in users.rows] == ["stu-1", "stu-5", "stu-2"]
    assert [(p.file, p.line, p.reason) for p in snapshot.rows.problems] == [
        ("users", 2, "record is not a JSON object"),
        ("users", 3, "grades is not a list"),
        ("users", 4, "agents holds a reference without a sourcedId"),
        ("users", 6, "orgs is not a list"),
    ]
    # Unreadable but listed: these students have not left the district.
    assert {"stu-3", "stu-4", "par-9"} <= users.seen
    assert users.rejected == {"student": 2, "guardian": 1, "other": 1}
    assert snapshot.where(snapshot.rows.problems[1]) == "users #3 (stu-3)"
    # Numbers are spelled out as a CSV cell would hold them.
    assert users.rows[1].first_name == "5"
