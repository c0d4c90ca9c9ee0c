"""The weekly cron job through the real command line: exit codes and
messages exactly as README says, windows that neither lose nor repeat an
article whatever happens to a run, hourly runs that send each issue once to
the audience queued first, and recovering from a rejection. The SendGrid
stand-in (../shared/tools/fake_sendgrid.py) records what went out."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import click
import frontmatter
import pytest
from conftest import BODY, REPO, SENDGRID_KEY, WEEK48, held_requests, recorded, tags_of_readers

from digest.cli import cli

SEND = ("send", "--as-of", WEEK48)


def sendgrid(server, **settings) -> dict:
    return {"sendgrid_host": server.url, "sendgrid_api_key": SENDGRID_KEY, **settings}


def add_post(site, stem: str, title: str, date: str, tag: str = "news") -> None:
    post = frontmatter.Post(BODY.format(title=title), title=title, date=date, tags=[tag])
    (site.root / "posts" / f"{stem}.md").write_text(frontmatter.dumps(post), encoding="utf-8")


def by_issue(records) -> dict[str, Counter]:
    """issue key -> how many times each address got it."""
    found: dict[str, Counter] = {}
    for record in records:
        found.setdefault(record["custom_args"]["issue_key"], Counter())[record["to"]] += 1
    return found


# 1. Exit codes and messages ----------------------------------------------------------------


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """Every command path of the CLI, nested groups included (a new command is covered by itself)."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


COMMANDS = [(), *commands()]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "digest")
def test_help_exits_0_with_empty_stderr_and_a_bogus_option_exits_2_with_click_usage(make_site, path):
    site = make_site(readers=1)
    helped = site.run(*path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stderr == ""
    assert helped.stdout.startswith(f"Usage: digest {' '.join(path)}".rstrip())
    bogus = site.run(*path, "--no-such-option-here")
    assert bogus.returncode == 2, bogus.stdout + bogus.stderr
    assert "No such option '--no-such-option-here'" in bogus.stderr
    assert "unexpected" not in bogus.stderr and "Try 'digest" in bogus.stderr


def test_the_walk_reaches_nested_commands():
    # else the parametrized test above would prove less than it says
    assert ("subscribers", "check") in COMMANDS and ("suppressions", "add") in COMMANDS and ("schedule",) in COMMANDS


def readme_exit_codes() -> list[int]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("Exit codes:", 1)[1].split("\n\n", 2)[1]
    return [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)]


def test_every_exit_code_of_readme_has_its_scenarios_here():
    assert sorted(SCENARIOS) == sorted(readme_exit_codes())


def _sent_everyone(site, server):
    return site.run(*SEND, **sendgrid(server))


def _nothing_to_send(site, server):
    done = site.run("send", "--as-of", "2020-01-06", **sendgrid(server))
    assert "nothing to send" in done.stdout
    return done


def _status_before_any_send(site, server):
    done = site.run("status")
    assert "no issues sent yet" in done.stdout
    return done


def _finished_issue_again_with_not_after(site, server):
    assert site.run(*SEND, **sendgrid(server)).returncode == 0
    done = site.run(*SEND, "--not-after", "1h", **sendgrid(server))  # days after its scheduled time
    assert "2026-W48 already sent; next: Mon 30 Nov 08:00 UTC" in done.stdout
    return done


def _partial_send(site, server):
    site.write_readers(5, extra=[("ada@example.c0m", "Ada", "")])  # the stand-in, as SendGrid, answers 400
    done = site.run(*SEND, **sendgrid(server))
    assert "rejected: ada@example.c0m" in done.stdout
    return done


def _list_problems(site, server):
    site.write_readers(3, extra=[("not-an-address", "Nobody", "")])
    done = site.run("subscribers", "check")
    assert "not-an-address" in done.stdout
    return done


def _import_with_bad_rows(site, server):
    (site.root / "export.csv").write_text("email,name\nnew@example.org,New\nnot-an-address,Nobody\n", encoding="utf-8")
    done = site.run("subscribers", "import", "export.csv")
    assert done.stderr.startswith("warning: not imported: export.csv:3: invalid address") and "imported 1" in done.stdout
    return done


