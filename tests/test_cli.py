"""The main job end to end through the command line: planning, the dry run,
what it writes and where, and one-line errors."""

import email
import email.policy
import os
import re
import socket
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli

ARTICLE = """\
---
title: "{title}"
date: {date}
tags: [{tags}]
---
The first paragraph of “{title}”, with curly quotes and a few words more.

A second paragraph.
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A small site of our own in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    posts = tmp_path / "posts"
    posts.mkdir()
    for n, (title, date, tags) in enumerate(
        [
            ("Tomatoes in November", "2026-11-25T09:00:00+00:00", "gardening"),
            ("Seed swap on Saturday", "2026-11-24", "events, gardening"),
            ("A new compost bay", "2026-11-23T18:30:00", "compost"),
            ("Last year's harvest", "2025-09-01", "gardening"),
        ]
    ):
        (posts / f"post-{n}.md").write_text(ARTICLE.format(title=title, date=date, tags=tags), encoding="utf-8")
    (tmp_path / "readers.csv").write_text(
        "email,name,tags\n"
        "ada@example.org,Ada,\n"
        "grace@example.org,Grace,gardening\n"
        "alan@example.org,Alan,compost\n"
        "edsger@example.org,Edsger,compost\n"
        "not-an-address,Nobody,\n",
        encoding="utf-8",
    )
    (tmp_path / "digest.toml").write_text(
        textwrap.dedent(
            """\
            site_name = "Garden Notes"
            site_url = "https://garden.example.org/"
            sender_email = "notes@garden.example.org"
            sources = ["posts"]
            subscribers = "readers.csv"
            """
        )
    )
    return tmp_path


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_dry_run_writes_one_message_per_recipient_and_nothing_else(site, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the dry run opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    before = tree(site)
    result = run("send", "--dry-run", "--as-of", "2026-11-30")
    assert result.exit_code == 0, result.output
    created = tree(site) - before
    assert created and all(p == "outbox" or p.startswith("outbox/") for p in created), created
    emls = sorted((site / "outbox").glob("*.eml"))
    assert [p.name for p in emls] == ["ada@example.org.eml", "alan@example.org.eml", "edsger@example.org.eml", "grace@example.org.eml"]
    assert (site / "outbox" / "index.html").exists()
    assert "4 recipients in 3 variants" in result.output
    assert "3 articles" in result.output
    assert "not-an-address" in result.output  # the bad row is reported...
    message = email.message_from_bytes((site / "outbox" / "alan@example.org.eml").read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "alan@example.org"
    assert [part.get_content_type() for part in message.get_payload()] == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content()
    assert "A new compost bay" in text and "Tomatoes in November" not in text  # only Alan's tag


def test_empty_selection_says_nothing_to_send_and_writes_no_email(site):
    result = run("send", "--dry-run", "--as-of", "2020-01-01")
    assert result.exit_code == 0
    assert "nothing to send" in result.output
    assert not list((site / "outbox").glob("*.eml")) if (site / "outbox").exists() else True


def test_articles_lists_the_selection_newest_first(site):
    result = run("articles", "--as-of", "2026-11-30")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line[:4].isdigit()]
    assert [line.split("  ", 1)[1] for line in lines] == ["Tomatoes in November", "Seed swap on Saturday", "A new compost bay"]


def test_bad_option_values_are_one_line_with_exit_code_2(site):
    result = CliRunner().invoke(cli, ["articles", "--as-of", "next tuesday"])
    assert result.exit_code == 2
    assert "not a date or time" in result.output
    assert "Traceback" not in result.output
    (site / "digest.toml").write_text('timezone = "Nowhere/Special"\n')
    result = CliRunner().invoke(cli, ["articles"])
    assert result.exit_code == 2
    assert "'timezone'" in result.output and "Traceback" not in result.output


def test_preview_writes_html_and_text_for_a_tag_set(site):
    result = run("preview", "--as-of", "2026-11-30", "--for-tags", "compost", "-o", "p.html")
    assert result.exit_code == 0, result.output
    page = (site / "p.html").read_text(encoding="utf-8")
    assert "A new compost bay" in page and "Tomatoes in November" not in page
    result = run("preview", "--as-of", "2026-11-30", "--text", "-o", "p.txt")
    text = (site / "p.txt").read_text(encoding="utf-8")
    assert "<" not in text and "“Tomatoes in November”" in text


def test_send_without_dry_run_on_the_outbox_provider_is_refused_with_exit_2_and_writes_nothing(site):
    # A cron job with no provider configured must not "succeed" every week.
    result = run("send", "--as-of", "2026-11-30")
    assert result.exit_code == 2, result.output
    assert "set provider to sendgrid or smtp" in result.output and "--dry-run" in result.output
    assert not (site / "outbox").exists() and not (site / "digest.db").exists()
    dry = run("send", "--as-of", "2026-11-30", "--dry-run")
    assert dry.exit_code == 0 and len(list((site / "outbox").glob("*.eml"))) == 4


def test_a_real_send_refuses_the_default_unsubscribe_secret(site, monkeypatch):
    monkeypatch.setenv("DIGEST_PROVIDER", "smtp")
    result = CliRunner().invoke(cli, ["send", "--as-of", "2026-11-30"])
    assert result.exit_code == 2
    assert "'secret_key'" in result.output
    assert not (site / "digest.db").exists()


def test_a_missing_intro_file_is_an_error_not_the_note(site):
    result = CliRunner().invoke(cli, ["preview", "--as-of", "2026-11-30", "--intro", "notes/this-week.md"])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_importing_an_export_suppresses_those_who_left_even_if_already_on_the_list(site):
    (site / "export.csv").write_text(
        "Email Address,First Name,Status\ngrace@example.org,Grace,unsubscribed\nnew@example.org,New,subscribed\n", encoding="utf-8"
    )
    result = run("subscribers", "import", "export.csv")
    assert result.exit_code == 0, result.output
    assert "suppressed" in result.output
    listed = run("subscribers", "list").output
    assert "grace@example.org\tGrace\tsuppressed: unsubscribed" in listed
    result = run("send", "--dry-run", "--as-of", "2026-11-30")
    emls = {p.name for p in (site / "outbox").glob("*.eml")}
    assert "grace@example.org.eml" not in emls and "new@example.org.eml" in emls


def test_an_import_with_skipped_rows_imports_the_good_ones_names_each_skipped_row_and_exits_1(make_site):
    site = make_site(readers=2)
    (site.root / "export.csv").write_text(
        "Email Address,First Name\n"
        "new1@example.org,New\n"
        "not-an-address,Nobody\n"  # line 3
        "new2@example.org,Two\n"
        "NEW1@example.org,Again\n"  # line 5: a duplicate of line 2
        f"long@example.org,{'N' * 201}\n",  # line 6: a name too long for To:
        encoding="utf-8",
    )
    done = site.run("subscribers", "import", "export.csv")
    assert done.returncode == 1, done.stdout + done.stderr
    skipped = done.stderr.splitlines()
    assert [re.match(r"warning: not imported: export\.csv:(\d+): ", line)[1] for line in skipped] == ["3", "5", "6"], skipped
    assert "not-an-address" in skipped[0] and "duplicate" in skipped[1]
    assert "imported 2 into readers.csv" in done.stdout and "3 bad rows" in done.stdout
    listed = (site.root / "readers.csv").read_text(encoding="utf-8")
    assert "new1@example.org,New" in listed and "new2@example.org,Two" in listed and "not-an-address" not in listed

    # All imported (or already there): exit 0 and nothing on stderr.
    (site.root / "clean.csv").write_text("email,name\nnew3@example.org,Three\nnew1@example.org,New\n", encoding="utf-8")
    clean = site.run("subscribers", "import", "clean.csv")
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr
    assert "imported 1 into readers.csv; 1 already there" in clean.stdout


def test_a_real_send_with_nothing_to_send_leaves_no_ledger_file(site, monkeypatch):
    monkeypatch.setenv("DIGEST_PROVIDER", "smtp")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "a-long-random-secret-for-this-test")
    result = run("send", "--as-of", "2020-01-06")
    assert result.exit_code == 0 and "nothing to send" in result.output
    assert not (site / "digest.db").exists()


@pytest.mark.parametrize("content", ["", "x,y\n1,2\n"])
def test_a_subscriber_list_that_reads_as_nobody_stops_the_send_with_exit_2(site, content):
    (site / "readers.csv").write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["send", "--dry-run", "--as-of", "2026-11-30"])
    assert result.exit_code == 2, result.output
    assert "no subscriber to send to" in result.output


def _issues_in_ledger(root: Path, count: int) -> None:
    """``count`` issues in the site's ledger, so that `digest status` has that many lines to print."""
    from datetime import UTC, datetime

    from digest.ledger import Ledger

    with Ledger(root / "digest.db") as ledger:
        for n in range(count):
            ledger.create_issue(f"pipe-{n:05d}", datetime(2026, 11, 16, 8, tzinfo=UTC), datetime(2026, 11, 23, 8, tzinfo=UTC), ["a1"])


