"""``digest archive``: pages, index and Atom feed of the issues in a real
SQLite ledger: the pages ``digest send`` kept, or (for issues sent before
pages were kept) rendered again from the sample site's articles."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from preview_samples import AS_OF, write_article, write_site

from digest.archive import ATOM, write_archive
from digest.errors import DigestError
from digest.issue import IssueRequest, plan_issue
from digest.ledger import SCHEMA_VERSION, Ledger
from digest.recipients import Recipient, RecipientResult, Status
from digest.settings import load_settings

ARCHIVE_URL = "https://sample.example.org/letters"


def record_issue(ledger: Ledger, key: str, as_of: datetime, article_ids, *, accepted: bool) -> None:
    """An issue in the ledger sent to one recipient, who was accepted or rejected."""
    ledger.create_issue(key, as_of - timedelta(days=7), as_of, article_ids, scheduled_at=as_of)
    recipient = Recipient("all@example.org", "Al", "all@example.org", "readers", "https://sample.example.org/u/x")
    ledger.enqueue(key, [(recipient, "variant")])
    (row,) = ledger.claim_batch(key, "variant", 10)
    status = Status.ACCEPTED if accepted else Status.REJECTED
    ledger.record_results([(row.id, RecipientResult(recipient.email, status, message_id="<1@x>"))])


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """Three issues in the ledger: two that reached a subscriber (the later
    one naming an article since deleted from the sources) and one that
    reached no one. Returns (settings, ledger path, output folder, titles)."""
    monkeypatch.chdir(write_site(tmp_path))
    settings = load_settings(archive_url=ARCHIVE_URL, ledger=tmp_path / "digest.db")
    selection = plan_issue(settings, IssueRequest(as_of=AS_OF), subscribers=[]).selection
    ids = [article.id for article in selection.articles]
    with Ledger(settings.ledger) as ledger:
        record_issue(ledger, "2026-W48", AS_OF - timedelta(days=3), ids[1:], accepted=True)
        record_issue(ledger, "2026-W49", AS_OF, [ids[0], "https://sample.example.org/deleted/"], accepted=True)
        record_issue(ledger, "never-out", AS_OF - timedelta(days=1), ids, accepted=False)
    return settings, settings.ledger, tmp_path / "public", [a.title for a in selection.articles]


def test_writes_a_page_per_issue_that_went_out_and_an_index(archive):
    settings, ledger_path, out, titles = archive
    result = write_archive(ledger_path, out, settings)
    assert [page.key for page in result.pages] == ["2026-W49", "2026-W48"]  # newest first
    week49, week48 = (out / "2026-W49.html").read_text("utf-8"), (out / "2026-W48.html").read_text("utf-8")
    assert titles[0] in week49 and titles[1] not in week49
    assert titles[1] in week48 and titles[2] in week48 and titles[0] not in week48
    # A public page: no one's address, name or unsubscribe token, no placeholder left.
    for page in (week49, week48):
        assert "%%digest" not in page and "all@example.org" not in page and "Hi Al" not in page
    assert not (out / "never-out.html").exists()
    index = (out / "index.html").read_text("utf-8")
    assert index.index('href="2026-W49.html"') < index.index('href="2026-W48.html"')
    assert "never-out" not in index
    # The article deleted from the sources is named in a warning, not a crash.
    assert any("2026-W49" in line and "1 of its 2 articles" in line for line in result.warnings)


def test_feed_is_valid_atom_with_one_entry_per_page(archive):
    settings, ledger_path, out, _ = archive
    result = write_archive(ledger_path, out, settings)
    root = ET.parse(out / "feed.xml").getroot()
    assert root.tag == f"{{{ATOM}}}feed"
    # RFC 4287 §4.1.1: a feed has exactly one id, title and updated.
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{{{ATOM}}}{name}")) == 1

    feed = feedparser.parse(str(out / "feed.xml"))
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Sample Digest"
    assert [entry.link for entry in feed.entries] == [f"{ARCHIVE_URL}/2026-W49.html", f"{ARCHIVE_URL}/2026-W48.html"]
    assert [entry.title for entry in feed.entries] == [page.subject for page in result.pages]
    assert feed.entries[0].updated_parsed[:3] == (2026, 12, 1)
    assert all(entry.id and entry.summary for entry in feed.entries)


def test_without_a_ledger_it_says_so_and_creates_none(tmp_path, monkeypatch):
    monkeypatch.chdir(write_site(tmp_path))
    settings = load_settings(ledger=tmp_path / "digest.db")
    with pytest.raises(DigestError, match="no ledger at"):
        write_archive(settings.ledger, tmp_path / "public", settings)
    assert not (tmp_path / "digest.db").exists()


def test_command_line_writes_the_archive_and_names_what_it_left_out(archive):
    from click.testing import CliRunner

    from digest.cli import cli

    settings, ledger_path, out, _ = archive
    result = CliRunner().invoke(cli, ["archive", str(out), "--ledger", str(ledger_path)])
    assert result.exit_code == 0, result.output
    assert "2 issues" in result.output and "warning: issue 2026-W49" in result.output
    assert (out / "feed.xml").is_file() and (out / "2026-W48.html").is_file()


def run_cli(*args: str):
    from click.testing import CliRunner

    from digest.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_the_archive_shows_the_issue_as_sent_though_sources_and_templates_changed_since(tmp_path, monkeypatch, smtp_server):
    """A real `digest send` (SMTP to aiosmtpd on loopback, real ledger) keeps
    the page; afterwards an article is renamed, another deleted and a
    template edited, and `digest archive` still writes what went out, at the
    address the emails' "View in your browser" link gives."""
    monkeypatch.chdir(write_site(tmp_path))
    handler, port = smtp_server
    for name, value in {"PROVIDER": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none", "SECRET_KEY": "archive-test-secret-4fJ8qW2zR6tY0pN3"}.items():
        monkeypatch.setenv(f"DIGEST_{name}", value)
    run_cli("send", "--as-of", "2026-12-01T08:00")
    (envelope,) = [e for e in handler.messages if "all@example.org" in e.rcpt_tos]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    view_link = re.search(r'<a href="([^"]+)"[^>]*>View in your browser</a>', message.get_body(("html",)).get_content())[1]

    write_article(tmp_path / "content", "privacy-week.md", "Privacy week, rewritten", "2026-11-28", "privacy", "New words.")
    (tmp_path / "content" / "python-tips.md").unlink()
    templates = tmp_path / "templates" / "partials"
    templates.mkdir(parents=True)
    (templates / "header.html.j2").write_text("<tr><td><h1>A new masthead</h1></td></tr>\n", encoding="utf-8")
    with (tmp_path / "digest.toml").open("a", encoding="utf-8") as toml:
        toml.write('templates_dir = "templates"\n')

    result = run_cli("archive", "public")
    assert "warning" not in result.output  # nothing had to be rendered again
    (page_file,) = (tmp_path / "public").glob("2026-W*.html")
    assert view_link == f"https://sample.example.org/archive/{page_file.name}"
    page = page_file.read_text("utf-8")
    assert "Privacy week: what changed" in page and "Ten small Python tips" in page
    assert "rewritten" not in page and "A new masthead" not in page
    # The public copy: no reader's address or links, and no link to itself.
    assert "all@example.org" not in page and "unsubscribe" not in page.lower() and "View in your browser" not in page
    assert message["Subject"] in (tmp_path / "public" / "index.html").read_text("utf-8")


def test_a_resumed_send_keeps_the_page_of_the_first_run(tmp_path):
    with Ledger(tmp_path / "digest.db") as ledger:
        assert ledger.keep_page("2026-W49", "First", "Pre", "<p>first</p>")
        assert not ledger.keep_page("2026-W49", "Second", "Pre", "<p>second</p>")
        assert ledger.page("2026-W49") == {"subject": "First", "preheader": "Pre", "html": "<p>first</p>"}
        assert ledger.page("2026-W50") is None


V1_LEDGER = Path(__file__).resolve().parent / "fixtures" / "ledger-v1.db"


def test_a_version_1_ledger_is_migrated_and_its_issues_are_rendered_again(tmp_path, monkeypatch):
    """A ledger written by digest at schema version 1 (a real send of issue
    2026-W48 with articles /a/ and /b/, then a suppression): opening it adds
    the pages table and keeps every row; its issue has no kept page, so the
    archive renders it again from the sources and says so."""
    path = tmp_path / "digest.db"
    shutil.copy(V1_LEDGER, path)
    tables = ("issues", "deliveries", "sent_articles", "suppressions")

    def snapshot():
        with closing(sqlite3.connect(path)) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            return version, {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in tables}

    version, before = snapshot()
    assert version == 1 and before["issues"]
    with Ledger(path) as ledger:
        assert ledger.page("2026-W48") is None
    version, after = snapshot()
    # Every row kept as it was; later versions only add columns (at the end) and tables.
    assert version == SCHEMA_VERSION and {t: [row[: len(before[t][0])] for row in after[t]] for t in tables if before[t]} == {t: v for t, v in before.items() if v}

    (tmp_path / "content").mkdir()
    write_article(tmp_path / "content", "a.md", "Apples in the orchard", "2026-11-20", "fruit", "Windfalls.")
    write_article(tmp_path / "content", "b.md", "Bees in the lime", "2026-11-21", "bees", "A swarm.")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(site_url="https://gazette.example.org/", sources=["content"], ledger=path)
    result = write_archive(path, tmp_path / "public", settings)
    page = (tmp_path / "public" / "2026-W48.html").read_text("utf-8")
    assert "Apples in the orchard" in page and "Bees in the lime" in page
    assert result.warnings == ["issue 2026-W48: no page was kept when it was sent; rendered again from today's sources and templates"]

    with Ledger(path) as ledger:  # once a page is kept, it is what the archive writes
        ledger.keep_page("2026-W48", "Kept subject", "Kept preheader", "<!doctype html><title>kept</title>")
    result = write_archive(path, tmp_path / "public", settings)
    assert (tmp_path / "public" / "2026-W48.html").read_text("utf-8") == "<!doctype html><title>kept</title>"
    assert result.warnings == [] and result.pages[0].subject == "Kept subject"