def _logo_without_alt(site) -> dict:
    """An editor's header template with an image that has no alt text: an error of the built-in checks."""
    header = REPO / "templates" / "partials" / "header.html.j2"
    ours = site.root / "tpl" / "partials" / "header.html.j2"
    ours.parent.mkdir(parents=True)
    ours.write_text(header.read_text(encoding="utf-8").replace("<h1", '<img src="https://gazette.example.org/logo.png" width="60"><h1', 1), encoding="utf-8")
    return {"templates_dir": "tpl"}


def _lint_problems(site, server):
    done = site.run("lint", "--as-of", WEEK48, **_logo_without_alt(site))
    assert "image without alt text" in done.stderr + done.stdout
    return done


def _checks_find_errors(site, server):
    done = site.run(*SEND, **_logo_without_alt(site), **sendgrid(server))
    assert "the built-in checks found errors" in done.stderr and server.stats()["requests"] == 0
    return done


def _checks_find_errors_in_a_dry_run(site, server):
    # The outbox is written for the editor to look at, and the answer is the real send's.
    done = site.run("send", "--dry-run", "--as-of", WEEK48, **_logo_without_alt(site))
    assert "a real send would stop" in done.stderr
    assert list((site.root / "outbox").glob("*.eml"))
    return done


def _bad_option_value(site, server):
    return site.run("send", "--as-of", "next blue moon", **sendgrid(server))


def _missing_list(site, server):
    done = site.run(*SEND, "--subscribers", "no-such-list.csv", **sendgrid(server))
    assert "no subscriber list at no-such-list.csv" in done.stderr
    return done


def _missing_named_list(site, server):
    return site.run("subscribers", "check", "--list", "garden")


def _status_of_an_issue_never_sent(site, server):
    assert site.run(*SEND, **sendgrid(server)).returncode == 0
    done = site.run("status", "--issue", "2026-W47")
    assert "no issue 2026-W47 in digest.db" in done.stderr
    return done


def _too_late(site, server):
    done = site.run(*SEND, "--not-after", "1h", **sendgrid(server))
    assert "--not-after 1h: not sending" in done.stderr
    return done


def _status_after_a_refusal(site, server):
    # The refusal is written to the ledger; status names it instead of printing nothing.
    assert site.run(*SEND, "--not-after", "1h", **sendgrid(server)).returncode == 2
    done = site.run("status")
    assert done.stdout.startswith("2026-W48 (refused ") and "--not-after 1h" in done.stdout, done.stdout
    assert json.loads(site.run("status", "--json").stdout)["refused"][0]["issue"] == "2026-W48"
    return done


def _templates_dir_missing(site, server):
    # A typo must not silently send the packaged templates instead of the editors' own.
    done = site.run(*SEND, templates_dir="tempaltes", **sendgrid(server))
    assert "setting 'templates_dir': tempaltes is not a folder" in done.stderr and server.stats()["requests"] == 0
    return done


def _outbox_provider_without_dry_run(site, server):
    done = site.run(*SEND, provider="outbox")
    assert "set provider to sendgrid or smtp to send, or pass --dry-run" in done.stderr
    assert not (site.root / "outbox").exists()
    return done


def _every_source_failing(site, server):
    done = site.run(*SEND, "--content", "postz", "--content", "https://127.0.0.1:1/feed.xml", **sendgrid(server))
    assert "no source could be read" in done.stderr and "postz: no such file or folder" in done.stderr
    assert "127.0.0.1:1/feed.xml" in done.stderr
    return done


def _every_source_failing_in_preview(site, server):
    done = site.run("preview", "--as-of", WEEK48, "--content", "postz", "--content", "https://127.0.0.1:1/feed.xml")
    assert "error: no source could be read (postz: no such file or folder; https://127.0.0.1:1/feed.xml: " in done.stderr
    assert not (site.root / "outbox").exists()
    return done


