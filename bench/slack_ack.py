"""Ack latency of DeviceCare's Slack app against a bare bolt app, under concurrent senders.

Each app runs in its own process behind uvicorn (as in production); this process plays Slack:
`--senders` concurrent clients send signed requests and time each HTTP answer (the ack).
Both apps talk to the same local fake Web API, so neither waits on the internet.

    .venv/bin/python bench/slack_ack.py [--requests 400] [--senders 20]

Scenarios: `/incident` (our app: ack, then open the modal) and a status change (our app: the
status modal's submission, which validates and writes the change before it acks so errors
can show in the form). The bare app acks the same requests and does nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.slack.fake_api import BOT_TOKEN, FakeSlack  # noqa: E402
from tests.slack.signing import SIGNING_SECRET  # noqa: E402

SECRET_KEY = "bench-secret-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the two servers (run in child processes) --------------------------------------------


def serve_ours(port: int, database_url: str, api_url: str) -> None:
    import uvicorn

    from bot.runtime import build_runtime
    from bot.settings import Settings
    from bot.slack.app import build_slack_app
    from bot.web.app import create_web_app

    settings = Settings(
        _env_file=None,
        database_url=database_url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=api_url,
        slack_incidents_channel="C_INCIDENTS",
        secret_key=SECRET_KEY,
        log_level="WARNING",
    )

    async def main() -> None:
        # Built inside the loop, as `devicecare web` does: the Slack client's connection pool
        # belongs to it.
        runtime = build_runtime(settings)
        app = create_web_app(runtime, build_slack_app(runtime))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()

    uvicorn_loop(main())


def uvicorn_loop(main: Any) -> None:
    """uvloop when installed (as with `uvicorn[standard]`), like uvicorn itself picks."""
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:
        asyncio.run(main)


def serve_fake(port: int) -> None:
    async def main() -> None:
        fake = FakeSlack(port=port)
        await fake.start()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_bare(port: int, api_url: str) -> None:
    import uvicorn
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    async def main() -> None:
        app = AsyncApp(
            client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url), signing_secret=SIGNING_SECRET
        )

        @app.command("/incident")
        async def incident(ack: Any) -> None:
            await ack()

        @app.view(STATUS_CALLBACK)
        async def status(ack: Any) -> None:
            await ack()

        @app.options(DEVICE_ACTION)
        async def device_options(ack: Any) -> None:
            await ack(options=[])

        handler = AsyncSlackRequestHandler(app)

        async def events(request: Request) -> Any:
            return await handler.handle(request)

        web = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
        config = uvicorn.Config(
            web, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()

    uvicorn_loop(main())


# --- the district the benchmark runs against ----------------------------------------------

STATUS_CALLBACK = "incident.status_modal"  # IncidentView.CHANGE_STATUS
DEVICE_ACTION = "incident_device"  # IncidentField.DEVICE, the type-ahead (bench/slack_burst.py)


async def prepare_district(database_url: str, count: int) -> list[dict[str, Any]]:
    """Migrate, seed a technician and incidents, and build one status submission per incident."""
    from storage import models as m
    from storage.migrate import upgrade
    from tests.builders import add_district, add_staff
    from workflows.clock import SystemClock

    await asyncio.to_thread(upgrade, database_url)
    from zoneinfo import ZoneInfo

    from storage.db import create_engine, session_factory
    from storage.seed import ensure_defaults
    from storage.uow import UnitOfWorkFactory
    from workflows.incidents import OpenIncident, open_incident
    from workflows.ports import Context

    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        await ensure_defaults(session)
        await session.commit()
    stores = UnitOfWorkFactory(session_factory(engine), SystemClock())
    district = await add_district(stores)
    tech = await add_staff(stores, "Admin", "bench.admin@district.org")
    async with stores() as store:
        staff = await store.session.get(m.Staff, tech.staff_id)
        assert staff is not None
        staff.slack_user_id = "U_BENCH"
        await store.commit()
    submissions = []
    for i in range(count):
        async with stores() as store:
            opened = await open_incident(
                Context(store, SystemClock(), ZoneInfo("America/Chicago")),
                tech,
                OpenIncident(
                    device_id=district.device_id,
                    occurred_on=date.today(),
                    flags=("screen",),
                    idempotency_key=f"bench-{i}",
                ),
            )
            submissions.append(status_submission(opened.incident.id))
            await store.commit()
    await engine.dispose()
    return submissions


def status_submission(incident_id: int) -> dict[str, Any]:
    """What Slack sends when someone picks In Repair in the status modal and submits."""
    from bot.slack.ids import IncidentRef
    from bot.slack.incident_blocks import IncidentField, IncidentView
    from bot.slack.metadata import pack

    field = IncidentField.STATUS
    selected = {
        "type": "static_select",
        "selected_option": {
            "text": {"type": "plain_text", "text": "In Repair"},
            "value": "in_repair",
        },
    }
    return {
        "type": "view_submission",
        "user": {"id": "U_BENCH"},
        "view": {
            "id": f"V_BENCH_{incident_id}",
            "type": "modal",
            "callback_id": IncidentView.CHANGE_STATUS,
            "private_metadata": pack(IncidentRef(incident_id=incident_id), SECRET_KEY),
            "state": {"values": {field: {field: selected}}},
        },
    }


# --- load ----------------------------------------------------------------------------------


def signed(body: str, content_type: str) -> tuple[bytes, dict[str, str]]:
    """Signed now: a run takes well under Slack's five-minute window."""
    from tests.slack.signing import slack_signature

    ts = str(int(time.time()))
    return body.encode(), {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, body),
    }


