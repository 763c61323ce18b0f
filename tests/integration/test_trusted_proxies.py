"""Whose X-Forwarded-For is believed, against a real `devicecare web`: the family page's rate
limit keys on the real client both when families connect directly and behind a proxy.

Each client address on the loopback network (127.0.0.1, 127.0.0.2) stands for one machine:
directly, each is a family; behind the proxy, 127.0.0.1 is the proxy and 127.0.0.2 is someone
reaching the service around it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.settings import Settings
from bot.web.proxies import parse_trusted_proxies

LIMIT = 2  # family page requests a client may make a minute


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_web(folder: Path, trusted_proxies: str) -> tuple[str, subprocess.Popen[str]]:
    folder.mkdir()
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "STRIPE_", "DATABASE_URL", "TRUSTED_"))
    }
    env |= {
        "PORT": str(port),
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/web.db",
        "FAMILY_PAGE_RATE_PER_MINUTE": str(LIMIT),
        "TRUSTED_PROXIES": trusted_proxies,
        # uvicorn's own variable: ignored, the app decides from TRUSTED_PROXIES alone.
        "FORWARDED_ALLOW_IPS": "*",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "web"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two `devicecare web` processes, started together: one reached directly, one behind a
    proxy at 127.0.0.1 (and any in 10.0.0.0/8)."""
    root = tmp_path_factory.mktemp("proxies")
    started = {
        "direct": _start_web(root / "direct", ""),
        "proxied": _start_web(root / "proxied", "127.0.0.1, 10.0.0.0/8"),
    }
    try:
        deadline = time.monotonic() + 60
        for base, proc in started.values():
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    assert proc.poll() is None, proc.communicate()[0]
                    assert time.monotonic() < deadline, "the web app never answered"
                    time.sleep(0.2)
        yield {name: base for name, (base, _) in started.items()}
    finally:
        for _, proc in started.values():
            proc.send_signal(signal.SIGTERM)
        for _, proc in started.values():
            output, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, output


def statuses(base: str, source: str, forwarded_for: str | None, count: int) -> list[int]:
    """Answers to `count` family-page requests from the local address `source`."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=base, headers=headers) as client:
        return [client.get("/family/not-a-real-link").status_code for _ in range(count)]


def test_directly_each_client_has_its_own_limit_and_forwarded_for_is_ignored(
    servers: dict[str, str],
) -> None:
    base = servers["direct"]
    assert statuses(base, "127.0.0.1", "203.0.113.1", LIMIT) == [404] * LIMIT
    # Another claimed address from the same machine is still that machine.
    assert statuses(base, "127.0.0.1", "203.0.113.2", 1) == [429]
    assert statuses(base, "127.0.0.1", None, 1) == [429]
    # Another machine has its own limit.
    assert statuses(base, "127.0.0.2", "203.0.113.1", LIMIT + 1) == [404] * LIMIT + [429]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    servers: dict[str, str],
) -> None:
    base = servers["proxied"]
    proxy = "127.0.0.1"
    assert statuses(base, proxy, "203.0.113.1", LIMIT + 1) == [404] * LIMIT + [429]
    assert statuses(base, proxy, "203.0.113.2", LIMIT) == [404] * LIMIT
    # A client can't escape its limit by sending its own X-Forwarded-For: the proxy
    # appends the address it saw, the right-most that is not a trusted proxy.
    assert statuses(base, proxy, "198.51.100.7, 203.0.113.1", 1) == [429]
    assert statuses(base, proxy, "198.51.100.8, 203.0.113.1, 10.0.0.9", 1) == [429]
    # Someone reaching the app around the proxy is not believed.
    assert statuses(base, "127.0.0.2", "203.0.113.3", LIMIT) == [404] * LIMIT
    assert statuses(base, "127.0.0.2", "203.0.113.4", 1) == [429]


def test_a_proxy_entry_that_is_not_an_address_is_refused() -> None:
    assert [str(n) for n in parse_trusted_proxies(" 10.0.0.5, 172.16.0.0/12 ,::1")] == [
        "10.0.0.5/32",
        "172.16.0.0/12",
        "::1/128",
    ]
    with pytest.raises(ValueError, match="'proxy.internal' is not an IP address or network"):
        Settings(_env_file=None, trusted_proxies="10.0.0.5,proxy.internal")
