"""Every reader over the real corpus in ../shared/corpus (see its MANIFEST.md):
input nobody on the team wrote, with the quirks of real sites and feeds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import frontmatter
import pytest

from digest.moments import parse_moment
from digest.selection import make_window, select_articles
from digest.settings import load_settings
from digest.sources import load_articles

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SEED = CORPUS / "seed" / "seed-article.md"


@pytest.fixture(scope="module")
def sources():
    if not SEED.is_file():
        pytest.skip(f"the shared corpus is not at {CORPUS} (../shared is absent)")
    paths = [str(SEED)]
    paths += sorted(str(path) for path in (CORPUS / "posts").iterdir() if path.is_dir())
    paths += sorted(str(path) for path in (CORPUS / "feeds").iterdir() if path.is_file())
    return paths


@pytest.fixture(scope="module")
def loaded(sources):
    return load_articles(sources, load_settings(site_url="https://digest.example/", timezone="UTC"))


def from_file(loaded, name: str):
    return [article for article in loaded.articles if Path(article.source).name == name]


def test_every_feed_gives_articles_or_one_warning_with_a_reason(loaded):
    feeds = sorted(path.name for path in (CORPUS / "feeds").iterdir() if path.is_file())
    sources = {Path(article.source).name for article in loaded.articles}
    warned = {}
    for warning in loaded.warnings:
        where, _, reason = warning.partition(": ")
        if ", dated by the feed's" in reason:
            continue  # read, and dated: not a refusal
        assert reason.strip(), warning
        assert "unexpected" not in reason, warning  # a bug, not bad input
        warned[Path(where).name] = reason
    for name in feeds:
        assert (name in sources) != (name in warned), name
    # Every real-world feed is readable; only edge fixtures may be refused.
    assert all(name.startswith("edge_") for name in warned), warned
    assert warned["edge_html_login_page_not_a_feed.xml"].startswith("not a feed")


def test_every_posts_repository_gives_articles_and_non_posts_are_left_out(loaded):
    for repository in sorted(path for path in (CORPUS / "posts").iterdir() if path.is_dir()):
        assert any(article.source.startswith(str(repository)) for article in loaded.articles), repository.name
    names = {Path(article.source).as_posix() for article in loaded.articles}
    for not_a_post in ("/_index.md", "/blog/blog.md", "/tags/test.md", "/draft-post.md", "/fr/posts/null.md"):
        assert not any(name.endswith(not_a_post) for name in names), not_a_post


def test_the_seed_article_keeps_its_first_paragraph_and_curly_quotes(loaded):
    (seed,) = from_file(loaded, "seed-article.md")
    post = frontmatter.loads(SEED.read_text(encoding="utf-8"))
    paragraphs = [" ".join(block.split()) for block in post.content.split("\n\n") if block.strip()]
    assert seed.title == post["title"]
    assert "privacy" in seed.tags
    assert seed.summary_text.startswith(paragraphs[0])
    assert "’" in seed.summary_text
    # Every character of the excerpt is the post's own, curly quotes included (“ ” ’).
    prose = " ".join(paragraphs)
    assert prose.startswith(seed.summary_text.removesuffix("…"))
    assert {"“", "”", "’"} <= set(prose)


def test_titles_links_and_dates_are_sane(loaded):
    assert len(loaded.articles) > 300
    for article in loaded.articles:
        assert article.title.strip(), article
        assert article.url is None or re.match(r"https?://[^/]+", article.url), article.url
        assert article.image is None or article.image.startswith(("http://", "https://")), article.image
        if article.published:
            assert article.published.tzinfo is not None
            # No 2-digit year read as year 17, no Unix timestamp read as a date string.
            assert datetime(1995, 1, 1, tzinfo=UTC) < article.published < datetime(2027, 1, 1, tzinfo=UTC), article


def test_quirky_dates_read_as_the_manifest_describes(loaded):
    (two_digit, *_) = from_file(loaded, "rss2_relative_urls_2digit_year.xml")
    assert two_digit.published.year == 2017
    # 08/02/2013 (a UK council, no en-US language): read day first, the 8th of February,
    # not dated by the file's mtime, which would make 2013 news look like this week's.
    norfolk = from_file(loaded, "rss2_norfolk_ddmmyyyy_latin1.xml")
    assert norfolk and all(article.published.year == 2013 for article in norfolk)
    assert datetime(2013, 2, 8, 12, tzinfo=UTC) in {article.published.astimezone(UTC) for article in norfolk}
    item0, _ = from_file(loaded, "edge_rss_dc_date_unix_timestamp.xml")
    assert item0.published == datetime(2017, 10, 16, 15, 10, tzinfo=UTC)  # its pubDate, not the 2015 misreading
    single_digit_hour = from_file(loaded, "atom_al3x_single_digit_hour.xml")
    assert all(article.published for article in single_digit_hour)


def test_text_in_legacy_encodings_is_decoded(loaded):
    russian = from_file(loaded, "rss2_windows1251_ru.xml")
    assert all(re.search("[А-Яа-я]", article.title) for article in russian)
    for article in loaded.articles:
        assert "Ð" not in article.title and "â€" not in article.title, article.title  # UTF-8 read as Latin-1


def test_relative_links_resolve_against_the_feed_not_our_site(loaded):
    tpm = from_file(loaded, "atom_tpm_relative_links.atom")
    assert all(article.url.startswith("http://talkingpointsmemo.com/") for article in tpm)
    ruby = from_file(loaded, "atom_samruby_xhtml.xml")
    assert all(article.url.startswith("http://intertwingly.net/blog/") for article in ruby)
    ongoing = from_file(loaded, "atom_ongoing_tbray_xmlbase.atom")
    assert all(article.url.startswith("http://www.tbray.org/ongoing/When/") for article in ongoing)



def test_the_acceptance_window_selects_items_from_every_readable_source(sources, loaded):
    # The acceptance run: --since 1990-01-01 --as-of 2026-12-01. Undated feeds are
    # dated by their file's mtime, which is when this copy of the corpus was laid out:
    # move as-of past it should the copy be newer than the acceptance date.
    newest_mtime = max(path.stat().st_mtime for path in (CORPUS / "feeds").iterdir())
    as_of = max(parse_moment("2026-12-01", UTC), datetime.fromtimestamp(newest_mtime, UTC) + timedelta(minutes=1))
    window = make_window(as_of, UTC, since="1990-01-01")
    selected = {article.source for article in select_articles(loaded.articles, window).articles}
    refused = {warning.partition(": ")[0] for warning in loaded.warnings if ", dated by the feed's" not in warning}
    readable = [source for source in sources if source not in refused]
    assert len(readable) >= 35
    for source in readable:
        assert any(path == source or path.startswith(source + "/") for path in selected), source


def test_feeds_without_any_date_are_dated_by_their_mtime_with_one_warning_each(loaded):
    for name in ("rss091_onestepback_nodates.xml", "edge_jsonfeed10_feedparser_example.json", "edge_atom_shiftjis_undeclared.xml"):
        (warning,) = [w for w in loaded.warnings if Path(w.partition(": ")[0]).name == name]
        assert "without a date, dated by the feed's modification time (" in warning, warning
        mtime = datetime.fromtimestamp(int((CORPUS / "feeds" / name).stat().st_mtime), UTC)
        assert {article.published for article in from_file(loaded, name)} == {mtime}
