"""Prometheus metrics: facts read from the database at scrape time, and request latency.

The worker, mail reader and scheduler are other processes, so what they do is read from the
database (the outbox, notices, billing runs and `service_facts`) when /metrics is scraped, and
is the same whichever web process answers. Labels hold only kinds, statuses, process names,
Slack method names and route templates: never an address, a name or a token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.heartbeat import SLACK_ERRORS
from bot.web.readiness import Readiness
from storage.monitoring import Snapshot

PREFIX = "devicecare"
SENT_STATUSES = ("sent", "bounced")  # handed to the mail server (a bounce came back later)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class SnapshotCollector(Collector):
    """The database's facts as metric families (built for one scrape)."""

    def __init__(self, snapshot: Snapshot | None, readiness: Readiness) -> None:
        self.snapshot = snapshot
        self.readiness = readiness

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 when the database answered.")
        up.add_metric([], 1 if self.snapshot is not None else 0)
        yield up
        ready = GaugeMetricFamily(
            f"{PREFIX}_readiness",
            "1 for the state /readyz reports (ok, degraded, not_ready), 0 for the others.",
            labels=["status"],
        )
        for status in ("ok", "degraded", "not_ready"):
            ready.add_metric([status], 1 if self.readiness.status == status else 0)
        yield ready
        if self.snapshot is not None:
            yield from self._outbox(self.snapshot)
            yield from self._notices(self.snapshot)
            yield from self._billing(self.snapshot)
            yield from self._processes(self.snapshot)

    def _outbox(self, snap: Snapshot) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            f"{PREFIX}_outbox_messages",
            "Outbox rows by kind and status (pending, sent, failed).",
            labels=["kind", "status"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row, by kind.",
            labels=["kind"],
        )
        overdue = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_overdue_seconds",
            "How long the pending row due longest has been due, by kind (0: none due).",
            labels=["kind"],
        )
        for row in snap.outbox.values():
            for status in sorted(set(row.counts) | {"pending", "sent", "failed"}):
                depth.add_metric([row.kind, status], row.counts.get(status, 0))
            if row.oldest_pending is not None:
                age.add_metric([row.kind], (snap.now - row.oldest_pending).total_seconds())
            if row.oldest_due is not None:
                due = max(0.0, (snap.now - row.oldest_due).total_seconds())
                overdue.add_metric([row.kind], due)
        yield depth
        yield age
        yield overdue

    def _notices(self, snap: Snapshot) -> Iterable[Metric]:
        by_status = GaugeMetricFamily(
            f"{PREFIX}_notices", "Family notices by delivery status.", labels=["status"]
        )
        for status, n in sorted(snap.notices.items()):
            by_status.add_metric([status], n)
        yield by_status
        sent = CounterMetricFamily(
            f"{PREFIX}_notices_sent", "Family notices handed to the mail server."
        )
        sent.add_metric([], sum(snap.notices.get(s, 0) for s in SENT_STATUSES))
        yield sent
        failed = CounterMetricFamily(
            f"{PREFIX}_notices_failed", "Family notices given up on after their last attempt."
        )
        failed.add_metric([], snap.notices.get("failed", 0))
        yield failed
        failing = GaugeMetricFamily(
            f"{PREFIX}_notices_failing_recent",
            "Notices failing in the last hour (retrying after an error, or given up).",
        )
        failing.add_metric([], snap.mail.failing)
        yield failing

    def _billing(self, snap: Snapshot) -> Iterable[Metric]:
        runs = snap.billing
        last = GaugeMetricFamily(
            f"{PREFIX}_billing_run_last_timestamp_seconds",
            "When the last billing run ended (completed or failed).",
        )
        ok = GaugeMetricFamily(
            f"{PREFIX}_billing_run_last_success", "1 when the last billing run completed."
        )
        completed = GaugeMetricFamily(
            f"{PREFIX}_billing_run_last_completed_timestamp_seconds",
            "When the last completed billing run finished.",
        )
        if (at := _ts(runs.last_at)) is not None:
            last.add_metric([], at)
            ok.add_metric([], 1 if runs.last_ok else 0)
        if (done := _ts(runs.last_completed_at)) is not None:
            completed.add_metric([], done)
        yield last
        yield ok
        yield completed

    def _processes(self, snap: Snapshot) -> Iterable[Metric]:
        seen = GaugeMetricFamily(
            f"{PREFIX}_process_last_seen_timestamp_seconds",
            "The last heartbeat of each long-running process.",
            labels=["process"],
        )
        success = GaugeMetricFamily(
            f"{PREFIX}_process_last_success_timestamp_seconds",
            "The last time each process reported doing its job.",
            labels=["process"],
        )
        error = GaugeMetricFamily(
            f"{PREFIX}_process_last_error_timestamp_seconds",
            "The last time each process reported an error.",
            labels=["process"],
        )
        imap = GaugeMetricFamily(
            f"{PREFIX}_imap_last_poll_success_timestamp_seconds",
            "The last time the mail reader checked the mailbox successfully.",
        )
        slack = CounterMetricFamily(
            f"{PREFIX}_slack_api_errors",
            "Slack Web API calls that failed, by API method and Slack's error code.",
            labels=["method", "error"],
        )
        slack_totals: dict[tuple[str, str], int] = {}
        for fact in snap.facts.values():
            seen.add_metric([fact.process], fact.last_seen.timestamp())
            if fact.last_success is not None:
                success.add_metric([fact.process], fact.last_success.timestamp())
            if fact.last_error_at is not None:
                error.add_metric([fact.process], fact.last_error_at.timestamp())
            for key, n in fact.counters.items():
                name, _, rest = key.partition("|")
                if name == SLACK_ERRORS:
                    method, _, code = rest.partition("|")
                    slack_totals[(method, code)] = slack_totals.get((method, code), 0) + n
        mail = snap.facts.get("mail")
        if mail is not None and mail.last_success is not None:
            imap.add_metric([], mail.last_success.timestamp())
        for (method, code), n in sorted(slack_totals.items()):
            slack.add_metric([method, code], n)
        yield from (seen, success, error, imap, slack)


class RequestMetrics:
    """The web process's own metrics: request latency by route template, and process stats."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)


def route_template(scope: Scope) -> str:
    """The matching route's path template (/family/{token}), never the path itself: paths
    carry family tokens."""
    app = scope.get("app")
    partial = None  # the path matched but not the method (a 405)
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
        if match == Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", "other"))
    return partial or "unmatched"


class RequestTimer:
    """ASGI middleware timing each HTTP request into RequestMetrics.latency."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.latency.labels(
                scope["method"], route_template(scope), str(status)
            ).observe(time.perf_counter() - start)
