"""The pages of a real `digest serve` in headless Chromium, under the
security headers every answer carries (digest.web.guards.security_headers):
nothing a page needs is blocked (its inline style applies, its form posts),
no policy violation is reported, and another site cannot frame a page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import DigestError
from digest.preview import CHROMIUM_ARGS, find_chromium
from digest.settings import load_settings
from digest.signup import SignupRequest, make_confirm_token
from digest.unsubscribe import make_token

try:
    from playwright.sync_api import sync_playwright

    CHROMIUM = find_chromium()
except (ImportError, DigestError) as exc:
    pytest.skip(f"headless Chromium is not available: {exc}", allow_module_level=True)

SECRET = "k3Vq9ZpL2xW7rT5nB8mC4yH6jF1dG0sA"
# Collects every Content-Security-Policy violation the page reports, from its first byte.
RECORD_VIOLATIONS = """window.__violations = [];
document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture
def served(tmp_path, start_serve):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text("email,name,tags\nada@example.org,Ada,roses\nbob@example.org,Bob,bees\n", encoding="utf-8")
    return start_serve(secret_key=SECRET, subscribers=lists, ledger=tmp_path / "digest.db", sources="[]")


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        yield browser
        browser.close()


def page_urls(base: str) -> dict[str, str]:
    settings = load_settings(secret_key=SECRET, public_url=base)
    preferences = make_token(settings, "ada@example.org", "garden", "preferences")
    confirm = make_confirm_token(settings, SignupRequest("new@example.org", "", frozenset(), "weekly", "garden", datetime.now(UTC)))
    return {
        "unsubscribe": f"{base}/unsubscribe?token={make_token(settings, 'ada@example.org', 'garden')}",
        "preferences": f"{base}/preferences?token={preferences}",
        "subscribe": f"{base}/subscribe",
        "confirm": f"{base}/confirm?token={confirm}",
        "forget": f"{base}/forget?token={preferences}",
    }


def test_every_page_works_under_its_policy_and_its_form_posts(served, browser):
    page = browser.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    messages = []
    page.on("console", lambda message: messages.append(message.text))
    for name, url in page_urls(served.base).items():
        answer = page.goto(url)
        assert answer.status == 200, name
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], name
        # The inline <style> applied: body{max-width:34rem} is 544 px, button{padding:.5rem 1.2rem}.
        assert page.evaluate("getComputedStyle(document.body).maxWidth") == "544px", name
        assert page.locator("button[type=submit]").count() >= 1, name
        assert page.evaluate("window.__violations") == [], name
    # Pressing a page's button posts its form (form-action allows it) and does what it says.
    page.goto(page_urls(served.base)["unsubscribe"])
    page.click("button[type=submit]")
    page.wait_for_selector("text=will get no more mail")
    assert page.evaluate("window.__violations") == []
    assert not [text for text in messages if "Content Security Policy" in text or "Refused" in text], messages


def test_another_site_cannot_frame_a_page(served, browser):
    page = browser.new_page()
    url = page_urls(served.base)["unsubscribe"]
    # A decoy on another origin (about:blank set to this content) framing the one-click form.
    page.set_content(f'<p>Win a prize!</p><iframe id="decoy" src="{url}" width="600" height="400"></iframe>')
    page.wait_for_load_state("load")
    frame = page.frame_locator("#decoy")
    assert frame.locator("button").count() == 0  # the browser refused to render the page in the frame
    # ... while the same page opened on its own shows the button.
    page.goto(url)
    assert page.locator("button[type=submit]").count() == 1
