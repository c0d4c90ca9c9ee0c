"""``digest archive``: pages, index and Atom feed of the issues in a real
SQLite ledger, rendered from the sample site's articles."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import feedparser
import pytest
from preview_samples import AS_OF, write_site

from digest.archive import ATOM, write_archive
from digest.errors import DigestError
from digest.issue import IssueRequest, plan_issue
from digest.ledger import Ledger
from digest.providers import Recipient, RecipientResult, Status
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