def command_request() -> tuple[bytes, dict[str, str]]:
    from urllib.parse import urlencode

    form = {
        "command": "/incident",
        "text": "",
        "user_id": "U_BENCH",
        "channel_id": "C_HELP",
        "team_id": "T_DISTRICT",
        "api_app_id": "A_DEVICECARE",
        "trigger_id": "trigger.bench",
        "response_url": "https://hooks.slack.test/commands/1",
    }
    return signed(urlencode(form), "application/x-www-form-urlencoded")


def interaction_request(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    from urllib.parse import urlencode

    payload = {"team": {"id": "T_DISTRICT"}, "api_app_id": "A_DEVICECARE", **payload}
    return signed(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")


async def measure(
    port: int,
    senders: int,
    requests: list[tuple[bytes, dict[str, str]]],
    rate: float | None = None,
) -> list[float]:
    """`senders` concurrent clients send the prepared requests; each answer's time is the ack.

    With `rate` (requests per second, all senders together) each sender keeps its own steady
    pace, as people clicking do; without it every sender fires again the moment it is answered,
    which measures the server at saturation instead.
    """
    import aiohttp

    url = f"http://127.0.0.1:{port}/slack/events"
    connector = aiohttp.TCPConnector(limit=senders)
    loop = asyncio.get_running_loop()
    interval = senders / rate if rate else 0.0
    async with aiohttp.ClientSession(connector=connector) as session:
        latencies: list[float] = []
        queue = iter(requests)

        async def sender(k: int) -> None:
            next_at = loop.time() + interval * k / senders
            for body, headers in queue:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    next_at += interval
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                latencies.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(sender(k) for k in range(senders)))
        return latencies


def summary(name: str, values: list[float]) -> dict[str, float]:
    values = sorted(values)
    p = statistics.quantiles(values, n=100, method="inclusive")
    result = {"p50": p[49], "p99": p[98], "max": values[-1], "n": len(values)}
    print(
        f"{name:30} p50 {result['p50']:6.1f} ms   p99 {result['p99']:6.1f} ms   "
        f"max {result['max']:6.1f} ms   n={len(values)}"
    )
    return result


async def wait_ready(port: int) -> None:
    import aiohttp

    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/"):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} never came up")


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )


