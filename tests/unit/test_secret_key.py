"""SECRET_KEY must be a real key wherever a forged link could do harm; a laptop needs none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.secret_key import exposure, generate_secret_key, secret_key_problem, weakness
from bot.settings import PLACEHOLDER_SECRET_KEY, Settings

GOOD = "Zq3-8xV_r1LmTw9cNb2Ke7HsPu4YdAo6"  # 32 characters, 32 different ones


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (PLACEHOLDER_SECRET_KEY, "public placeholder"),
        ("a", "1 characters long"),
        ("s3cr3t-but-short", "16 characters long"),
        ("a" * 64, "repeated pattern"),
        ("password" * 5, "repeated pattern"),
    ],
)
def test_weak_keys_are_named_with_the_reason(key: str, why: str) -> None:
    assert why in (weakness(key) or "")


def test_generated_and_hex_keys_are_good() -> None:
    assert weakness(GOOD) is None
    assert weakness("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") is None
    generated = {generate_secret_key() for _ in range(20)}
    assert len(generated) == 20
    assert all(len(key) == 64 and weakness(key) is None for key in generated)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"public_base_url": "https://devicecare.district.org"}, "PUBLIC_BASE_URL"),
        ({"host": "0.0.0.0"}, "HOST"),
        ({"host": "10.1.2.3"}, "HOST"),
        ({"smtp_host": "127.0.0.1", "smtp_from": "billing@district.org"}, "SMTP_HOST"),
        ({"imap_host": "imap.district.org", "imap_username": "b", "imap_password": "p"}, "IMAP"),
        ({"stripe_secret_key": "sk_live_abc"}, "STRIPE_SECRET_KEY"),
        ({"payment_portal_url_template": "https://pay.example/{amount}"}, "PAYMENT_PORTAL"),
    ],
)
def test_reachable_or_live_setups_need_a_real_key(values: dict[str, Any], named: str) -> None:
    assert named in (exposure(settings(**values)) or "")
    problem = secret_key_problem(settings(**values))
    assert problem is not None and problem.startswith("SECRET_KEY is the public placeholder")
    assert "devicecare secret generate" in problem and "\n" not in problem
    assert secret_key_problem(settings(secret_key="short", **values)) is not None
    assert secret_key_problem(settings(secret_key=GOOD, **values)) is None


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"public_base_url": "http://127.0.0.1:3000", "host": "::1"},
        {"public_base_url": "http://devicecare.localhost:3000", "host": "localhost"},
    ],
)
def test_a_machine_of_its_own_starts_with_the_placeholder(values: dict[str, Any]) -> None:
    assert exposure(settings(**values)) is None
    assert secret_key_problem(settings(**values)) is None


def test_a_weak_previous_key_is_refused_too() -> None:
    live = {"public_base_url": "https://devicecare.district.org", "secret_key": GOOD}
    assert secret_key_problem(settings(**live, secret_key_previous=GOOD[::-1])) is None
    problem = secret_key_problem(settings(**live, secret_key_previous=f"{GOOD[::-1]},short"))
    assert problem is not None and problem.startswith("SECRET_KEY_PREVIOUS key 2 is 5 characters")


def test_secret_generate_prints_one_good_key() -> None:
    result = CliRunner().invoke(app, ["secret", "generate"])
    assert result.exit_code == 0
    [key] = result.output.split()
    assert weakness(key) is None


def _start(tmp_path: Path, process: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "STRIPE_", "DATABASE_URL", "SECRET_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", process],
        cwd=tmp_path,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("process", ["serve", "worker"])
def test_a_live_setup_with_the_placeholder_refuses_to_start(tmp_path: Path, process: str) -> None:
    done = _start(
        tmp_path, process, PUBLIC_BASE_URL="https://devicecare.district.org", SMTP_HOST="mail"
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Configuration error: SECRET_KEY is the public placeholder")
    assert "PUBLIC_BASE_URL is https://devicecare.district.org" in line
    assert "`devicecare secret generate`" in line
    assert not (tmp_path / "data").exists()  # refused before touching anything
