"""The hostile image corpus dropped into an incident card's thread, through signed Slack events
and the fake Slack Web API: each file is refused with a sentence naming it (and nothing is
stored), or stored clean."""

from __future__ import annotations

from pathlib import Path

from bot.slack.incident_blocks import escape_mrkdwn
from tests.hostile_images import Hostile, assert_stored_clean, corpus
from tests.slack.conftest import SlackHarness
from tests.slack.fake_api import FakeFile
from tests.slack.test_incidents import district_with_incident
from tests.slack.test_photos import card_ts, photos, thread_event, wait_reply

BATCH = 10  # Slack shares at most 10 files in one message


def blob_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def test_hostile_files_are_refused_or_stored_clean(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    ts = await card_ts(slack)
    blob_dir = slack.runtime.settings.blob_dir
    blobs_before = blob_files(blob_dir)
    entries = corpus()
    ids = {e.filename: f"F{i:03d}" for i, e in enumerate(entries)}
    for entry in entries:
        # Slack's own idea of the type comes from the name; the content must decide.
        slack.fake.add_file(
            FakeFile(
                ids[entry.filename], entry.filename, entry.data, mimetype="application/octet-stream"
            )
        )

    lines: list[str] = []
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    for n, batch in enumerate(batches, start=1):
        event = thread_event(ts, [(ids[e.filename], e.filename) for e in batch])
        assert (await slack.sender.event(event)).status_code == 200
        replies = await wait_reply(slack, ts, count=n)
        lines += replies[-1].args["text"].split("\n")

    refused = [e for e in entries if e.refused_with is not None]
    kept = [e for e in entries if e.refused_with is None]
    warnings = [line for line in lines if line.startswith(":warning: ")]
    assert len(warnings) == len(refused)
    for entry in refused:
        [line] = [
            w for w in warnings if w.startswith(f":warning: {escape_mrkdwn(entry.filename)} ")
        ]
        assert entry.refused_with in line, (entry.filename, line)

    # A clean file whose picture is already on the incident (a polyglot cut back to the same
    # image) gets a reply saying so instead of a second copy.
    again = {
        e.filename
        for e in kept
        if f":paperclip: {escape_mrkdwn(e.filename)} is already on the record" in "\n".join(lines)
    }
    stored = {p.source_ref: p for p in await photos(slack)}
    assert set(stored) == {ids[e.filename] for e in kept if e.filename not in again}
    assert {p.sha256 for p in stored.values()} == {
        p.blob_key.rsplit("/")[-1] for p in stored.values()
    }
    for entry in (e for e in kept if e.filename not in again):
        photo = stored[ids[entry.filename]]
        assert photo.content_type == entry.stored_type, entry.filename
        assert (photo.width, photo.height) == entry.stored_size, entry.filename
        data = await slack.runtime.blobs.get(photo.blob_key)
        assert (photo.size_bytes, photo.sha256) == (len(data), photo.blob_key.rsplit("/")[-1])
        assert_stored_clean(data, photo.content_type, entry)
    # Nothing refused reached the blob store: one new blob per stored photo.
    assert len(blob_files(blob_dir) - blobs_before) == len({p.blob_key for p in stored.values()})


def test_the_corpus_covers_what_the_issue_lists() -> None:
    reasons = " ".join(e.why for e in corpus())
    for kind in (
        "JPEG+ZIP",
        "JPEG+HTML",
        "cut short",
        "SVG",
        "wrong extension",
        "CMYK",
        "16-bit",
        "60 frames",
        "APNG",
        "animated WebP",
        "100 MP",
    ):
        assert kind in reasons, kind
    assert isinstance(corpus()[0], Hostile)
