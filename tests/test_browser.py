"""The default templates as a browser lays them out (headless Chromium through
playwright): no sideways scrolling on a 375 px phone, even with a very long
title word and URL; the dark-mode rules apply under prefers-color-scheme: dark;
screenshots have the asked width. The same checks on a dry run over the
shared corpus are in test_email_e2e.py."""

from __future__ import annotations

import struct

import pytest
from preview_samples import LONG_WORD, sample_request, write_site

from digest.errors import DigestError
from digest.preview import PHONE_WIDTH, build_preview, find_chromium, force_color_scheme, measure, screenshot
from digest.settings import load_settings

try:
    import playwright.sync_api  # noqa: F401

    find_chromium()
except (ImportError, DigestError) as exc:
    pytest.skip(f"headless Chromium is not available: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def issue_html(tmp_path_factory) -> str:
    """The HTML of the variant with every article (the long title and URL too),
    personalized, as the default templates render it."""
    root = write_site(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # its digest.toml, not the repository's
        preview = build_preview(load_settings(), sample_request())
    broadest = max(preview.variants, key=lambda v: v.articles)
    assert LONG_WORD in broadest.html
    return broadest.html


@pytest.fixture(scope="module")
def phone(issue_html) -> dict:
    return measure(issue_html, PHONE_WIDTH)


def test_no_horizontal_scroll_on_a_phone(phone):
    assert phone["scroll_width"] <= PHONE_WIDTH


def test_no_horizontal_scroll_on_a_desktop(issue_html):
    assert measure(issue_html, 600)["scroll_width"] <= 600


def test_dark_mode_rules_apply_under_prefers_color_scheme_dark(phone):
    light, dark = phone["light"], phone["dark"]
    assert light["background"] and dark["background"]
    assert dark["background"] != light["background"]
    # Not only the page: text colours change too, element by element.
    changed_text = sum(1 for (_, a), (_, b) in zip(light["colours"], dark["colours"], strict=True) if a != b)
    assert changed_text > 0


def test_forced_dark_page_looks_like_real_dark_mode(issue_html, phone):
    """What the preview server shows for 'dark': the dark rules forced on in a
    browser that prefers light."""
    forced = measure(force_color_scheme(issue_html, "dark"), PHONE_WIDTH)
    assert forced["light"]["colours"] == phone["dark"]["colours"]


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (PNG spec §11.2.2)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_screenshot_is_a_png_of_the_whole_issue_at_the_width(issue_html, phone, tmp_path):
    out = screenshot(issue_html, tmp_path / "shots" / "issue.png", width=PHONE_WIDTH, dark=True, offline=True)
    # The whole page, not only the first screen (the viewport is 800 px high).
    assert png_size(out) == (PHONE_WIDTH, phone["scroll_height"])


def test_command_line_screenshot_at_phone_width(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from digest.cli import cli

    monkeypatch.chdir(write_site(tmp_path))
    args = ["preview", "--as-of", "2026-12-01T08:00", "--screenshot", "shot.png", "--width", "375", "--dark"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "shot.png")[0] == PHONE_WIDTH
    assert not (tmp_path / "outbox").exists()  # the picture instead of the HTML file