def _every_source_failing_in_articles(site, server):
    done = site.run("articles", "--as-of", WEEK48, "--content", "postz", "--content", "https://127.0.0.1:1/feed.xml")
    assert "error: no source could be read (postz: no such file or folder; https://127.0.0.1:1/feed.xml: " in done.stderr
    assert "selected" not in done.stdout
    return done


def _no_source_at_all(site, server):
    """An unset variable in a crontab (DIGEST_SOURCES=$SOURCES) empties the setting: not a quiet week."""
    done = site.run(*SEND, sources="", **sendgrid(server))
    assert "error: setting 'sources' is empty" in done.stderr
    assert not server.records()
    return done


def _every_source_failing_in_audience(site, server):
    done = site.run("audience", "--as-of", WEEK48, "--content", "postz")
    assert "error: no source could be read (postz: no such file or folder" in done.stderr
    assert "variant" not in done.stdout
    return done


def _refused_key(site, server):
    done = site.run(*SEND, sendgrid_host=server.url, sendgrid_api_key="SG.wrong-key-0123456789")
    assert "refused our API key" in done.stderr and "0123456789" not in done.stdout + done.stderr
    return done


def _ledger_held(site, server):
    """A second send while the first holds the ledger: the first is held in
    its first request by the stand-in's clock (a barrier), so the second
    meets it however slow the machine is."""
    with held_requests(server) as arrived:
        first = site.start(*SEND, **sendgrid(server))
        assert arrived.wait(120), "the first send made no request"
        second = site.run(*SEND, **sendgrid(server))
    assert first.wait(timeout=120) == 0
    assert "another send is using the ledger" in second.stderr and str(first.pid) in second.stderr
    assert recorded(server.records()) == dict.fromkeys(tags_of_readers(20), 1)
    return second


def _migrate_to_a_wrong_target(site, server):
    done = site.run("ledger", "migrate", "--to", "mysql://x/y")
    assert done.stderr == "error: --to 'mysql://x/y': not a PostgreSQL ledger; give postgresql://user@host/dbname (or postgres://...)\n"
    return done


SCENARIOS = {
    0: [_sent_everyone, _nothing_to_send, _status_before_any_send, _status_after_a_refusal, _finished_issue_again_with_not_after],
    1: [_partial_send, _list_problems, _lint_problems, _import_with_bad_rows],
    2: [_bad_option_value, _checks_find_errors, _checks_find_errors_in_a_dry_run, _missing_list, _missing_named_list, _status_of_an_issue_never_sent, _too_late, _templates_dir_missing, _outbox_provider_without_dry_run, _every_source_failing, _every_source_failing_in_preview, _every_source_failing_in_articles,
        _every_source_failing_in_audience, _no_source_at_all, _migrate_to_a_wrong_target],
    3: [_refused_key],
    75: [_ledger_held],
}


@pytest.mark.parametrize(
    ("code", "scenario"), [(code, s) for code, found in SCENARIOS.items() for s in found], ids=lambda v: getattr(v, "__name__", str(v))
)
def test_readme_exit_code_rows_through_the_cli(make_site, start_fake_sendgrid, code, scenario):
    server = start_fake_sendgrid()
    site = make_site(readers=20)
    done = scenario(site, server)
    assert done.returncode == code, done.stdout + done.stderr
    assert "unexpected" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", [("preview",), ("articles",), ("lint",)])
def test_some_sources_failing_in_preview_articles_and_lint_is_a_warning_and_the_rest_is_used(make_site, command):
    site = make_site(readers=3)
    done = site.run(*command, "--as-of", WEEK48, "--content", "posts", "--content", "postz")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: postz: no such file or folder" in done.stderr and "no source could be read" not in done.stderr
    if command == ("articles",):
        assert "Grüße aus dem Garten: frost on the leeks" in done.stdout
    elif command == ("preview",):
        assert "Grüße aus dem Garten" in (site.root / "outbox" / "preview.html").read_text(encoding="utf-8")


def test_some_sources_failing_is_a_warning_and_a_list_in_json(make_site, fake_sendgrid):
    site = make_site(readers=3)
    done = site.run(*SEND, "--json", "--content", "posts", "--content", "postz", **sendgrid(fake_sendgrid))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: postz: no such file or folder" in done.stderr
    assert json.loads(done.stdout)["sources_failed"] == ["postz: no such file or folder"]


