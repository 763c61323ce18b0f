"""`devicecare serve` as a process: JSON logs on every line (uvicorn's too), heartbeats from
each part, /readyz and /metrics answering from them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_logs_json_and_reports_every_part(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "STRIPE_", "DATABASE_URL", "LOG_"))
    }
    env |= {"PORT": str(port), "HOST": "127.0.0.1", "LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if ready.status_code == 200:
                break
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert ready.json()["status"] == "ok"
        family = httpx.get(f"{base}/family/g1n0e99999.c2VjcmV0LXRva2Vu", timeout=5)
        assert family.status_code in (404, 410)
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output

    seen = {
        sample.labels["process"]
        for family_ in text_string_to_metric_families(metrics)
        for sample in family_.samples
        if sample.name == "devicecare_process_last_seen_timestamp_seconds"
    }
    assert seen == {"web", "worker", "mail", "scheduler"}

    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert records, output
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
    loggers = {record["logger"] for record in records}
    assert "uvicorn.access" in loggers and "uvicorn.error" in loggers
    assert any(r["message"] == "stopped" for r in records)
    assert "c2VjcmV0LXRva2Vu" not in output  # the access log never holds a family token
