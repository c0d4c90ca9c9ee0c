"""What readers see, as the sources and settings say it: lead images from
every kind of source (alt, width, height only when known), the site logo and
its dark version, tags as written, right-to-left text, and the issue's own
date in the header. Built from real source files of our own, through the
readers, normalization and rendering."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from rendering_samples import article, issue

from digest.images import LeadImage, display_size, first_body_image, lead_image, pixels
from digest.rendering import render_variant
from digest.sources import load_articles

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>Orchard</title><link>https://orchard.example.org/</link><language>en-gb</language>
<item><title>Thumbnail</title><link>https://orchard.example.org/1</link><pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate>
  <media:thumbnail url="https://cdn.example.org/thumb.jpg" width="300" height="200"/><description>One.</description></item>
<item><title>Content</title><link>https://orchard.example.org/2</link><pubDate>Tue, 24 Nov 2026 09:00:00 GMT</pubDate>
  <media:content url="https://cdn.example.org/wide.jpg" medium="image" width="1200" height="600"/>
  <media:content url="https://cdn.example.org/clip.mp4" medium="video"/><description>Two.</description></item>
<item><title>Enclosure</title><link>https://orchard.example.org/3</link><pubDate>Tue, 24 Nov 2026 08:00:00 GMT</pubDate>
  <enclosure url="https://cdn.example.org/episode.mp3" type="audio/mpeg" length="1"/>
  <enclosure url="https://cdn.example.org/photo.png" type="image/png" length="1"/><description>Three.</description></item>
<item><title>Body image</title><link>https://orchard.example.org/4</link><pubDate>Tue, 24 Nov 2026 07:00:00 GMT</pubDate>
  <description><![CDATA[<p>Four <img src="/img/hive.jpg" alt="A hive in frost" width="400" height="300"></p>]]></description></item>
<item><title>Insecure</title><link>https://orchard.example.org/5</link><pubDate>Tue, 24 Nov 2026 06:00:00 GMT</pubDate>
  <media:thumbnail url="http://cdn.example.org/old.jpg"/><description><![CDATA[<p>Five <img src="data:image/png;base64,AAAA"></p>]]></description></item>
</channel></rss>"""

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1", "title": "Notes", "home_page_url": "https://notes.example.org/", "language": "he",
    "items": [
        {"id": "1", "url": "https://notes.example.org/1", "title": "רשימה", "content_text": "שלום", "image": "https://notes.example.org/a.webp",
         "date_published": "2026-11-24T10:00:00Z"},
        {"id": "2", "url": "https://notes.example.org/2", "title": "English note", "content_html": "<p>Hi</p>", "language": "en",
         "date_published": "2026-11-24T09:00:00Z"},
    ],
}

POSTS = {
    "cover.md": '---\ntitle: Cover map\ndate: 2026-11-24\ntags: ["Telescopes & Gear", "night sky"]\n'
                'cover:\n  src: https://cdn.example.org/cover.jpg\n  alt: "Saturn, low over the shed"\n  width: 2000\n  height: 1000\n---\nBody.\n',
    "thumb.md": "---\ntitle: Thumbnail key\ndate: 2026-11-24\nthumbnail: /images/t.jpg\n"
                'description: "Read *our* [guide](/guide), call [the shop](tel:+44-20-7946-0000) or [not](javascript:alert(1))."\n---\nBody.\n',
    "body.md": '---\ntitle: From the body\ndate: 2026-11-24\n---\nText.\n\n<img src="https://cdn.example.org/body.gif" width="120">\n\n![second](https://cdn.example.org/no.jpg)\n',
    "none.md": "---\ntitle: No picture\ndate: 2026-11-24\nlang: ar\n---\nنص عربي.\n",
}


@pytest.fixture
def site(tmp_path, settings_for):
    (tmp_path / "posts").mkdir()
    for name, text in POSTS.items():
        (tmp_path / "posts" / name).write_text(text, encoding="utf-8")
    (tmp_path / "feed.xml").write_text(RSS, encoding="utf-8")
    (tmp_path / "feed.json").write_text(json.dumps(JSON_FEED), encoding="utf-8")
    settings = settings_for(
        site_url="https://gazette.example.org/", sources=[str(tmp_path / "posts"), str(tmp_path / "feed.xml"), str(tmp_path / "feed.json")]
    )
    loaded = load_articles(settings.sources, settings)
    return settings, {a.title: a for a in loaded.articles}


