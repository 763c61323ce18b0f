"""DeviceCare as a district installs it: the wheel, not the checkout.

The test builds the wheel, installs it with deploy/install.sh (the container image's install
step) into a new virtual environment in a temporary folder, from the runtime lock, and then works
from an empty folder through deploy/entrypoint.sh (the image's start step), with a clean
environment: no PYTHONPATH, the checkout nowhere on sys.path. It migrates, loads the demo,
bills a fee, and starts `devicecare serve` with Stripe (our stand-in) and SMTP (aiosmtpd)
configured. Then /healthz answers, a notice reaches the SMTP server, the link in it opens the
family page with its CSS, and the Pay button reaches Stripe.

uv's cache makes a second run quick: 35 s in all on a quiet two-core machine, about a minute
while other tests run (the first run on a machine also downloads the wheels).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from bot.settings import Settings
from tests.mail.smtp_server import SmtpServer, free_port
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, FakeStripe

pytestmark = pytest.mark.wheel
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"http://127\.0\.0\.1:\d+/family/[A-Za-z0-9._-]+")
PAY_FORM = re.compile(r'<form method="post" action="([^"]+/pay)">\s*<input[^>]*value="(\d+)"')
# A rule from templates/web/family.css, which the page inlines.
CSS_RULE = "*,*::before,*::after{box-sizing:border-box}"


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    assert found, "uv is missing: install the test extra (requirements/test.txt)"
    return found


def _clean_env() -> dict[str, str]:
    """This machine's environment (network and certificates included) without anything that
    could put the checkout on sys.path or configure DeviceCare."""
    settings = {name.upper() for name in Settings.model_fields}
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TEST_", "PYTEST"))
        and k.upper() not in settings
    }


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with FakeStripe().serve_in_thread() as fake:
        yield fake


def test_the_installed_wheel_serves_a_district(
    tmp_path: Path, smtp: SmtpServer, stripe: FakeStripe
) -> None:
    started = time.monotonic()
    # uv trusts the machine's certificate store, as pip does (install.sh does the same).
    env = _clean_env() | {"UV": _uv(), "PYTHON": sys.executable, "UV_SYSTEM_CERTS": "1"}
    dist, venv, home = tmp_path / "dist", tmp_path / "venv", tmp_path / "district"
    home.mkdir()

    _run([_uv(), "build", "--quiet", "--wheel", "--out-dir", str(dist), str(REPO)], tmp_path, env)
    (wheel,) = dist.glob("devicecare-*.whl")
    _assert_carries_the_shipped_files(wheel)
    version = _run(["sh", str(REPO / "deploy" / "install.sh"), str(venv), str(wheel)], home, env)
    assert re.search(r"^devicecare \d", version, re.M), version
    installed = time.monotonic()

    # The code runs from the environment, not from the checkout.
    python = str(venv / "bin" / "python")
    where = _run([python, "-c", "import bot; print(bot.__file__)"], home, env)
    assert where.startswith(str(venv)), where
    # The sentry extra resolves to what the lock installed: nothing to add, and it imports.
    lock = str(REPO / "requirements" / "runtime.txt")
    extra = f"devicecare[sentry] @ {wheel.as_uri()}"
    added = _run([_uv(), "pip", "install", "--python", python, "-c", lock, extra], home, env)
    assert "Installed" not in added, added
    _run([python, "-c", "import sentry_sdk, prometheus_client"], home, env)
    # The catalogues are found where the wheel put them: families read their own language.
    languages = _run([python, "-c", "import workflows.i18n as i; print(*i.LANGUAGES)"], home, env)
    assert {"en", "es", "vi"} <= set(languages.split()), languages

    port = free_port()
    env |= {
        "DEVICECARE_VENV": str(venv),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SECRET_KEY": "k3Jx9q-installed-wheel-test-key-0123456789abcdef",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "billing@district.example",
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe.base_url,
    }
    start = [str(REPO / "deploy" / "entrypoint.sh")]
    _run([*start, "db", "upgrade"], home, env)
    _run([*start, "devicecare", "demo"], home, env)  # as a Procfile line passes it
    _run(
        [*start, "fees", "add", "techfee", "--name", "Technology fee", "--amount", "25.00"],
        home,
        env,
    )
    billed = _run([*start, "fees", "apply", "techfee"], home, env)
    queued = re.search(r"(\d+) email\(s\) queued", billed)
    assert queued and int(queued.group(1)) > 0, billed

    proc = subprocess.Popen(
        [*start, "serve"], cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = _wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).raise_for_status())
        assert health.json()["status"] == "ok", health.text

        link = _wait_for(lambda: _fee_notice_link(smtp))
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200
        assert CSS_RULE in page.text and "Technology fee" in page.text

        form = PAY_FORM.search(page.text)
        assert form, page.text
        paid = httpx.post(
            base + form.group(1) if form.group(1).startswith("/") else form.group(1),
            data={"invoice_id": form.group(2), "amount": ""},
            timeout=10,
        )
        assert paid.status_code == 303
        assert paid.headers["location"].startswith(f"{stripe.base_url}/pay/cs_test_")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    log = output.decode()
    assert proc.returncode == 0, log
    assert "Traceback" not in log, log
    assert (home / "data" / "devicecare.db").exists()
    print(
        f"\nwheel built and installed in {installed - started:.1f} s; "
        f"whole test {time.monotonic() - started:.1f} s"
    )


def _assert_carries_the_shipped_files(wheel: Path) -> None:
    """Every package, template (as bot/templates/), catalogue (as workflows/locales/),
    migration and the Slack manifest is in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {
        f"bot/templates/{p.relative_to(REPO / 'templates').as_posix()}"
        for p in (REPO / "templates").rglob("*")
        if p.is_file()
    }
    shipped |= {
        f"workflows/locales/{p.relative_to(REPO / 'locales').as_posix()}"
        for p in (REPO / "locales").rglob("*.po")
    }
    shipped |= {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "storage" / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    shipped.add("bot/slack/manifest.yml")
    shipped |= {
        p.relative_to(REPO).as_posix()
        for package in ("bot", "services", "storage", "workflows")
        for p in (REPO / package).glob("*.py")
    }
    assert shipped <= names, sorted(shipped - names)


def _fee_notice_link(smtp: SmtpServer) -> str:
    """The family link in the first notice of the fee that has reached the SMTP server."""
    for received in smtp.messages:
        body = received.message.get_body(preferencelist=("plain",))
        text = "" if body is None else body.get_content()
        link = LINK.search(text)
        if "Technology fee" in text and link:
            return link.group(0)
    raise LookupError("no notice of the fee yet")


def _wait_for(probe: Callable[[], T], seconds: float = 60) -> T:
    """The probe's first answer that doesn't raise, within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return probe()
        except (httpx.HTTPError, LookupError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
