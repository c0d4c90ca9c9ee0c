"""load_articles: dispatch by source kind, one warning per bad file, duplicates
dropped, feeds over HTTP from a real server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digest.articles import identity
from digest.selection import Window, select_articles
from digest.settings import load_settings
from digest.sources import load_articles

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
FEEDS = FIXTURES / "feeds"


@pytest.fixture
def settings():
    # The test server is on loopback, which feeds may not use by default.
    return load_settings(site_url="https://site.example/", timezone="UTC", feed_allow_private=True)


def test_a_folder_yields_its_posts_and_not_the_feeds_lying_in_it(settings):
    result = load_articles([str(FIXTURES / "site")], settings)
    titles = {article.title for article in result.articles}
    assert titles == {
        "Pruning the espalier pears",
        "Rhubarb forcing, step by step",
        "Jekyll style, date in the file name",
        "Comma-separated tags and an offset without a colon",
    }
    assert result.warnings == []


def test_eleventy_directory_data_tags_reach_the_articles_of_a_folder(settings):
    result = load_articles([str(FIXTURES / "eleventy")], settings)
    tags = {article.title: article.tags for article in result.articles}
    assert tags == {
        "Seed swap at the pavilion": ("seeds", "blog", "allotment-news"),
        "Open day on the plots": ("events", "allotment-news", "blog"),
        "Turning the compost": ("compost",),
    }


def test_files_are_read_by_kind_and_bad_ones_become_one_warning_each(settings, tmp_path):
    (tmp_path / "latin1.md").write_bytes("---\ntitle: Caf\u00e9\n---\n".encode("latin-1"))
    (tmp_path / "feed.rss").write_bytes((FEEDS / "rss-odd-dates.xml").read_bytes())
    (tmp_path / "feed-without-suffix").write_bytes((FEEDS / "jsonfeed-1.1.json").read_bytes())
    sources = [
        str(FEEDS / "atom-xmlbase.atom"),
        str(FEEDS / "jsonfeed-1.0.json"),
        str(FEEDS / "login-page.xml"),
        str(tmp_path / "latin1.md"),
        str(tmp_path / "feed.rss"),
        str(tmp_path / "feed-without-suffix"),  # JSON sniffed from its first byte
        str(tmp_path / "missing.xml"),
    ]
    result = load_articles(sources, settings)
    by_source = {Path(article.source).name for article in result.articles}
    assert by_source == {"atom-xmlbase.atom", "jsonfeed-1.0.json", "feed.rss", "feed-without-suffix"}
    assert result.warnings == [
        f"{FEEDS / 'login-page.xml'}: not a feed: it is an HTML page",
        f"{tmp_path / 'latin1.md'}: not UTF-8 text (byte 0xe9 at offset 14)",
        f"{tmp_path / 'missing.xml'}: no such file or folder",
    ]


def test_duplicates_across_sources_are_dropped_by_id_first_wins_and_listed(settings, tmp_path):
    shutil.copy(FEEDS / "atom-xmlbase.atom", tmp_path / "copy.atom")  # same ids
    relinked = (FEEDS / "jsonfeed-1.0.json").read_text(encoding="utf-8").replace('"id": 1,', '"id": "other-id",')
    (tmp_path / "relinked.json").write_text(relinked, encoding="utf-8")  # its own guids: other articles, even where links match
    sources = [str(FEEDS / "atom-xmlbase.atom"), str(FEEDS / "jsonfeed-1.0.json"), str(tmp_path / "copy.atom"), str(tmp_path / "relinked.json")]
    result = load_articles(sources, settings)
    kept_from = Counter(Path(article.source).name for article in result.articles)
    assert kept_from == {"atom-xmlbase.atom": 2, "jsonfeed-1.0.json": 2, "relinked.json": 1}
    assert len({article.id for article in result.articles}) == 5
    assert sorted((Path(dup.source).name, Path(kept.source).name) for dup, kept in result.duplicates) == [
        ("copy.atom", "atom-xmlbase.atom"), ("copy.atom", "atom-xmlbase.atom"),
        ("relinked.json", "jsonfeed-1.0.json"),  # the item whose guid did not change
    ]


RSS_TWO_GUIDS_ONE_LINK = """<rss version="2.0"><channel><title>Events</title><link>https://events.example/</link>
<item><title>Seed swap (Saturday)</title><guid isPermaLink="false">event-41-sat</guid>
<link>https://events.example/seed-swap</link><pubDate>Tue, 24 Nov 2026 09:00:00 +0000</pubDate></item>
<item><title>Seed swap (Sunday)</title><guid isPermaLink="false">event-41-sun</guid>
<link>https://events.example/seed-swap</link><pubDate>Tue, 24 Nov 2026 09:05:00 +0000</pubDate></item>
</channel></rss>"""


def test_two_entries_with_their_own_guids_sharing_a_link_are_two_articles(settings, tmp_path):
    feed = tmp_path / "events.xml"
    feed.write_text(RSS_TWO_GUIDS_ONE_LINK, encoding="utf-8")
    result = load_articles([str(feed)], settings)
    assert sorted(a.title for a in result.articles) == ["Seed swap (Saturday)", "Seed swap (Sunday)"]
    assert {identity(a)[0] for a in result.articles} == {"guid"} and result.duplicates == []


def test_the_same_post_in_a_folder_and_in_the_sites_feed_is_one_article(settings_for, tmp_path):
    settings = settings_for(site_url="https://garden.example/")
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "seed-swap.md").write_text(
        "---\ntitle: Seed swap\ndate: 2026-11-24T09:00:00Z\nurl: /posts/seed-swap/\n---\nBring seeds.\n", encoding="utf-8"
    )
    feed = tmp_path / "feed.xml"
    feed.write_text(
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>Garden</title><id>tag:garden.example,2026:feed</id>'
        "<updated>2026-11-24T09:00:00Z</updated><entry><title>Seed swap</title><id>tag:garden.example,2026:seed-swap</id>"
        '<link href="https://garden.example/posts/seed-swap/"/><updated>2026-11-24T09:00:00Z</updated></entry></feed>',
        encoding="utf-8",
    )
    for order in ([str(posts), str(feed)], [str(feed), str(posts)]):
        result = load_articles(order, settings)
        assert [a.title for a in result.articles] == ["Seed swap"], order
        ((duplicate, kept),) = result.duplicates
        assert kept.source == result.articles[0].source and duplicate.source != kept.source


def test_each_feed_entry_with_an_unreadable_date_is_one_warning_naming_it_and_the_value_capped(settings, tmp_path):
    items = "".join(
        f"<item><title>Note {n}</title><link>https://n.example/{n}</link><pubDate>Blursday 3{n} Smarch 2026</pubDate></item>"
        for n in range(8)
    )
    feed = tmp_path / "notes.xml"
    feed.write_text(f'<rss version="2.0"><channel><link>https://n.example/</link>{items}</channel></rss>', encoding="utf-8")
    result = load_articles([str(feed)], settings)
    named = [w for w in result.warnings if "entry 'Note" in w]
    assert len(named) == 5 and all("3" in w.split(": ", 2)[2] and "dated by the feed's" in w for w in named)
    assert "entry 'Note 0'" in named[0] and "Blursday 30 Smarch 2026" in named[0]
    assert result.warnings[5] == f"{feed}: and 3 more entries with a date that cannot be read, " + named[0].rpartition(", ")[2]
    assert len(result.warnings) == 6


def test_an_entry_that_cannot_be_an_article_is_counted_in_one_warning(settings, tmp_path):
    feed = tmp_path / "partly.xml"
    feed.write_text(
        '<rss version="2.0"><channel><link>https://p.example/</link>'
        "<item><title>Good</title><link>/g</link><pubDate>Tue, 03 Mar 2026 12:00:00 +0000</pubDate></item>"
        "<item><link>/empty-1</link></item><item><link>/empty-2</link></item></channel></rss>",
        encoding="utf-8",
    )
    result = load_articles([str(feed)], settings)
    assert [article.title for article in result.articles] == ["Good"]
    assert result.warnings == [f"{feed}: 2 entries skipped (an entry has no title and no text)"]


# --- entries without a date: new when first seen -------------------------------------------

MTIME = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def undated_copy(tmp_path: Path, name: str = "rss091-no-dates.xml", text: str | None = None) -> Path:
    copy = tmp_path / name
    if text is None:
        shutil.copy(FEEDS / name, copy)
    else:
        copy.write_text(text, encoding="utf-8")
    os.utime(copy, (MTIME.timestamp(), MTIME.timestamp()))
    return copy


def test_a_feed_without_any_date_is_dated_by_the_file_mtime_and_selected(settings, tmp_path):
    feed = undated_copy(tmp_path)
    result = load_articles([str(feed)], settings)
    assert [article.title for article in result.articles] == ["Netting the brassicas", "Water butts, a second opinion"]
    assert all(article.published == MTIME for article in result.articles)
    assert result.warnings == [f"{feed}: 2 entries without a date, dated by the feed's modification time (2026-03-14T09:26:53+00:00)"]
    week = Window(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 17, tzinfo=UTC))
    assert len(select_articles(result.articles, week).articles) == 2
    week_before = Window(datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    assert select_articles(result.articles, week_before).articles == ()


def test_the_id_of_an_entry_without_guid_link_or_date_does_not_follow_the_mtime(settings, tmp_path):
    feed = undated_copy(tmp_path)
    first = load_articles([str(feed)], settings).articles[1]  # "Water butts": no link, no guid
    os.utime(feed, (MTIME.timestamp() + 86400, MTIME.timestamp() + 86400))
    again = load_articles([str(feed)], settings).articles[1]
    assert again.published != first.published
    assert again.id == first.id  # else the ledger would send it again with every new mtime


def test_undated_items_take_the_channel_date_and_dated_ones_keep_theirs(tmp_path):
    feed = undated_copy(
        tmp_path,
        "parish.xml",
        '<rss version="2.0"><channel><title>Parish</title><link>https://parish.example.org/</link>'
        "<pubDate>Mon, 02 Mar 2026 08:00:00 GMT</pubDate><lastBuildDate>2026-03-06T18:30:00</lastBuildDate>"
        "<item><title>Undated one</title><link>/one</link></item>"
        "<item><title>Dated</title><link>/dated</link><pubDate>Tue, 03 Mar 2026 12:00:00 +0000</pubDate></item>"
        "<item><title>Undated two</title><link>/two</link></item></channel></rss>",
    )
    # A zone-less lastBuildDate is read in the site's timezone (+01:00 in March), and shown in it too.
    paris = load_settings(site_url="https://site.example/", timezone="Europe/Paris")
    result = load_articles([str(feed)], paris)
    one, dated, two = result.articles
    assert one.published == two.published == datetime(2026, 3, 6, 17, 30, tzinfo=UTC)  # lastBuildDate, not pubDate or mtime
    assert dated.published == datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    assert result.warnings == [f"{feed}: 2 entries without a date, dated by the feed's own date (2026-03-06T18:30:00+01:00)"]


def test_a_json_feed_item_without_a_date_is_dated_by_the_mtime(settings, tmp_path):
    feed = undated_copy(
        tmp_path,
        "notes.json",
        '{"version": "https://jsonfeed.org/version/1.1", "home_page_url": "https://n.example/",'
        ' "items": [{"id": "a", "content_text": "One undated note."}]}',
    )
    result = load_articles([str(feed)], settings)
    assert [article.published for article in result.articles] == [MTIME]
    assert result.warnings == [f"{feed}: 1 entry without a date, dated by the feed's modification time (2026-03-14T09:26:53+00:00)"]


def test_a_markdown_post_without_a_date_stays_undated(settings, tmp_path):
    post = tmp_path / "undated.md"
    post.write_text("---\ntitle: Timeless\n---\nNo date here.\n", encoding="utf-8")
    os.utime(post, (MTIME.timestamp(), MTIME.timestamp()))
    for source in (post, tmp_path):  # as a file and in a folder
        result = load_articles([str(source)], settings)
        assert [article.published for article in result.articles] == [None]
        assert result.warnings == []


# --- bad values: one clean warning each, never the "unexpected error" of a bug ---------------

BAD_FRONT_MATTER = {
    "hour-25.md": ("date: 2026-11-26T25:61:00", "line 3, date: unreadable date 2026-11-26T25:61:00 (hour must be in 0..23); the post is left undated"),
    "year-0.md": ("date: 0000-01-01", "line 3, date: unreadable date 0000-01-01 (year 0 is out of range); the post is left undated"),
    "nan.md": ("date: .nan", "line 3, date: unreadable date nan: a number, but not a Unix time (9 to 11 digits); the post is left undated"),
    "slashes.md": ("date: 03/04/2026", "line 3, date: ambiguous date 03/04/2026: use 2026-04-03 or 2026-03-04; the post is left undated"),
    "title-list.md": ("x: 1", None),  # title replaced below
    "tags-map.md": ("date: 2026-11-20\ntags: {a: 1}", "line 4, tags: a mapping, not a list of tags; ignored"),
    "url-number.md": ("date: 2026-11-20\nurl: 42", "line 4, url: a number, not a link; ignored"),
    "image-list.md": ("date: 2026-11-20\nimage: [[a.png]]", "line 4, image: a list, not an image path or URL; ignored"),
}


def test_bad_front_matter_values_are_one_clean_warning_each(settings, tmp_path, caplog):
    for name, (fields, _) in BAD_FRONT_MATTER.items():
        title = "title: [a, b]" if name == "title-list.md" else "title: Beans"
        (tmp_path / name).write_text(f"---\n{title}\n{fields}\n---\nText.\n", encoding="utf-8")
    result = load_articles([str(tmp_path)], settings)
    expected = {f"{tmp_path / name}: {note}" for name, (_, note) in BAD_FRONT_MATTER.items() if note}
    expected.add(f"{tmp_path / 'title-list.md'}: line 2, title: a list, not text")
    assert set(result.warnings) == expected and len(result.warnings) == len(expected)
    assert not [record for record in caplog.records if record.levelname == "ERROR"]  # no traceback logged
    by_file = {Path(article.source).name: article for article in result.articles}
    assert "title-list.md" not in by_file  # refused; every other post is kept
    assert [by_file[name].published for name in ("hour-25.md", "year-0.md", "nan.md", "slashes.md")] == [None] * 4
    assert by_file["tags-map.md"].tags == () and by_file["url-number.md"].url == "https://site.example/url-number/"


def test_an_ambiguous_feed_date_follows_the_feeds_convention_not_its_modification_time(settings, tmp_path):
    feed = undated_copy(
        tmp_path,
        "council.xml",
        '<rss version="2.0"><channel><title>Council</title><link>https://council.example.org/</link>'
        "<lastBuildDate>Fri, 06 Mar 2026 18:30:00 GMT</lastBuildDate>"
        "<item><title>Bins</title><link>/bins</link><pubDate>03/04/2026 12:00:00</pubDate></item>"
        "<item><title>Parking</title><link>/parking</link><pubDate>26/03/2026 12:00:00</pubDate></item>"
        "<item><title>Library</title><link>/library</link></item></channel></rss>",
    )
    bins, parking, library = load_articles([str(feed)], settings).articles
    assert parking.published == datetime(2026, 3, 26, 12, tzinfo=UTC)  # only one reading
    assert bins.published == datetime(2026, 4, 3, 12, tzinfo=UTC)  # no en-US language: day first
    assert library.published == datetime(2026, 3, 6, 18, 30, tzinfo=UTC)  # undated: the channel's date
    assert load_articles([str(feed)], settings).warnings == [
        f"{feed}: 1 entry without a date, dated by the feed's own date (2026-03-06T18:30:00+00:00)"
    ]


def test_lone_surrogates_in_feeds_are_no_crash(settings, tmp_path):
    json_feed = tmp_path / "feed.json"
    json_feed.write_text(
        '{"version": "https://jsonfeed.org/version/1.1", "items": [{"title": "Beans \\ud800 up",'
        ' "content_text": "x", "date_published": "2026-03-06T10:00:00Z"}]}',
        encoding="utf-8",
    )
    rss = tmp_path / "feed.xml"
    rss.write_text('<rss version="2.0"><channel><title>T</title><item><title>a &#xD800; b</title></item></channel></rss>', encoding="utf-8")
    result = load_articles([str(json_feed), str(rss)], settings)
    assert [article.title for article in result.articles] == ["Beans \ufffd up"]
    assert result.warnings == [f"{rss}: not a readable feed: surrogates not allowed ('\\ud800')"]


# --- over HTTP ----------------------------------------------------------------------------


class _Site(BaseHTTPRequestHandler):
    """A small feed host: a redirect, feeds with relative links, errors, a silent path."""

    routes = {
        "/feeds/rss.xml": (
            200,
            "application/rss+xml",
            b'<rss version="2.0"><channel><title>T</title><item><title>Remote</title>'
            b"<link>posts/remote</link><guid>remote-1</guid></item></channel></rss>",
        ),
        "/feeds/feed.json": (200, "application/octet-stream", (FEEDS / "jsonfeed-1.1.json").read_bytes()),
        "/login": (200, "text/html", (FEEDS / "login-page.xml").read_bytes()),
        "/gone": (404, "text/html", b"<h1>Not found</h1>"),
        "/feeds/undated.xml": (200, "application/rss+xml", (FEEDS / "rss091-no-dates.xml").read_bytes()),
    }
    # Last-Modified per path (RFC 9110 §8.8.2), as a static file server sends it.
    last_modified = {"/feeds/undated.xml": "Sat, 14 Mar 2026 09:26:53 GMT"}
    requests: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.requests.append((self.path, self.headers.get("User-Agent", "")))
        if self.path == "/old-feed":
            self.send_response(301)
            self.send_header("Location", "/feeds/rss.xml")
            self.end_headers()
            return
        if self.path == "/slow":
            threading.Event().wait(1)  # longer than the test's timeout
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.path in self.last_modified:
            self.send_header("Last-Modified", self.last_modified[self.path])
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Site.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_feeds_over_http(settings, site):
    settings = settings.model_copy(update={"feed_timeout": 0.3})
    sources = [f"{site}/old-feed", f"{site}/feeds/feed.json", f"{site}/login", f"{site}/gone", f"{site}/slow"]
    as_of = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    result = load_articles(sources, settings, fetched_at=as_of)
    remote, tools = result.articles
    # Redirect followed; the relative link resolves against the final URL.
    assert remote.url == f"{site}/feeds/posts/remote"
    assert tools.title == "Sharpening hoes ’n’ spades"  # JSON recognised by content, not by type
    assert result.warnings == [
        f"{site}/old-feed: 1 entry without a date, dated by the feed's modification time (2026-12-01T07:00:00+00:00)",
        f"{site}/login: not a feed: it is an HTML page",
        f"{site}/gone: HTTP 404 Not Found",
        f"{site}/slow: not fetched within 0.3 s (feed_timeout)",
    ]
    assert all(agent.startswith("digest/") for _, agent in _Site.requests)


def test_a_refused_connection_is_a_warning(settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = load_articles([f"http://127.0.0.1:{port}/feed.xml"], settings)
    assert result.articles == []
    (warning,) = result.warnings
    assert warning.startswith(f"http://127.0.0.1:{port}/feed.xml: cannot fetch: ")


def test_undated_entries_of_a_fetched_feed_take_last_modified_else_the_fetch_time(settings, site):
    result = load_articles([f"{site}/feeds/undated.xml"], settings)
    assert {article.published for article in result.articles} == {MTIME}
    assert result.warnings == [f"{site}/feeds/undated.xml: 2 entries without a date, dated by the feed's modification time (2026-03-14T09:26:53+00:00)"]
    # Without Last-Modified: the time of the fetch, which a planner gives as its as_of.
    as_of = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    (remote,) = load_articles([f"{site}/feeds/rss.xml"], settings, fetched_at=as_of).articles
    assert remote.published == as_of
    before = datetime.now(UTC).replace(microsecond=0)
    (remote,) = load_articles([f"{site}/feeds/rss.xml"], settings).articles
    assert before <= remote.published <= datetime.now(UTC)


def test_markdown_dates_that_cannot_be_read_are_one_line_each_then_a_count_per_source(settings, tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    for n in range(1, 8):
        (posts / f"p{n}.md").write_text(f"---\ntitle: Post {n}\ndate: 2026-02-3{n}\n---\nBody.\n", encoding="utf-8")
    (posts / "other.md").write_text("---\ntitle: Other\ndate: 2026-02-01\nurl: 42\n---\nBody.\n", encoding="utf-8")
    result = load_articles([str(posts)], settings)
    dated = [w for w in result.warnings if "unreadable date" in w]
    assert len(dated) == 5 and all(w.startswith(f"{posts}/p") and "line 3, date: unreadable date 2026-02-3" in w for w in dated)
    assert f"{posts}: and 2 more with a date that cannot be read" in result.warnings
    assert any("other.md" in w and "url" in w for w in result.warnings)  # other notes are never capped


def _post(folder: Path, name: str, title: str) -> Path:
    path = folder / name
    path.write_text(f"---\ntitle: {title}\ndate: 2026-11-20\ntags: [bees]\n---\nBody of {title}.\n", encoding="utf-8")
    return path


def test_unchanged_files_are_not_parsed_again_and_an_edit_or_a_data_file_is_seen(tmp_path, settings, monkeypatch):
    from digest.sources import feeds, markdown

    parsed: list[str] = []  # what the readers really parsed (they are called through)
    read_post, read_feed = markdown.read_post, feeds.read_feed
    monkeypatch.setattr(markdown, "read_post", lambda path, root=None: parsed.append(path.name) or read_post(path, root))
    monkeypatch.setattr(feeds, "read_feed", lambda data, source, url=None: parsed.append(Path(source).name) or read_feed(data, source, url))
    posts = tmp_path / "posts"
    posts.mkdir()
    first = _post(posts, "one.md", "One")
    _post(posts, "two.md", "Two")
    feed = shutil.copy(FIXTURES / "feeds" / "atom-xmlbase.atom", tmp_path / "feed.xml")
    sources = [str(posts), str(feed)]
    before = load_articles(sources, settings).articles
    assert sorted(parsed) == ["feed.xml", "one.md", "two.md"]
    parsed.clear()
    again = load_articles(sources, settings).articles
    assert parsed == [] and again == before  # nothing parsed again, the same articles

    # An edit keeping the size and the mtime's second still shows: the key is size and mtime in ns.
    first.write_text(first.read_text(encoding="utf-8").replace("One", "Uno"), encoding="utf-8")
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    edited = load_articles(sources, settings).articles
    assert parsed == ["one.md"]  # only the edited file was read
    assert [a.title for a in edited] == [("Uno" if a.title == "One" else a.title) for a in before]

    # Other settings shape the articles from the same parsed files.
    other = load_settings(site_url="https://other.example/", timezone="Europe/Paris")
    assert {a.url for a in load_articles([str(posts)], other).articles} != {a.url for a in edited if a.source.startswith(str(posts))}

    # An Eleventy directory data file added beside a post changes its tags.
    (posts / "posts.json").write_text('{"tags": ["garden"]}', encoding="utf-8")
    tagged = load_articles([str(posts)], settings).articles
    assert tagged and all("garden" in a.tags for a in tagged)