def test_each_source_gives_its_lead_image_with_what_it_knows_of_it(site):
    _, by_title = site
    seen = {title: (a.image, a.image_alt, a.image_width, a.image_height) for title, a in by_title.items()}
    assert seen["Thumbnail"] == ("https://cdn.example.org/thumb.jpg", None, 300, 200)
    assert seen["Content"] == ("https://cdn.example.org/wide.jpg", None, 1200, 600)
    assert seen["Enclosure"] == ("https://cdn.example.org/photo.png", None, None, None)  # the image, not the podcast
    assert seen["Body image"] == ("https://orchard.example.org/img/hive.jpg", "A hive in frost", 400, 300)
    assert seen["Insecure"][0] is None  # neither http nor data: reaches an email
    assert seen["Cover map"] == ("https://cdn.example.org/cover.jpg", "Saturn, low over the shed", 2000, 1000)
    assert seen["Thumbnail key"][0] == "https://gazette.example.org/images/t.jpg"
    assert seen["From the body"] == ("https://cdn.example.org/body.gif", None, 120, None)  # the first <img> only
    assert seen["רשימה"][0] == "https://notes.example.org/a.webp"
    assert seen["No picture"][0] is None


def images_of(html: str) -> dict[str, dict[str, str]]:
    return {m["src"]: m for m in (dict(re.findall(r'(\w+)="([^"]*)"', tag)) for tag in re.findall(r"<img [^>]*>", html))}


def test_the_standard_layout_shows_them_sized_by_the_column_and_the_compact_layout_does_not(site, settings_for):
    settings, by_title = site
    items = sorted(by_title.values(), key=lambda a: a.title)
    html = render_variant(items, issue(), settings, variant_key="v").html
    images = images_of(html)
    assert set(images) == {a.image for a in items if a.image}
    thumb, wide, photo = images["https://cdn.example.org/thumb.jpg"], images["https://cdn.example.org/wide.jpg"], images["https://cdn.example.org/photo.png"]
    assert (thumb["width"], thumb["height"], thumb["alt"]) == ("300", "200", "Thumbnail")  # smaller than the column: its own size
    assert (wide["width"], wide["height"]) == ("552", "276")  # scaled down to the column, proportions kept
    assert photo["width"] == "552" and "height" not in photo  # proportions unknown: CSS height:auto
    assert images["https://cdn.example.org/cover.jpg"]["alt"] == "Saturn, low over the shed"
    for image in images.values():
        style = image["style"].replace(" ", "").split(";")
        assert all(rule in style for rule in ("display:block", "border:0", "height:auto")), style
        # As wide as the column and narrowed with it, but never past its own width.
        assert f"max-width:{image['width']}px" in style if int(image["width"]) < 552 else "max-width:100%" in style, style
    compact = render_variant(items, issue(), settings_for(layout="compact", site_url="https://gazette.example.org/"), variant_key="v").html
    assert "<img" not in compact


@pytest.mark.parametrize(
    ("image", "size"),
    [(LeadImage("x", width=1104, height=600), (552, 300)), (LeadImage("x", width=100, height=50), (100, 50)),
     (LeadImage("x", width=800), (552, None)), (LeadImage("x", height=800), (552, None)), (LeadImage("x"), (552, None))],
)
def test_display_size(image, size):
    assert display_size(image) == size


@pytest.mark.parametrize("value", ["0", "-3", "12.5", "auto", "100%", "９００", "99999999", True, [300], None, "", "1e3"])
def test_sizes_a_source_gets_wrong_are_ignored(value):
    assert pixels(value) is None


def test_image_urls_from_outside_are_taken_only_as_absolute_https():
    hostile = ["javascript:alert(1)", "//cdn.example.org/a.jpg", 'https://x.example.org/a.jpg" onerror="alert(1)', "http://x.example.org/a.jpg", ""]
    assert lead_image([LeadImage(url) for url in hostile], None) is None
    assert lead_image([LeadImage(url) for url in hostile], "https://base.example.org/")  # //cdn... resolves against an https base
    assert first_body_image("<p>" + "<b>" * 10000 + '<img src="a.jpg" alt="A">') == LeadImage("a.jpg", "A")


def test_the_logo_and_its_dark_version(settings_for):
    settings = settings_for(logo_url="https://gazette.example.org/logo.png", logo_dark_url="https://gazette.example.org/logo-dark.png", logo_width=180,
                            site_name="The Gazette")
    html = render_variant([article(0)], issue(), settings, variant_key="v").html
    images = images_of(html)
    light, dark = images["https://gazette.example.org/logo.png"], images["https://gazette.example.org/logo-dark.png"]
    assert light["alt"] == dark["alt"] == "The Gazette" and light["width"] == dark["width"] == "180"
    assert "display:none" in dark["style"].replace(" ", "") and "<!--[if !mso]><!--><img" in html
    head = html.split("</head>")[0]
    assert re.search(r"\.logo-dark\s*\{\s*display:\s*block\s*!important", head) and re.search(r"\.logo-light\s*\{\s*display:\s*none\s*!important", head)