@pytest.mark.parametrize(
    "args",
    [("--help",), ("status", "--help"), ("subscribers", "import", "--help"), ("status",), ("status", "--json"), ("articles", "--as-of", "2026-11-23")],
    ids=" ".join,
)
def test_output_into_a_pipe_whose_reader_went_away_ends_quietly(make_site, args):
    """A real pipe whose reading process has exited before digest writes:
    every write meets a broken pipe. PYTHONDEVMODE makes Python report what
    it would otherwise swallow at exit (an unflushed stream, an unclosed
    file), so stderr must stay empty, not merely free of a traceback."""
    import subprocess

    site = make_site(readers=3)
    _issues_in_ledger(site.root, 5)
    read_end, write_end = os.pipe()
    try:
        reader = subprocess.Popen(["head", "-c", "0"], stdin=read_end)  # reads nothing and closes its end
        os.close(read_end)
        assert reader.wait(timeout=30) == 0
        done = subprocess.run(
            site.command(*args), cwd=site.root, env={**site.env(), "PYTHONDEVMODE": "1"},
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 1


@pytest.mark.parametrize("command", ["--help", "status", "status --json"])
def test_head_1_of_digest_in_a_shell_pipeline_ends_quietly(make_site, command):
    """`digest ... | head -1` as a person types it; status prints more than
    a pipe holds (3000 issues), so head's exit breaks the pipe under it."""
    import shlex
    import subprocess

    site = make_site(readers=3)
    _issues_in_ledger(site.root, 3000)
    digest = " ".join(shlex.quote(part) for part in site.command())
    done = subprocess.run(
        ["bash", "-c", f"{digest} {command} 2>stderr.txt | head -1; echo ${{PIPESTATUS[0]}} > status.txt"],
        cwd=site.root, env={**site.env(), "PYTHONDEVMODE": "1"}, capture_output=True, text=True, timeout=120,
    )
    assert done.stdout.startswith("Usage: digest" if command == "--help" else ("pipe-02999" if command == "status" else '{"issues": [{"issue": "pipe-02999"'))
    assert len(done.stdout.splitlines()) == 1
    assert (site.root / "stderr.txt").read_text(encoding="utf-8") == ""
    # --help fits in the pipe and --json is one line: head read all of it, nothing broke.
    assert (site.root / "status.txt").read_text().strip() == ("1" if command == "status" else "0")
