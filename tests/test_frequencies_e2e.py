"""Per-reader frequency through the real CLI against the SendGrid stand-in:
four simulated weeks of `digest send --as-of` at every daily send time, with
daily, weekly and monthly readers and one who switches from weekly to daily
mid-week; every reader gets every article with their tags exactly once. On
both ledgers: a SQLite file and a database on the real PostgreSQL server."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import frontmatter
from conftest import SENDGRID_KEY

SCHEDULE = ["daily 07:30", "weekly monday 08:00", "monthly 1 09:00"]
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
TAGS = ("news", "garden", "recipes")
# 56 articles, one every 11 hours from Mon 2 Nov 10:00 to Sun 29 Nov, tags in turn.
ARTICLES = [(f"Item {n:02d}", START + timedelta(hours=11 * n), TAGS[n % 3]) for n in range(56)]
READERS = {
    "daily-news@example.org": ("news", "daily"),
    "weekly-all@example.org": ("", "weekly"),
    "twin-all@example.org": ("", "weekly"),  # same window and tags as weekly-all: one render for both
    "monthly-garden@example.org": ("garden", "monthly"),
    "switcher@example.org": ("news;garden", "weekly"),
    "default@example.org": ("recipes", ""),  # no frequency: the default, weekly
}
SWITCH_AT = datetime(2026, 11, 12, 12, 0, tzinfo=UTC)  # Thursday of the second week


def write_readers(site, readers: dict[str, tuple[str, str]]) -> None:
    lines = ["email,name,tags,frequency"] + [f"{email},,{tags},{frequency}" for email, (tags, frequency) in readers.items()]
    (site.root / "readers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def received(server) -> dict[str, list[tuple[str, list[str]]]]:
    """Address -> [(subject, titles of the articles in the message)], in the order sent."""
    got: dict[str, list[tuple[str, list[str]]]] = {}
    for entry in server.bodies():
        body = entry["body"]
        if entry["status"] != 202 or not body:
            continue
        text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
        titles = re.findall(r"Item \d\d", text)
        for personalization in body["personalizations"]:
            for to in personalization["to"]:
                got.setdefault(to["email"], []).append((body["subject"], list(dict.fromkeys(titles))))
    return got


def test_four_weeks_of_daily_weekly_and_monthly_readers_each_article_exactly_once(make_site, start_fake_sendgrid, ledger_target):
    server = start_fake_sendgrid(keep_bodies=2000)
    site = make_site(readers=0, sendgrid_host=server.url, schedule=SCHEDULE, timezone="UTC", ledger=str(ledger_target))
    site.settings["sendgrid_api_key"] = SENDGRID_KEY
    for old in (site.root / "posts").glob("*.md"):
        old.unlink()
    for title, published, tag in ARTICLES:
        post = frontmatter.Post(f"{title}: a few words about {tag}.", title=title, date=published.isoformat(), tags=[tag])
        (site.root / "posts" / f"{title.replace(' ', '-').lower()}.md").write_text(frontmatter.dumps(post), encoding="utf-8")
    write_readers(site, READERS)

    shown = site.run("schedule", "--as-of", "2026-11-02T07:00")
    assert shown.returncode == 0, shown.stderr
    assert "daily: 1 reader, sent daily at 07:30" in shown.stdout and "weekly: 4 readers, sent weekly on Monday at 08:00" in shown.stdout
    assert "monthly: 1 reader, sent monthly on day 1 at 09:00" in shown.stdout and "2026-12: Tue 1 Dec 09:00 UTC" in shown.stdout

    moments = [datetime(2026, 11, 2, 7, 30, tzinfo=UTC) + timedelta(days=d) for d in range(30)] + [datetime(2026, 12, 1, 9, 30, tzinfo=UTC)]
    switched = False
    for moment in moments:
        if not switched and moment > SWITCH_AT:
            write_readers(site, {**READERS, "switcher@example.org": ("news;garden", "daily")})
            switched = True
            before_switch = len(received(server).get("switcher@example.org", []))
        done = site.run("send", "--as-of", moment.isoformat())
        assert done.returncode == 0, (moment, done.stdout, done.stderr)

    got = received(server)
    last_end = {"daily": datetime(2026, 12, 1, 7, 30, tzinfo=UTC), "weekly": datetime(2026, 11, 30, 8, tzinfo=UTC), "monthly": datetime(2026, 12, 1, 9, tzinfo=UTC)}
    for address, (tags, frequency) in READERS.items():
        wanted = set(tags.split(";")) if tags else set(TAGS)
        end = last_end["daily" if address == "switcher@example.org" else frequency or "weekly"]
        expected = Counter(title for title, published, tag in ARTICLES if tag in wanted and published <= end)
        counts = Counter(title for _, titles in got.get(address, []) for title in titles)
        assert counts == expected, address  # every article with their tags, each exactly once
    # Message counts follow the frequencies: one a week, one a month, about one a day.
    assert len(got["weekly-all@example.org"]) == 4 and len(got["monthly-garden@example.org"]) == 1
    assert len(got["daily-news@example.org"]) >= 19

    # The switcher's first daily issue (Friday 13 Nov) holds Monday-to-Thursday's articles, not only Thursday's.
    subject, titles = got["switcher@example.org"][before_switch]
    week = [t for t, published, tag in ARTICLES if tag in {"news", "garden"} and datetime(2026, 11, 9, 8, tzinfo=UTC) < published <= datetime(2026, 11, 13, 7, 30, tzinfo=UTC)]
    assert sorted(titles) == sorted(week)
    assert any(published < datetime(2026, 11, 11, tzinfo=UTC) for t, published, _ in ARTICLES if t in titles)

    # Variants stay few: readers with the same window and tags share one render (one request's content).
    shared = [
        {to["email"] for p in entry["body"]["personalizations"] for to in p["to"]}
        for entry in server.bodies()
        if entry["status"] == 202 and "weekly-all@example.org" in {to["email"] for p in entry["body"]["personalizations"] for to in p["to"]}
    ]
    assert len(shared) == 4 and all("twin-all@example.org" in people for people in shared)