# 2. No gaps and no overlaps ------------------------------------------------------------------


def test_a_refused_week_goes_into_the_next_issue_and_every_article_goes_out_once(make_site, fake_sendgrid):
    site = make_site(readers=4, not_after="36h")
    add_post(site, "news-50", "Mulching before the frost", "2026-12-03T09:00:00+00:00")
    titles: dict[str, list[str]] = {}
    for as_of, expected in [("2026-11-23T09:00", 0), ("2026-12-02T12:00", 2), ("2026-12-07T08:30", 0)]:
        done = site.run("send", "--as-of", as_of, "--json", **sendgrid(fake_sendgrid))
        assert done.returncode == expected, done.stdout + done.stderr
        if expected == 0:
            summary = json.loads(done.stdout)
            titles[summary["issue"]] = summary["article_titles"]
    # 2026-W49 was refused (two days late, not_after 36h): its article went out in 2026-W50.
    assert set(titles) == {"2026-W48", "2026-W50"}
    assert titles["2026-W50"] == ["Mulching before the frost", "Winter pruning, step by step"]
    every = [title for issue in titles.values() for title in issue]
    assert len(every) == len(set(every)) == 8
    status = site.status()
    assert status["2026-W50"]["articles"] == 2 and "2026-W49" not in status


def test_a_refused_first_week_goes_into_the_first_issue_that_goes_out(make_site, fake_sendgrid):
    site = make_site(readers=4, not_after="36h")
    refused = site.run("send", "--as-of", "2026-11-25T12:00", **sendgrid(fake_sendgrid))  # 2026-W48, two days late
    assert refused.returncode == 2 and "not sending" in refused.stderr
    assert site.status() == {} and fake_sendgrid.stats()["requests"] == 0
    done = site.run("send", "--as-of", "2026-11-30T08:10", "--json", **sendgrid(fake_sendgrid))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["issue"] == "2026-W49" and summary["articles"] == 7  # 2026-W48's six and its own
    assert summary["window"]["start"] == "2026-11-16T08:00:00+00:00"


def test_a_late_send_inside_the_grace_says_how_late_in_its_line_and_in_json(make_site, fake_sendgrid):
    site = make_site(readers=3, not_after="36h", timezone="Europe/Berlin")
    done = site.run("send", "--as-of", "2026-11-23T10:35", **sendgrid(fake_sendgrid))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "issue 2026-W48 (2 h 35 min late: scheduled Mon 23 Nov 08:00 Europe/Berlin)" in done.stdout
    other = make_site(readers=3, not_after="36h", timezone="Europe/Berlin")
    as_json = other.run("send", "--as-of", "2026-11-24T08:00:30", "--json", **sendgrid(fake_sendgrid))
    assert json.loads(as_json.stdout)["late_seconds"] == 24 * 3600 + 30
    on_time = make_site(readers=3, timezone="Europe/Berlin").run("send", "--as-of", "2026-11-23T08:00", **sendgrid(fake_sendgrid))
    assert "late" not in on_time.stdout


# 3. Cron at any frequency --------------------------------------------------------------------