def profile(pid: int) -> subprocess.Popen[bytes] | None:
    """With BENCH_PROFILE=/tmp/ours.txt, py-spy samples our server while it is measured; with
    BENCH_PROFILE_GIL=1 too, only the thread holding the GIL (Python's CPU time)."""
    path = os.environ.get("BENCH_PROFILE")
    if not path:
        return None
    gil = ["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []
    return subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", path, "--nonblocking", *gil],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


WARM_UP = 50


async def run() -> None:
    folder = Path(tempfile.mkdtemp(prefix="devicecare-bench-"))
    database_url = ARGS.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
    modes_count = 2 if ARGS.saturate else 1
    prepared = await prepare_district(database_url, ARGS.requests * modes_count + WARM_UP)
    # The first WARM_UP incidents warm the status-change path, as /incident's path is warmed.
    warm_changes, prepared = prepared[:WARM_UP], prepared[WARM_UP:]
    chunks = [prepared[i * ARGS.requests : (i + 1) * ARGS.requests] for i in range(modes_count)]
    mode_names = [f"{ARGS.rate:g} req/s", "saturated"][:modes_count]
    # Each status change needs its own open incident; the bare app writes nothing.
    submissions = {m: {"ours": c, "bare": c} for m, c in zip(mode_names, chunks, strict=True)}
    fake_port, ours_port, bare_port = free_port(), free_port(), free_port()
    api_url = f"http://127.0.0.1:{fake_port}/api/"
    servers = [
        start("--serve", "fake", "--port", str(fake_port)),
        start(
            "--serve",
            "ours",
            "--port",
            str(ours_port),
            "--database-url",
            database_url,
            "--api-url",
            api_url,
        ),
        start("--serve", "bare", "--port", str(bare_port), "--api-url", api_url),
    ]
    try:
        for port in (fake_port, ours_port, bare_port):
            await wait_ready(port)
        warm = [command_request() for _ in range(WARM_UP)]
        await measure(ours_port, 5, warm)
        await measure(bare_port, 5, warm)
        await measure(ours_port, 5, [interaction_request(p) for p in warm_changes])
        await measure(bare_port, 5, [interaction_request(p) for p in warm_changes])
        sampler = profile(servers[1].pid)
        n = ARGS.requests
        modes: list[tuple[str, float | None]] = [(f"{ARGS.rate:g} req/s", ARGS.rate)]
        if ARGS.saturate:
            modes.append(("saturated", None))
        results: dict[str, dict[str, float]] = {}
        for mode, rate in modes:
            print(
                f"\n{n} requests per scenario, {ARGS.senders} concurrent senders, {mode}, "
                f"database {database_url.split(':')[0]}"
            )
            for name, port in (("ours", ours_port), ("bare", bare_port)):
                label = "DeviceCare" if name == "ours" else "bare bolt"
                commands = [command_request() for _ in range(n)]
                results[f"{mode} {name} /incident"] = summary(
                    f"{label} /incident", await measure(port, ARGS.senders, commands, rate)
                )
            for name, port in (("ours", ours_port), ("bare", bare_port)):
                label = "DeviceCare" if name == "ours" else "bare bolt"
                batch = submissions[mode][name]
                changes = [interaction_request(p) for p in batch]
                results[f"{mode} {name} status"] = summary(
                    f"{label} status change", await measure(port, ARGS.senders, changes, rate)
                )
            for scenario in ("/incident", "status"):
                ours, bare = results[f"{mode} ours {scenario}"], results[f"{mode} bare {scenario}"]
                ratio = ours["p99"] / bare["p99"]
                verdict = "meets" if ours["p99"] < 100 and ratio <= 1.5 else "MISSES"
                print(
                    f"{scenario:10} p99 ours/bare {ratio:4.2f} -> {verdict} the target "
                    "(p99 under 100 ms and within 1.5x of bare)"
                )
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(timeout=30)
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="requests per second across all senders (steady pace)",
    )
    parser.add_argument(
        "--saturate",
        action="store_true",
        help="also measure with every sender firing as fast as answered",
    )
    parser.add_argument("--database-url")
    parser.add_argument("--serve", choices=["ours", "bare", "fake"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--api-url")
    ARGS = parser.parse_args()
    if ARGS.serve == "ours":
        serve_ours(ARGS.port, ARGS.database_url, ARGS.api_url)
    elif ARGS.serve == "bare":
        serve_bare(ARGS.port, ARGS.api_url)
    elif ARGS.serve == "fake":
        serve_fake(ARGS.port)
    else:
        asyncio.run(run())


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
