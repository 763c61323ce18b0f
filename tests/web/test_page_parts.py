"""The family page's pieces that need no database: language choice, headers, the style hash."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from starlette.requests import Request

from bot.settings import Settings
from bot.web.family_page import (
    browser_language,
    content_security_policy,
    page_language,
    render_html,
)


def _settings(**options: Any) -> Settings:
    return Settings(**({"_env_file": None} | options))


def _request(accept_language: str) -> Request:
    headers = [(b"accept-language", accept_language.encode())] if accept_language else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_the_guardians_language_is_used_when_the_page_exists_in_it() -> None:
    assert page_language("es") == "es"
    assert page_language("es-MX") == "es"
    assert page_language("ES_us") == "es"
    assert page_language("fr") == "en"
    assert page_language(None) == "en"
    assert page_language("not a language tag") == "en"


def test_pages_without_a_guardian_follow_the_browser() -> None:
    assert browser_language(_request("es-MX,es;q=0.9,en;q=0.8")) == "es"
    assert browser_language(_request("en-US,en;q=0.9,es;q=0.8")) == "en"
    assert browser_language(_request("fr-FR,fr;q=0.9,es;q=0.5")) == "es"
    assert browser_language(_request("de;q=bogus")) == "en"
    assert browser_language(_request("")) == "en"


def test_the_policy_allows_the_stripe_redirect_only_when_stripe_is_on() -> None:
    off = content_security_policy(_settings())
    assert "form-action 'self';" in off
    on = content_security_policy(
        _settings(
            stripe_secret_key="sk_test_x",
            stripe_webhook_secret="whsec_x",
            stripe_api_base="http://127.0.0.1:9999/v1",
        )
    )
    assert "form-action 'self' https://checkout.stripe.com http://127.0.0.1:9999;" in on
    assert "default-src 'none'" in on and "img-src 'self'" in on


def test_the_style_hash_in_the_policy_matches_the_style_the_page_carries() -> None:
    html = render_html("rate_limited", "en", {"retry_after": 5})
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in content_security_policy(_settings())
    assert ' style="' not in html  # inline style attributes would be blocked by the policy