def test_three_weeks_of_hourly_runs_send_three_issues_each_reader_once_and_newcomers_only_later(
    make_site, fake_sendgrid, monkeypatch
):
    """504 hourly runs of `digest send --as-of HOUR` (in this process, through
    the click command itself: 504 interpreters would take minutes), the
    not_after clock following --as-of; readers join mid-week."""
    site = make_site(readers=10, not_after="36h", timezone="America/New_York")
    add_post(site, "news-50", "Mulching before the frost", "2026-12-03T09:00:00+00:00")
    monkeypatch.chdir(site.root)
    for name, value in site.env(**sendgrid(fake_sendgrid)).items():
        if name.startswith("DIGEST_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    from datetime import datetime, timedelta

    from click.testing import CliRunner

    runner = CliRunner()
    start = datetime(2026, 11, 23, 0, 0)
    joined: dict[str, datetime] = {}
    quiet = 0
    for hour in range(21 * 24):
        moment = start + timedelta(hours=hour)
        if moment.weekday() == 2 and moment.hour == 12:  # Wednesday noon: someone joins
            address = f"newcomer{len(joined)}@example.org"
            added = runner.invoke(cli, ["subscribers", "add", address, "--name", "New"])
            assert added.exit_code == 0, added.output
            joined[address] = moment
        done = runner.invoke(cli, ["send", "--as-of", moment.isoformat(timespec="minutes")])
        assert done.exit_code == 0, f"{moment}: {done.output}"
        assert "unexpected" not in done.output and "too late" not in done.output
        if "already sent; next:" in done.output:
            quiet += 1
            assert len(done.stdout.splitlines()) == 1  # one quiet line for the cron log
    issues = by_issue(fake_sendgrid.records())
    assert sorted(issues) == ["2026-W48", "2026-W49", "2026-W50"]
    assert all(max(counts.values()) == 1 for counts in issues.values())  # each reader once per issue
    first = set(tags_of_readers(10))
    assert set(issues["2026-W48"]) == first
    assert set(issues["2026-W49"]) == first | {"newcomer0@example.org"}
    assert set(issues["2026-W50"]) == first | {"newcomer0@example.org", "newcomer1@example.org"}
    assert quiet > 400


def test_a_rerun_of_an_open_issue_sends_to_its_queued_audience_only(make_site, start_fake_sendgrid):
    server = start_fake_sendgrid(fail_first=1000)  # provider down: everyone stays queued
    site = make_site(readers=5, sendgrid_max_tries=1, retry_rounds=0)
    down = site.run(*SEND, **sendgrid(server))
    assert down.returncode == 1, down.stdout + down.stderr
    # Attempts are not deliveries: the summary says both.
    attempted = re.search(r"\((\d+) attempted through sendgrid in this run, 0 accepted\)", down.stdout)
    assert attempted and int(attempted[1]) >= 1, down.stdout
    assert "handed to" not in down.stdout
    site.write_readers(5, extra=[("late@example.org", "Late", "")])
    server.config.fail_first = 0
    server.reset()
    done = site.run(*SEND, **sendgrid(server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert recorded(server.records()) == dict.fromkeys(tags_of_readers(5), 1)


def test_schedule_shows_the_issue_a_send_would_handle_and_the_next_ones_in_both_zones(make_site, fake_sendgrid):
    site = make_site(readers=3, timezone="America/New_York")
    before = json.loads(site.run("schedule", "--as-of", "2026-11-23T09:00", "--count", "2", "--json").stdout)
    assert before["now"]["issue"] == "2026-W48" and before["now"]["status"] == "not sent yet"
    assert before["now"]["scheduled"] == "Mon 23 Nov 08:00 America/New_York"
    assert before["now"]["scheduled_at"] == "2026-11-23T13:00:00+00:00"
    assert [n["issue"] for n in before["next"]] == ["2026-W49", "2026-W50"]
    assert before["next"][0]["window_start"] == "2026-11-23T13:00:00+00:00"
    assert site.run("send", "--as-of", "2026-11-23T09:00", **sendgrid(fake_sendgrid)).returncode == 0
    text = site.run("schedule", "--as-of", "2026-11-25T09:00")
    assert text.returncode == 0, text.stderr
    assert "a send now handles 2026-W48: already sent; scheduled Mon 23 Nov 08:00 America/New_York (2026-11-23 13:00:00 UTC)" in text.stdout
    # Missed: 2026-W49 was never sent, so 2026-W50's window reaches back to 2026-W48's end.
    later = json.loads(site.run("schedule", "--as-of", "2026-12-07T09:00", "--json").stdout)
    assert later["now"]["issue"] == "2026-W50" and later["now"]["window_start"] == "2026-11-23T13:00:00+00:00"


# 4. No article disappears without a word --------------------------------------------------

EVENTS_FEED = """<rss version="2.0"><channel><title>Events</title><link>https://gazette.example.org/</link>
<item><title>Seed swap (Saturday)</title><guid isPermaLink="false">event-41-sat</guid>
<link>https://gazette.example.org/events/seed-swap</link><pubDate>Tue, 17 Nov 2026 09:00:00 +0000</pubDate></item>
<item><title>Seed swap (Sunday)</title><guid isPermaLink="false">event-41-sun</guid>
<link>https://gazette.example.org/events/seed-swap</link><pubDate>Tue, 17 Nov 2026 09:05:00 +0000</pubDate></item>
<item><title>Grüße aus dem Garten: frost on the leeks</title><guid isPermaLink="false">tag:gazette,2026:news-48</guid>
<link>https://gazette.example.org/news-48/</link><pubDate>Sun, 22 Nov 2026 09:00:00 +0000</pubDate></item>
<item><title>Old news</title><guid>tag:gazette,2025:old</guid><link>https://gazette.example.org/old/</link>
<pubDate>Sat, 01 Nov 2025 09:00:00 +0000</pubDate></item>
</channel></rss>"""


def test_two_guids_sharing_a_link_are_both_sent_and_a_post_in_the_folder_and_the_feed_once(make_site, fake_sendgrid):
    site = make_site(readers=3)
    (site.root / "events.xml").write_text(EVENTS_FEED, encoding="utf-8")
    content = ("--content", "posts", "--content", "events.xml")
    listed = site.run("articles", "--as-of", WEEK48, *content)
    assert listed.returncode == 0, listed.stderr
    assert "8 of 11 articles selected" in listed.stdout  # 7 posts and 4 entries; 2 events, 6 posts in the window; news-48 once
    assert "Seed swap (Saturday)" in listed.stdout and "Seed swap (Sunday)" in listed.stdout
    explained = site.run("articles", "--as-of", WEEK48, "--explain", *content).stdout
    assert "identity: guid tag:gazette,2026:event-41-sat" not in explained  # a bare guid gets its feed in front
    assert "identity: guid events.xml#event-41-sat" in explained or "#event-41-sat" in explained
    assert "identity: URL https://gazette.example.org/news-48/" in explained
    assert re.search(r"Grüße aus dem Garten: frost on the leeks \(events\.xml; guid tag:gazette,2026:news-48\): duplicate of 'Grüße aus dem Garten: frost on the leeks' \(posts/news-48\.md", explained), explained
    assert "Old news (events.xml; guid tag:gazette,2025:old): outside the window (published 2025-11-01 09:00)" in explained
    sent = site.run(*SEND, "--json", *content, **sendgrid(fake_sendgrid))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    titles = json.loads(sent.stdout)["article_titles"]
    assert len(titles) == 8 and titles.count("Grüße aus dem Garten: frost on the leeks") == 1
    again = site.run("articles", "--as-of", "2026-11-30", "--since", "21d", "--explain", *content).stdout
    assert re.search(r"\n  Bed 0 notes: Kürbis and kale \(posts/tag0-48\.md; URL [^)]+\): already sent in 2026-W48\n", again), again
    # The events went to nobody (every reader chose tags; the events have none): not sent, so still selectable.
    assert "Seed swap (Sunday)" in again.split("left out")[0]


# 8. Words ------------------------------------------------------------------------------------


def test_counts_take_the_plural_only_when_not_one(make_site):
    from digest.words import plural

    assert [plural(n, "subscriber") for n in (0, 1, 2)] == ["0 subscribers", "1 subscriber", "2 subscribers"]
    assert plural(1, "entry") == "1 entry" and plural(3, "entry") == "3 entries"
    site = make_site(readers=1)
    audience = site.run("audience", "--as-of", WEEK48)
    assert "1 recipient in 1 variant; 0 subscribers get nothing this time" in audience.stdout, audience.stdout
    assert re.search(r"^variant 1 \[\w+\]: 2 articles, 1 subscriber \(", audience.stdout, re.M), audience.stdout


# 6. Settings and lists never ignore what they do not understand ---------------------------


def test_a_csv_column_that_is_not_read_is_named_once_per_file_by_check_and_by_send(make_site, fake_sendgrid):
    site = make_site(readers=0)
    rows = "".join(f"reader{n}@example.org,Reader {n},news;tag{n % 5},vip\n" for n in range(4))
    (site.root / "readers.csv").write_text("email,name,tags,labels\n" + rows, encoding="utf-8")
    checked = site.run("subscribers", "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    named = [line for line in checked.stdout.splitlines() if "'labels'" in line]
    assert named == ["readers.csv:1: 1 column not read, values ignored: 'labels' (columns read: email, name (or first_name, last_name), tags, frequency, status, subscribed_at)"]
    sent = site.run(*SEND, **sendgrid(fake_sendgrid))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert [line for line in sent.stderr.splitlines() if "labels" in line] == [
        "warning: subscriber list: " + named[0]
    ]
    assert "unexpected" not in sent.stderr


def test_dotenv_keys_digest_does_not_read_are_named_in_one_line_and_a_digest_typo_stops_the_run(make_site):
    site = make_site(readers=1)
    (site.root / ".env").write_text("SENDGRID_API_KEY=SG.secret-value\nOTHER_TOOL=1\n", encoding="utf-8")
    done = site.run("status")
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "warning: .env: ignored, not settings of digest (it reads DIGEST_<SETTING>=value lines): "
        "SENDGRID_API_KEY (not read: write DIGEST_SENDGRID_API_KEY), OTHER_TOOL"
    ]
    (site.root / ".env").write_text("DIGEST_SENDGRID_APIKEY=SG.secret-value\n", encoding="utf-8")
    typo = site.run("send", "--dry-run")
    assert typo.returncode == 2 and typo.stderr.strip() == "error: setting 'DIGEST_SENDGRID_APIKEY' (.env): unknown setting"
    assert "secret-value" not in typo.stderr


# 5. Recovering from a rejection --------------------------------------------------------------


def test_retry_rejected_gives_each_rejected_recipient_exactly_one_copy_and_status_shows_the_reason(
    make_site, fake_sendgrid
):
    server = fake_sendgrid
    site = make_site(readers=6)
    server.config.max_body_bytes = 100  # every request too large: SendGrid's 413, a rejection
    first = site.run(*SEND, **sendgrid(server))
    assert first.returncode == 1, first.stdout + first.stderr
    problems = site.status()["2026-W48"]["problems"]
    assert len(problems) == 6 and {p["status"] for p in problems} == {"rejected"}
    assert all("413" in p["reason"] and "content too large" in p["reason"] for p in problems)
    text = site.run("status").stdout
    assert "after 1 attempt: 413" in text and "6 articles" in text
    server.config.max_body_bytes = 30_000_000  # the cause fixed
    plain = site.run(*SEND, **sendgrid(server))
    assert plain.returncode == 1 and server.records() == []  # rejected stay rejected without the flag
    retried = site.run(*SEND, "--retry-rejected", **sendgrid(server))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "6 rejected recipients queued again" in retried.stdout
    again = site.run(*SEND, "--retry-rejected", **sendgrid(server))
    assert again.returncode == 0 and "already sent" not in again.stdout
    assert recorded(server.records()) == dict.fromkeys(tags_of_readers(6), 1)
    assert site.status()["2026-W48"]["counts"] == {"accepted": 6}


def test_retry_rejected_after_an_unverified_sender_sends_each_recipient_once(make_site, fake_sendgrid):
    server = fake_sendgrid
    site = make_site(readers=8)
    server.config.verified_senders = ("someone-else@example.org",)
    refused = site.run(*SEND, **sendgrid(server))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    server.config.verified_senders = ()
    fixed = site.run(*SEND, "--retry-rejected", **sendgrid(server))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert recorded(server.records()) == dict.fromkeys(tags_of_readers(8), 1)


def test_status_before_any_send_is_an_empty_list_in_json_and_creates_no_ledger(make_site):
    site = make_site(readers=1)
    done = site.run("status", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"issues": []}
    assert not Path(site.root / "digest.db").exists()
