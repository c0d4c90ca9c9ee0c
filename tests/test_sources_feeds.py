"""The RSS/Atom reader (feedparser) against small feeds of our own."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.articles import normalize, parse_date
from digest.errors import SourceError
from digest.settings import load_settings
from digest.sources.feeds import read_feed

FEEDS = Path(__file__).parent / "fixtures" / "sources" / "feeds"


def read(name: str, url: str | None = None):
    return read_feed((FEEDS / name).read_bytes(), name, url)


@pytest.fixture
def settings():
    return load_settings(site_url="https://site.example/", timezone="Europe/Paris")


def test_atom_xml_base_resolves_entry_links_and_links_in_summaries(settings):
    beans, updated_only = (normalize(raw, site_url=settings.site_url, tz=settings.tz) for raw in read("atom-xmlbase.atom"))
    assert beans.url == "https://allotments.example.com/blog/2026/03/broad-beans"
    assert 'href="https://allotments.example.com/blog/sowing-guide"' in beans.summary_html
    assert beans.summary_text == "Sow them as the guide says & water well."
    assert beans.title == "Sowing broad beans"  # type="html" title made plain text
    assert beans.tags == ("sowing", "broad-beans")
    assert beans.id == "tag:allotments.example.com,2026:beans"
    assert beans.published == datetime(2026, 3, 6, 7, 0, tzinfo=UTC)  # published wins over updated
    assert updated_only.url == "https://allotments.example.com/root-relative"
    assert updated_only.published == datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    assert updated_only.summary_text == "Content given as XHTML."


def test_rss_without_base_resolves_against_the_feed_link_and_reads_odd_dates(settings):
    day_first, zoneless, timestamp = (normalize(raw, site_url=settings.site_url, tz=settings.tz) for raw in read("rss-odd-dates.xml"))
    assert day_first.url == "https://parish.example.org/notices/notice-1"
    assert zoneless.url == "https://parish.example.org/notices/notice-2"
    # 28/03/2026 can only be the 28th of March (day first), zone-less: read in Europe/Paris.
    assert day_first.published.isoformat() == "2026-03-28T12:00:00+01:00"
    # feedparser reads a zone-less ISO date as UTC; the site's timezone applies instead.
    assert zoneless.published.isoformat() == "2026-03-09T10:00:00+01:00"
    assert timestamp.published == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)


def test_encoding_is_detected_from_the_bytes(settings):
    day_first = normalize(read("rss-odd-dates.xml")[0], site_url=settings.site_url, tz=settings.tz)
    assert day_first.summary_text == "Café opens at noon."


def test_images_come_from_media_and_image_enclosures_only(settings):
    audio, thumbnail, enclosure = (normalize(raw, site_url=settings.site_url, tz=settings.tz) for raw in read("rss-odd-dates.xml"))
    assert audio.image is None  # an mp3 enclosure is not an image
    assert thumbnail.image == "https://parish.example.org/img/hall.jpg"
    assert enclosure.image == "https://parish.example.org/img/bells.png"


def test_a_fetched_feed_resolves_against_its_url():
    (raw,) = read_feed(
        b'<rss version="2.0"><channel><title>T</title><item><title>A</title><link>a/b</link></item></channel></rss>',
        "https://feeds.example.net/x/feed.xml",
        url="https://feeds.example.net/x/feed.xml",
    )
    assert raw.url == "https://feeds.example.net/x/a/b"


def test_script_in_a_title_stays_text_for_the_template_to_escape(settings):
    (raw,) = read_feed(
        b'<rss version="2.0"><channel><link>https://b.example/</link><item>'
        b"<title>&lt;script&gt;alert(1)&lt;/script&gt; Bees &amp; honey</title><link>/x</link>"
        b"<description>&lt;p&gt;Hi&lt;script&gt;alert(2)&lt;/script&gt;&lt;/p&gt;</description></item></channel></rss>",
        "inline",
    )
    article = normalize(raw, site_url=settings.site_url, tz=settings.tz)
    assert article.title == "<script>alert(1)</script> Bees & honey"
    assert "script" not in article.summary_html and "alert" not in article.summary_text


def test_html_page_is_not_a_feed():
    with pytest.raises(SourceError, match="not a feed: it is an HTML page"):
        read("login-page.xml")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>Empty</title></channel></rss>', "no entries"),
        (b"<rss><channel><title>&nope;</title></channel></rss>", "not a readable feed: .*undefined entity"),
        (b"\x00\x01 binary junk", "not a feed"),
    ],
)
def test_documents_without_entries_say_why(document, reason):
    with pytest.raises(SourceError, match=reason):
        read_feed(document, "x")


def test_a_bozo_feed_that_yielded_entries_is_read():
    # A blank line before the XML declaration: not well-formed, common in real feeds.
    document = b'\n<?xml version="1.0"?><rss version="2.0"><channel><item><title>Still here</title></item></channel></rss>'
    (raw,) = read_feed(document, "x")
    assert raw.title == "Still here"


def test_empty_nested_items_are_not_articles():
    document = (
        b'<rss version="2.0"><channel><link>https://p.example/</link>'
        b"<item><title>Real</title><link>/r</link><item /></item></channel></rss>"
    )
    assert [raw.title for raw in read_feed(document, "x")] == ["Real"]


def one_item(fields: bytes):
    """The single entry of an RSS 2.0 document with one item made of ``fields``."""
    (raw,) = read_feed(b'<rss version="2.0"><channel><item><title>T</title>' + fields + b"</item></channel></rss>", "x")
    return raw


def test_rss_author_keeps_the_name_not_the_address():
    assert one_item(b"<author>jo@example.org (Jo Bloggs)</author>").author == "Jo Bloggs"


def test_feedparser_struct_time_and_our_parser_agree_on_zoned_dates():
    raw = one_item(b"<pubDate>Wed, 17 Jan 2018 15:50:00 EST</pubDate>")
    assert isinstance(raw.date, time.struct_time)
    assert parse_date(raw.date) == datetime(2018, 1, 17, 20, 50, tzinfo=UTC)


@pytest.mark.parametrize(("language", "expected"), [("en-us", datetime(2026, 3, 4, tzinfo=UTC)), ("en-gb", datetime(2026, 4, 3, tzinfo=UTC)), ("", datetime(2026, 4, 3, tzinfo=UTC))])
def test_a_slash_date_in_a_feed_follows_the_feeds_language(language, expected):
    data = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Parish news</title><link>https://parish.example.org/</link>'
        f"<language>{language}</language><item><title>Fete</title><link>https://parish.example.org/fete</link>"
        "<pubDate>03/04/2026</pubDate></item></channel></rss>"
    ).encode()
    (raw,) = read_feed(data, "parish.xml")
    settings = load_settings()
    article = normalize(raw, site_url=settings.site_url, tz=settings.tz)
    assert article.published.astimezone(UTC) == expected
