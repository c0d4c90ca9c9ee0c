"""Normalization rules shared by every source: tags, dates, excerpts,
sanitizing, links, ids."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as dt_time
from zoneinfo import ZoneInfo

import pytest

from digest.articles import (
    RawArticle,
    date_problem,
    excerpt,
    merge_tags,
    normalize,
    parse_date,
    reading_minutes,
    sanitize_html,
    slugify_tag,
)
from digest.errors import SourceError
from digest.settings import load_settings

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def settings():
    return load_settings(site_url="https://site.example/blog/", timezone="Europe/Paris")


def words(n: int, word: str = "word") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


# --- tags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("Angry React", "angry-react"),
        ("Frost_Protection", "frost-protection"),
        ("  Show & Tell!  ", "show-tell"),
        ("ci/cd", "ci-cd"),
        ("Technology/Java", "technology-java"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # case folding, not lower()
        ("배포 자동화", "배포-자동화"),
        ("हिन्दी", "हिन्दी"),  # combining vowel signs are kept
        ("大数据 技术", "大数据-技术"),
        ("a -- b", "a-b"),
        ("!!!", ""),
    ],
)
def test_slugify_tag(raw, slug):
    assert slugify_tag(raw) == slug


def test_merge_tags_splits_strings_but_keeps_list_items_whole():
    merged = merge_tags(["Soil, compost ,  No Dig", "heating frost", ["Data Structure", "soil"], None, "Compost"])
    assert merged == ("soil", "compost", "no-dig", "heating", "frost", "data-structure")


def test_a_comma_inside_a_whole_tag_separates_words_and_symbols_alone_are_no_tag():
    # A feed category is one term (NYT: "Gowanus Canal (Brooklyn, NY)"); its comma is a word break.
    assert merge_tags([["x,y", "Gowanus Canal (Brooklyn, NY)", "🐝", "🐝 bees"]]) == ("x-y", "gowanus-canal-brooklyn-ny", "bees")


# --- dates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-10-14T11:23:00Z", datetime(2024, 10, 14, 11, 23, tzinfo=UTC)),
        ("2019-06-12 10:30:00 +0100", datetime(2019, 6, 12, 10, 30, tzinfo=timezone(timedelta(hours=1)))),
        ("2009-01-12T5:40:14-05:00", datetime(2009, 1, 12, 5, 40, 14, tzinfo=timezone(timedelta(hours=-5)))),
        ("Sun, 10 Dec 17 13:01:36 -0800", datetime(2017, 12, 10, 13, 1, 36, tzinfo=timezone(timedelta(hours=-8)))),
        ("Wed, 17 Jan 2018 15:50:00 EST", datetime(2018, 1, 17, 15, 50, tzinfo=timezone(timedelta(hours=-5)))),
        ("Fri, 22 Sep 2023 16:30:15 -0000", datetime(2023, 9, 22, 16, 30, 15, tzinfo=UTC)),
        ("Sun Aug 17 16:51:14 UTC 2008", datetime(2008, 8, 17, 16, 51, 14, tzinfo=UTC)),
        ("1518478934", datetime(2018, 2, 12, 23, 42, 14, tzinfo=UTC)),
        ("25 Aug 2024", datetime(2024, 8, 25)),
        ("6 December 2024", datetime(2024, 12, 6)),
        ("26/11/2026", datetime(2026, 11, 26)),  # only one reading: day first
        ("11/26/2026 09:30", datetime(2026, 11, 26, 9, 30)),  # only one reading: month first
        ("04/04/2026", datetime(2026, 4, 4)),  # both readings are the same day
        ("26.11.2026", datetime(2026, 11, 26)),  # dotted: day first
        ("03.04.2026 18:05", datetime(2026, 4, 3, 18, 5)),
        ("Nov 26 2026", datetime(2026, 11, 26)),
        ("26 Nov 2026", datetime(2026, 11, 26)),
        ("November 26, 2026", datetime(2026, 11, 26)),
        ("2024-07-30 09:30:00", datetime(2024, 7, 30, 9, 30)),
    ],
)
def test_parse_date_forms(text, expected):
    parsed = parse_date(text)
    assert parsed == expected
    assert (parsed.utcoffset() is None) == (expected.utcoffset() is None)


@pytest.mark.parametrize("value", ["", "soon", "2026-13-45", None, True, "17 Dec 07"])
def test_parse_date_rejects_non_dates(value):
    assert parse_date(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("03/04/2026", "ambiguous date 03/04/2026: use 2026-04-03 or 2026-03-04"),
        ("08/02/2013 12:00:00", "ambiguous date 08/02/2013 12:00:00: use 2013-02-08 or 2013-08-02"),
        ("2026-11-26T25:61:00", "unreadable date 2026-11-26T25:61:00 (hour must be in 0..23)"),
        ("2026-02-30", "unreadable date 2026-02-30 (day is out of range for month)"),
        ("0000-01-01", "unreadable date 0000-01-01 (year 0 is out of range)"),
        ("99999-01-01", "unreadable date 99999-01-01 (year 99999 is out of range)"),
        (date(1, 1, 1), "unreadable date 0001-01-01 (year 1 is outside 1000..9000)"),
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), "(year 9999 is outside 1000..9000)"),
        (2026, "unreadable date 2026: a number, but not a Unix time (9 to 11 digits)"),
        (10**400, "a number, but not a Unix time"),
        (float("nan"), "unreadable date nan: a number"),
        (float("inf"), "unreadable date inf: a number"),
        (["2026-01-01"], "unreadable date: a list, not a date"),
        ({"on": "2026-01-01"}, "unreadable date: a mapping, not a date"),
        (dt_time(7, 32), "unreadable date 07:32:00: a time of day, not a date"),
        ("soon", "unreadable date soon: write it like 2026-11-26"),
    ],
)
def test_date_problem_says_why_a_value_is_no_date(value, problem):
    assert parse_date(value) is None
    assert problem in date_problem(value)


@pytest.mark.parametrize("value", [None, "", "  ", "2026-11-26", datetime(2026, 11, 26, tzinfo=UTC), 1518478934])
def test_no_problem_with_a_date_or_with_no_value(value):
    assert date_problem(value) is None


def test_a_leap_second_from_feedparser_is_read_as_the_last_second():
    assert parse_date(time.struct_time((2016, 12, 31, 23, 59, 60, 5, 366, 0))) == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_parse_date_takes_feedparser_struct_time_as_utc():
    assert parse_date(time.struct_time((2020, 5, 14, 10, 0, 18, 3, 135, 0))) == datetime(2020, 5, 14, 10, 0, 18, tzinfo=UTC)


def test_naive_dates_are_read_in_the_site_timezone(settings):
    naive = normalize(RawArticle(source="t", title="t", date="2026-07-01 09:00:00"), site_url=settings.site_url, tz=settings.tz)
    day = normalize(RawArticle(source="t", title="t", date=date(2026, 1, 15)), site_url=settings.site_url, tz=settings.tz)
    offset = normalize(RawArticle(source="t", title="t", date="2026-07-01T09:00:00+09:00"), site_url=settings.site_url, tz=settings.tz)
    assert naive.published == datetime(2026, 7, 1, 9, tzinfo=PARIS)
    assert naive.published.utcoffset() == timedelta(hours=2)  # summer time in Paris
    assert day.published == datetime(2026, 1, 15, tzinfo=PARIS)
    assert offset.published.utcoffset() == timedelta(hours=9)
    assert normalize(RawArticle(source="t", title="t", date="someday"), site_url=settings.site_url, tz=settings.tz).published is None


# --- excerpts -----------------------------------------------------------------------


def test_short_text_is_kept_whole():
    assert excerpt("  A short   summary.\n") == "A short summary."


def test_excerpt_cuts_at_the_last_sentence_end_in_the_budget():
    text = f"{words(30)}. {words(15, 'more')}! {words(40, 'tail')}."
    cut = excerpt(text)
    assert cut == f"{words(30)}. {words(15, 'more')}!"


def test_excerpt_without_a_sentence_end_cuts_between_words_and_adds_an_ellipsis():
    cut = excerpt("Plots, " + words(80))
    assert cut == "Plots, " + words(49) + "…"


def test_excerpt_keeps_curly_quotes_and_ellipses():
    text = "He said “probably not,” and that’s that… " + words(60)
    cut = excerpt(text)
    assert cut.startswith("He said “probably not,” and that’s that…")


def test_excerpt_of_text_without_spaces_is_bounded_in_characters():
    chinese = "在技术之路上的一些小技巧。" * 60
    cut = excerpt(chinese)
    assert 75 <= len(cut) <= 150
    assert cut.endswith("。")
    long_urls = "see https://example.org/" + "x" * 500 + " and more"
    assert len(excerpt(long_urls)) <= 50 * 8 + 1


def test_reading_minutes():
    assert reading_minutes("") == 1
    assert reading_minutes(words(230)) == 1
    assert reading_minutes(words(231)) == 2
    assert reading_minutes("字" * 460) == 2


# --- sanitizing and links -----------------------------------------------------------


def test_sanitize_keeps_simple_markup_and_drops_the_rest():
    dirty = (
        '<p onclick="x()">Hi <b>bold</b> <em>em</em> <code>c</code><br>'
        '<img src="x.png" onerror="alert(1)"><script>alert(2)</script><style>p{}</style>'
        '<a href="javascript:alert(3)">js</a> <a href="data:text/html,x">data</a> '
        '<a href="mailto:a@example.org">mail</a> <a href="../up" title="t">up</a></p><div><h1>big</h1></div>'
    )
    clean = sanitize_html(dirty, "https://feed.example/a/b/")
    assert "script" not in clean and "alert" not in clean and "style" not in clean
    assert "onclick" not in clean and "<img" not in clean and "<h1" not in clean and "<div" not in clean
    assert "<b>bold</b>" in clean and "<em>em</em>" in clean and "<code>c</code>" in clean
    assert '<a rel="noopener">js</a>' in clean and '<a rel="noopener">data</a>' in clean
    assert '<a href="mailto:a@example.org" rel="noopener">mail</a>' in clean
    assert 'href="https://feed.example/a/up"' in clean
    assert "big" in clean


@pytest.mark.parametrize(
    ("href", "kept"),
    [
        ("tel:+44-20-7946-0000", True),
        ("tel:+1.555.010.0199", True),
        ("tel:7042;phone-context=example.org", True),
        ("TEL:+33(0)1-23-45-67-89", True),
        ("tel:javascript:alert(1)", False),
        ("tel:+44 20 7946 0000", False),  # spaces are no part of a tel: URI (RFC 3966)
        ("tel:%0d%0aBcc:x@example.org", False),
        ("tel:" + "9" * 200, False),
        ("tel:", False),
    ],
)
def test_tel_links_survive_the_sanitizer_only_as_phone_numbers(href, kept):
    clean = sanitize_html(f'<p>Call <a href="{href}">the shop</a>.</p>', "https://feed.example/")
    assert (f'href="{href}"' in clean) is kept, clean
    assert "the shop" in clean


def test_links_and_emphasis_in_summaries_survive_as_sanitized_inline_markup(settings):
    fed = normalize(
        RawArticle(
            source="t", title="t", base_url="https://feed.example/blog/",
            summary_html='Read <a href="/guide" onclick="x()">the <em>guide</em></a>, call <a href="tel:+1-555-0100">us</a> or <a href="javascript:x()">not</a>.',
        ),
        site_url=settings.site_url, tz=settings.tz,
    )
    assert fed.summary_html == (
        'Read <a href="https://feed.example/guide" rel="noopener">the <em>guide</em></a>, '
        'call <a href="tel:+1-555-0100" rel="noopener">us</a> or <a rel="noopener">not</a>.'
    )
    assert fed.summary_text == "Read the guide, call us or not."


def test_relative_links_and_images_become_absolute(settings):
    bundle = normalize(RawArticle(source="t", title="t", slug="Rhubarb Forcing", image="./crowns.jpg"), site_url=settings.site_url, tz=settings.tz)
    assert bundle.url == "https://site.example/blog/Rhubarb%20Forcing/"
    assert bundle.image == "https://site.example/blog/Rhubarb%20Forcing/crowns.jpg"
    fed = normalize(
        RawArticle(
            source="t", title="t", url="/post", image="img/a.png", base_url="https://feed.example/blog/",
            summary_html='<a href="other">x</a>',
        ),
        site_url=settings.site_url, tz=settings.tz,
    )  # fmt: skip
    assert fed.url == "https://feed.example/post"
    assert fed.image == "https://feed.example/blog/img/a.png"
    assert 'href="https://feed.example/blog/other"' in fed.summary_html
    assert normalize(RawArticle(source="t", title="t", url="javascript:alert(1)"), site_url=settings.site_url, tz=settings.tz).url is None


# --- summary and excerpt -----------------------------------------------------------------


def test_without_summary_the_excerpt_comes_from_the_first_paragraphs_of_the_body(settings):
    body = (
        "<h2>Before you start</h2><p>First &amp; foremost: it’s “simple”.</p>"
        "<pre><code>not prose</code></pre><p>Second paragraph.</p><table><tr><td>cell</td></tr></table>"
    )
    article = normalize(RawArticle(source="t", title="t", body_html=body), site_url=settings.site_url, tz=settings.tz)
    assert article.summary_text == "First & foremost: it’s “simple”. Second paragraph."
    assert article.summary_html == "First &amp; foremost: it’s “simple”. Second paragraph."


def test_a_short_summary_is_sanitized_html_and_its_plain_text(settings):
    article = normalize(
        RawArticle(source="t", title="t", summary_html="<p>Sow <em>now</em> &amp; water.</p><script>x()</script>", body_html="<p>Body.</p>"),
        site_url=settings.site_url, tz=settings.tz,
    )
    assert article.summary_html == "<p>Sow <em>now</em> &amp; water.</p>"
    assert article.summary_text == "Sow now & water."


def test_a_summary_that_is_a_whole_article_is_cut_to_an_excerpt(settings):
    paragraphs = "".join(f"<p>{words(20)} <b>bold</b> end{i}.</p>" for i in range(10))
    article = normalize(RawArticle(source="t", title="t", summary_html=paragraphs), site_url=settings.site_url, tz=settings.tz)
    assert len(article.summary_text.split()) <= 50
    assert "<" not in article.summary_html  # plain excerpt, escaped: no tag cut in half
    assert article.summary_text.startswith("word0 word1")


# --- ids and titles ----------------------------------------------------------------------


def test_stable_ids(settings):
    with_guid = RawArticle(source="t", title="t", guid="tag:example.org,2026:1", url="https://a.example/x")
    bare_guid = RawArticle(source="t", title="t", guid="42", base_url="https://feed.example/")
    url_only = RawArticle(source="t", title="t", url="https://a.example/x")
    nothing = RawArticle(source="t", title="Same", date="2026-01-01")
    assert normalize(with_guid, site_url=settings.site_url, tz=settings.tz).id == "tag:example.org,2026:1"
    assert normalize(bare_guid, site_url=settings.site_url, tz=settings.tz).id == "https://feed.example/#42"  # "42" is only unique within its feed
    assert normalize(url_only, site_url=settings.site_url, tz=settings.tz).id == "https://a.example/x"
    first, again = normalize(nothing, site_url=settings.site_url, tz=settings.tz), normalize(RawArticle(source="other", title="Same", date="2026-01-01"), site_url=settings.site_url, tz=settings.tz)
    assert first.id == again.id and first.id.startswith("sha256:")
    assert normalize(RawArticle(source="t", title="Same", date="2026-01-02"), site_url=settings.site_url, tz=settings.tz).id != first.id


def test_a_record_without_title_takes_one_from_its_text_and_one_without_anything_is_refused(settings):
    titled = normalize(RawArticle(source="t", body_html=f"<p>{words(30)}</p>"), site_url=settings.site_url, tz=settings.tz)
    assert titled.title == words(10) + "…"
    with pytest.raises(SourceError):
        normalize(RawArticle(source="t", title="   "), site_url=settings.site_url, tz=settings.tz)
