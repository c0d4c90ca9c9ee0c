"""The JSON Feed reader (1.0 and 1.1) against feeds of our own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.articles import normalize
from digest.errors import SourceError
from digest.settings import load_settings
from digest.sources.jsonfeed import read_json_feed

FEEDS = Path(__file__).parent / "fixtures" / "sources" / "feeds"


@pytest.fixture
def settings():
    return load_settings(site_url="https://site.example/", timezone="UTC")


def articles(name, settings):
    return [normalize(raw, site_url=settings.site_url, tz=settings.tz) for raw in read_json_feed((FEEDS / name).read_bytes(), name)]


def test_json_feed_1_0(settings):
    tomatoes, untitled = articles("jsonfeed-1.0.json", settings)
    assert tomatoes.title == "Tomato seeds are in"
    assert tomatoes.url == "https://seeds.example.org/2026/03/tomatoes"  # relative to home_page_url
    assert tomatoes.id == "https://seeds.example.org/#1"  # numeric id, made unique beyond its feed
    assert tomatoes.published == datetime(2026, 3, 7, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert tomatoes.tags == ("tomatoes", "seed-library")
    assert tomatoes.summary_text == "Twelve varieties this year."  # from content_html, script dropped
    assert untitled.title.startswith("A title-less micro post")  # a title made from content_text
    assert untitled.published == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # date_modified when no date_published
    assert untitled.url is None and untitled.id == "https://seeds.example.org/2026/03/no-title"


def test_json_feed_1_1_with_escaped_slashes_external_url_and_authors(settings):
    (tools,) = articles("jsonfeed-1.1.json", settings)
    assert tools.title == "Sharpening hoes ’n’ spades"
    assert tools.url == "https://makers.example.com/sharpening"
    assert tools.image == "https://tools.example.org/img/hoe.jpg"
    assert tools.author == "Kofi Mensah"
    assert tools.tags == ()
    # The spec says summary is plain text; this one carries an entity all the same.
    assert tools.summary_text == "Files & whetstones, a primer."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "invalid JSON at line 1"),
        (b'{"title": "an API answer", "items": []}', "not a JSON Feed"),
        (b"[1, 2, 3]", "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "items"),
        (b'{"version": "https://jsonfeed.org/version/1", "items": []}', "no entries"),
        (b'{"version": "\xff\xfe"}', "not UTF-8"),
    ],
)
def test_invalid_documents_raise_source_error(data, reason):
    with pytest.raises(SourceError, match=reason):
        read_json_feed(data, "x.json")
