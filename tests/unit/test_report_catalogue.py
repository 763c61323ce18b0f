"""The report catalogue: every report is declared once, and that one declaration is what the
command line and Slack reach."""

from __future__ import annotations

from datetime import date
from typing import Any

import click
import typer

from bot.cli import app
from bot.reports.catalogue import REPORTS, SlackDoor, channel_reports, reached_by
from bot.slack import reports as slack_reports
from bot.slack.billing_report_blocks import REPORT_USAGE
from bot.slack.report_blocks import ReportField, build_report_modal
from storage.reports import CATALOGUE
from workflows.errors import ValidationError
from workflows.permissions import Actor
from workflows.reports import parse_request, visible_reports

TODAY = date(2026, 3, 2)


def report_commands() -> list[str]:
    root = typer.main.get_command(app)
    with click.Context(root, info_name="devicecare") as ctx:
        group: Any = root.get_command(ctx, "report")  # type: ignore[attr-defined]
        with click.Context(group, info_name="report", parent=ctx) as sub:
            return list(group.list_commands(sub))


def modal_offers(specs: list[Any]) -> list[str]:
    view = build_report_modal(specs, [], TODAY, TODAY, "meta")
    (block,) = [b for b in view["blocks"] if b.get("block_id") == ReportField.REPORT]
    return [o["value"] for o in block["element"]["options"]]


def test_the_command_line_has_one_command_per_report_and_no_other() -> None:
    assert report_commands() == list(REPORTS)


def test_every_report_is_reached_from_slack() -> None:
    for name, report in REPORTS.items():
        assert report.slack, f"{name} has no way in from Slack"
        for door in report.slack:
            assert name in reached_by(door)
    # The digest's way in is the post the scheduler queues, delivered by the Slack outbox.
    assert list(reached_by(SlackDoor.DIGEST)) == ["weekly-digest"]


def test_channel_reports_are_what_slash_report_offers_and_parses() -> None:
    offered = channel_reports()
    assert offered == {n: r.columns for n, r in REPORTS.items() if SlackDoor.REPORT in r.slack}
    assert slack_reports.CATALOGUE == offered
    everyone = Actor.system()
    assert modal_offers(visible_reports(everyone, offered)) == list(offered)
    for name in offered:
        assert parse_request(name, offered, TODAY).name == name


def test_billing_reports_answer_slash_billing_report() -> None:
    billing = reached_by(SlackDoor.BILLING)
    assert set(billing) == {"automation", "cancelled"}
    assert slack_reports.BILLING == billing
    for name, report in billing.items():
        assert report.billing is not None
        assert f"/billing report {name}" in REPORT_USAGE
    with_words = [("automation", ["on"]), ("cancelled", ["2026-02-01", "2026-03-01"])]
    for name, words in with_words:
        answer = billing[name].billing
        assert answer is not None
        answer.words(words, TODAY)  # accepted
        try:
            answer.words([*words, "extra", "words"], TODAY)
        except ValidationError as exc:
            assert exc.message == REPORT_USAGE
        else:
            raise AssertionError(f"{name} took extra words")


def test_a_report_declared_once_is_the_same_in_both_paths() -> None:
    # Every query in storage.reports has exactly one entry, with its spec as the CSV columns.
    for name, spec in CATALOGUE.items():
        assert REPORTS[name].columns is spec
    for name, report in REPORTS.items():
        assert report.name == name
        if report.columns is not None:
            assert report.columns.name == name
    # The cancelled-invoices report is one entry that the command line, /report and
    # /billing report all reach.
    cancelled = REPORTS["cancelled"]
    assert cancelled.slack == {SlackDoor.REPORT, SlackDoor.BILLING}
    assert channel_reports()["cancelled"] is cancelled.columns
    assert "cancelled" in report_commands()