@pytest.mark.parametrize("value", ["http://gazette.example.org/logo.png", "/logo.png", 'https://x.example.org/a.png"><script>', "javascript:alert(1)"])
def test_a_logo_must_be_an_https_image(settings_for, value):
    from digest.errors import SettingsError

    with pytest.raises(SettingsError, match="logo_url"):
        settings_for(logo_url=value)


def test_tags_are_shown_as_written_and_matched_as_slugs(site, settings_for):
    settings, by_title = site
    cover = by_title["Cover map"]
    assert cover.tags == ("telescopes-gear", "night-sky") and cover.tag_names == ("Telescopes & Gear", "night sky")
    sectioned = settings_for(site_url="https://gazette.example.org/", sections=["telescopes-gear"])
    rendered = render_variant([cover], issue(), sectioned, variant_key="v", tags=frozenset({"telescopes-gear"}))
    assert "Telescopes &amp; Gear, night sky" in rendered.html and "telescopes-gear" not in rendered.html.split("<body", 1)[1]
    assert re.search(r'<h2 class="section-title"[^>]*>Telescopes &amp; Gear</h2>', rendered.html)
    assert "for Telescopes & Gear." in rendered.text.replace("\n", " ")


def test_right_to_left_languages_set_dir_on_the_document_and_on_an_article(site, settings_for):
    settings, by_title = site
    arabic = by_title["No picture"]
    assert arabic.language == "ar"
    html = render_variant([arabic, by_title["Cover map"]], issue(), settings, variant_key="v").html
    assert re.search(r'<html(?=[^>]* lang="en")(?=[^>]* dir="ltr")', html)
    assert re.search(r'<td class="cell article"(?=[^>]* lang="ar")(?=[^>]* dir="rtl")', html)
    rtl_site = settings_for(language="he", site_url="https://gazette.example.org/")
    html = render_variant([by_title["רשימה"], by_title["English note"]], issue(), rtl_site, variant_key="v").html
    assert re.search(r'<html(?=[^>]* lang="he")(?=[^>]* dir="rtl")', html)
    assert re.search(r'<td class="cell article"(?=[^>]* lang="en")(?=[^>]* dir="ltr")', html)  # an English article in a Hebrew issue
    assert not re.search(r'<td class="cell article"[^>]* lang="he"', html)  # the issue's own language needs no mark


def test_the_header_shows_the_issues_scheduled_date_not_the_day_it_was_built(settings_for):
    from digest.issue import IssueRequest, plan_issue
    from digest.subscribers import Subscriber

    settings = settings_for(site_url="https://gazette.example.org/", sources=[], schedule="weekly monday 08:00")
    built = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday: the issue is Monday 30 November's
    planned = plan_issue(settings, IssueRequest(as_of=built), subscribers=[Subscriber(email="a@example.org", name="A", tags=frozenset(), list_name="l", line=2)])
    assert planned.context.scheduled_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    html = render_variant([article(0)], planned.context, settings, variant_key="v").html
    assert "30 Nov 2026 · issue 2026-W49" in html and "2 Dec 2026" not in html


def test_links_and_emphasis_of_a_markdown_description_survive_into_the_email(site):
    settings, by_title = site
    html = render_variant([by_title["Thumbnail key"]], issue(), settings, variant_key="v").html
    excerpt = re.search(r'<div class="excerpt"[^>]*>(.*?)</div>', html, re.DOTALL)[1]
    assert re.search(r"<em[^>]*>our</em>", excerpt)
    assert re.search(r'<a href="https://gazette.example.org/guide"[^>]*>guide</a>', excerpt)
    assert re.search(r'<a href="tel:\+44-20-7946-0000"[^>]*>the shop</a>', excerpt)
    assert "href=\"javascript" not in excerpt.replace(" ", "")  # left as text by the Markdown reader, never a link


def test_the_bundled_example_shows_no_broken_image(settings_for):
    """The example site is fictional (gazette.example.org): an image there
    would be a broken picture in every reader's mail, so none is referenced."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    settings = settings_for(site_url="https://gazette.example.org/", sources=[str(repo / "examples" / "posts"), str(repo / "examples" / "feeds" / "orchard-lane-beekeepers.xml")])
    loaded = load_articles(settings.sources, settings)
    assert len(loaded.articles) >= 5
    html = render_variant(loaded.articles, issue(), settings, variant_key="v").html
    assert images_of(html) == {}
