"""Sign-up and a person's own data through the real programs: `digest serve`
as a process on loopback, the SendGrid stand-in and a real aiosmtpd server
taking the confirmation email, and the `digest` CLI (send, subscribers
show/forget/import) as subprocesses on the same site."""

from __future__ import annotations

import email
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path

import pytest
from conftest import SENDGRID_KEY, WEEK49, recorded

from digest.ledger import Ledger, scheme_of
from digest.ledger.model import TABLES
from digest.settings import load_settings
from digest.signup import SignupRequest, make_confirm_token
from digest.unsubscribe import make_token

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FORM = {"content-type": "application/x-www-form-urlencoded"}


def call(url: str, data: dict | bytes | None = None, method: str | None = None) -> tuple[int, bytes]:
    """(status, body) of one request, errors included."""
    body = urllib.parse.urlencode(data, doseq=True).encode() if isinstance(data, dict) else data
    request = urllib.request.Request(url, data=body, headers=FORM if body is not None else {}, method=method)
    try:
        with OPENER.open(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(found, what: str, seconds: float = 30):
    """Poll ``found()`` until it returns something true (the email is sent
    after the answer), with a deadline."""
    deadline = time.monotonic() + seconds
    while not (result := found()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s")
        time.sleep(0.05)
    return result


def link_in(text: str, base: str) -> str:
    return re.search(re.escape(base) + r"/confirm\?token=[\w.-]+", text)[0]


def sendgrid_text(fake, address: str) -> str | None:
    """The text part of the last request the stand-in took for ``address``."""
    for entry in reversed(fake.bodies()):
        body = entry["body"] or {}
        if any(to["email"] == address for p in body.get("personalizations", []) for to in p["to"]):
            return next(c["value"] for c in body["content"] if c["type"] == "text/plain")
    return None


def readers(site) -> str:
    return (site.root / "readers.csv").read_text(encoding="utf-8")


def settings_of(site):
    return load_settings(secret_key=json.loads((site.root / "digest.toml").read_text().split("secret_key = ")[1].splitlines()[0]))


@pytest.fixture
def sendgrid_site(make_site, fake_sendgrid):
    site = make_site(readers=3, sendgrid_host=fake_sendgrid.url)
    site.settings["sendgrid_api_key"] = SENDGRID_KEY
    return site


def test_sign_up_round_trip_through_sendgrid_then_the_next_issue_reaches_the_reader(sendgrid_site, fake_sendgrid):
    site = sendgrid_site
    with site.serve() as base:
        status, page = call(f"{base}/subscribe")
        assert status == 200 and b'name="topic" value="news"' in page
        status, _ = call(f"{base}/subscribe", {"email": "joiner@example.org", "name": "Jo Iner", "topic": ["news"], "frequency": "weekly", "website": ""})
        assert status == 200
        text = wait_for(lambda: sendgrid_text(fake_sendgrid, "joiner@example.org"), "confirmation email")
        link = link_in(text, base)
        (record,) = [r for r in fake_sendgrid.records() if r["to"] == "joiner@example.org"]
        assert record["subject"] == "Confirm your subscription to Allotment Gazette" and "List-Unsubscribe" not in record["headers"]
        assert "joiner@example.org" not in readers(site)
        assert call(link)[0] == 200  # the page with the button
        assert "joiner@example.org" not in readers(site)
        status, done = call(link, b"")
        assert status == 200 and b"is subscribed" in done
        assert call(link, b"")[0] == 400  # used
    assert "joiner@example.org,Jo Iner,news" in readers(site)
    log = (site.root / "run-0.out").read_text()  # the serve process's output: requests logged, tokens not
    assert '"POST /confirm" 200' in log and link.split("token=")[1] not in log and "joiner@example.org" not in log
    chosen = json.loads(site.run("subscribers", "show", "joiner@example.org", "--json").stdout)
    assert chosen["choices"]["readers"] == {"tags": None, "frequency": "weekly"}

    fake_sendgrid.reset()
    sent = site.run("send", "--as-of", WEEK49)
    assert sent.returncode == 0, sent.stderr
    assert recorded(fake_sendgrid.records())["joiner@example.org"] == 1


def test_sign_up_round_trip_through_smtp(make_site, smtp_server):
    handler, port = smtp_server
    site = make_site(readers=2, provider="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    with site.serve() as base:
        call(f"{base}/subscribe", {"email": "smtp-joiner@example.org", "topic": ["tag1", "news"], "frequency": "daily"})
        envelope = wait_for(lambda: next((e for e in handler.messages if "smtp-joiner@example.org" in e.rcpt_tos), None), "SMTP message")
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        assert message["List-Unsubscribe"] is None
        link = link_in(message.get_body(("plain",)).get_content(), base)
        assert call(link, b"")[0] == 200
    assert "smtp-joiner@example.org,,news;tag1" in readers(site)
    shown = site.run("subscribers", "show", "smtp-joiner@example.org", "--json")
    data = json.loads(shown.stdout)
    assert data["choices"]["readers"]["frequency"] == "daily"
    assert data["consents"][0]["method"] == "double opt-in via form"


def test_bad_tokens_through_the_real_server_add_nobody(sendgrid_site):
    site = sendgrid_site
    settings = settings_of(site)
    wanted = SignupRequest("intruder@example.org", "", frozenset(), "weekly", "readers", None)
    from unittest import mock

    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - 49 * 3600):
        expired = make_confirm_token(settings, wanted)
    good = make_confirm_token(settings, wanted)
    altered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    unsubscribe = make_token(settings, "intruder@example.org", "readers")
    with site.serve() as base:
        for token in (expired, altered, unsubscribe):
            status, _ = call(f"{base}/confirm?token={token}", b"")
            assert status == 400
    assert "intruder@example.org" not in readers(site)


def test_fifty_requests_for_one_address_send_one_email_and_every_answer_is_the_same(sendgrid_site, fake_sendgrid):
    site = sendgrid_site
    with site.serve() as base:
        form = {"email": "hammered@example.org", "frequency": "weekly"}
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda _: call(f"{base}/subscribe", form), range(50)))
        assert {status for status, _ in answers} == {200} and len({body for _, body in answers}) == 1
        wait_for(lambda: sendgrid_text(fake_sendgrid, "hammered@example.org"), "confirmation email")
        # reader0 is on the list, stranger is not: the same bytes back.
        subscribed = call(f"{base}/subscribe", {"email": "reader0@example.org", "frequency": "weekly"})
        stranger = call(f"{base}/subscribe", {"email": "stranger@example.org", "frequency": "weekly"})
        assert subscribed == stranger == answers[0]
        wait_for(lambda: sendgrid_text(fake_sendgrid, "stranger@example.org"), "confirmation email")
    assert recorded(fake_sendgrid.records())["hammered@example.org"] == 1


def test_show_then_forget_leaves_the_address_nowhere_and_a_later_import_does_not_mail_them(sendgrid_site, fake_sendgrid, ledger_target):
    site = sendgrid_site
    site.settings["ledger"] = ledger_target  # a SQLite file, then a PostgreSQL database
    assert site.run("send", "--as-of", "2026-11-23").returncode == 0
    with site.serve(webhook_allow_unsigned="true") as base:  # a bounce report naming the mailbox, through the webhook
        event = [{"event": "bounce", "email": "reader1@example.org", "type": "bounce", "reason": "550 5.1.1 <reader1@example.org> unknown",
                  "issue_key": "2026-W48", "subscriber_id": "reader1@example.org", "sg_event_id": "e1", "timestamp": 1764000000}]
        request = urllib.request.Request(f"{base}/webhooks/sendgrid", data=json.dumps(event).encode(), headers={"content-type": "application/json"})
        with OPENER.open(request, timeout=30) as answer:
            assert answer.status == 200
    shown = site.run("subscribers", "show", "READER1@example.org", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [row["line"] for row in data["lists"]] == [3]
    (delivery,) = data["deliveries"]
    assert delivery["issue_key"] == "2026-W48" and delivery["status"] == "accepted"
    assert delivery["events"][0]["event"] == "bounce"
    assert data["suppressions"][0]["reason"] == "bounced"
    text = site.run("subscribers", "show", "reader1@example.org").stdout
    assert "issue 2026-W48: accepted" in text and "suppressed on (every list): bounced" in text

    forgot = site.run("subscribers", "forget", "reader1@example.org")
    assert forgot.returncode == 0, forgot.stderr
    assert "1 list row (readers)" in forgot.stdout and "1 delivery pseudonymized" in forgot.stdout
    assert "1 event pseudonymized" in forgot.stdout and "1 suppression" in forgot.stdout
    assert "import" in forgot.stdout  # it says a later import is refused
    needle = b"reader1@example.org"
    name = b"reader 1"  # their name went into the delivery rows too
    files = [] if scheme_of(ledger_target) else list(Path(ledger_target).parent.glob("digest.db*"))  # the file, its -wal
    assert files or scheme_of(ledger_target)
    for path in [site.root / "readers.csv", *files]:
        assert needle not in path.read_bytes().lower(), path
        assert name not in path.read_bytes().lower(), path
    if scheme_of(ledger_target):  # every row of every table on the server
        with Ledger(ledger_target) as ledger:
            rows = [row for table in TABLES for page in ledger.table_rows(table) for row in page]
        assert rows and needle not in json.dumps(rows).encode().lower()
        assert name not in json.dumps(rows).encode().lower()
    assert "reader0@example.org" in readers(site)  # the others stay
    status = site.status()
    assert sum(status["2026-W48"]["counts"].values()) == 3  # the counts stay true

    old = site.root / "old-export.csv"
    old.write_text("email,name,tags\nreader1@example.org,Reader 1,news\nnewcomer@example.org,New,news\n", encoding="utf-8")
    imported = site.run("subscribers", "import", str(old))
    assert "asked to be forgotten" in imported.stderr and "imported 1" in imported.stdout
    assert needle not in (site.root / "readers.csv").read_bytes()
    refused = site.run("subscribers", "add", "Reader1@example.org")
    assert refused.returncode == 1 and "asked to be forgotten" in refused.stderr
    # Even a hand edit that puts them back does not mail them.
    with open(site.root / "readers.csv", "a", encoding="utf-8") as handle:
        handle.write("reader1@example.org,Reader 1,news\n")
    fake_sendgrid.reset()
    assert site.run("send", "--as-of", WEEK49).returncode == 0
    got = recorded(fake_sendgrid.records())
    assert "reader1@example.org" not in got and got["newcomer@example.org"] == 1
    after = json.loads(site.run("subscribers", "show", "reader1@example.org", "--json").stdout)
    assert after["forgotten_at"] and after["deliveries"] == [] and after["suppressions"] == []


def test_forget_refuses_a_weak_secret_key_and_erases_nothing(make_site):
    # The erasure keeps a hash keyed with secret_key: the public default key
    # would let anyone test an address against it.
    site = make_site(readers=3)
    done = site.run("subscribers", "forget", "reader1@example.org", secret_key="change-me")
    assert done.returncode == 2 and "secret_key" in done.stderr and "token_urlsafe" in done.stderr
    assert "reader1@example.org" in (site.root / "readers.csv").read_text(encoding="utf-8")


def pg_rows(url: str, query: str, *params) -> list[tuple]:
    """Rows read straight from the PostgreSQL ledger, not through digest."""
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute(query, params or None).fetchall()


def test_on_a_postgresql_ledger_sign_up_preferences_per_reader_window_and_forget_all_work(make_site, fake_sendgrid, postgres_url):
    """The whole life of a reader with ``ledger = "postgresql://..."``: the
    real `digest serve` takes a sign-up (weekly) and its confirmation, the
    consent is a row on the server; the weekly issue reaches them; they
    switch to monthly on the preferences page, and the monthly issue gives
    them only what came after the end of their weekly one (their own
    window); `digest subscribers forget` erases them on the server."""
    import frontmatter

    site = make_site(readers=0, sendgrid_host=fake_sendgrid.url, schedule=["weekly monday 08:00", "monthly 1 09:00"],
                     timezone="UTC", ledger=postgres_url)
    site.settings["sendgrid_api_key"] = SENDGRID_KEY
    for old in (site.root / "posts").glob("*.md"):
        old.unlink()
    for title, published in (("Early November", "2026-11-05T12:00:00+00:00"), ("Late November", "2026-11-25T12:00:00+00:00"),
                             ("Last Evening", "2026-11-30T20:00:00+00:00")):
        post = frontmatter.Post(f"{title}: a few words.", title=title, date=published, tags=["news"])
        (site.root / "posts" / f"{title.replace(' ', '-').lower()}.md").write_text(frontmatter.dumps(post), encoding="utf-8")
    (site.root / "readers.csv").write_text("email,name,tags,frequency\nweekly@example.org,,,weekly\n", encoding="utf-8")
    assert not list(site.root.glob("*.db*"))

    with site.serve() as base:
        status, _ = call(f"{base}/subscribe", {"email": "Joiner@example.org", "name": "Jo", "frequency": "weekly", "website": ""})
        assert status == 200
        link = link_in(wait_for(lambda: sendgrid_text(fake_sendgrid, "Joiner@example.org"), "confirmation email"), base)
        assert pg_rows(postgres_url, "SELECT count(*) FROM signup_sends") == [(1,)]  # the throttle's note, on the server
        status, done = call(link, b"")
        assert status == 200 and b"is subscribed" in done
        assert call(link, b"")[0] == 400  # a link confirms once: used_confirmations is on the server too
    assert pg_rows(postgres_url, "SELECT address_key, list_name, method FROM consents") == [("joiner@example.org", "readers", "double opt-in via form")]
    assert "Joiner@example.org,Jo" in readers(site)
    assert not list(site.root.glob("*.db*"))  # nothing went to a SQLite file beside the site

    def titles(address: str) -> list[set[str]]:
        """The articles of each message the stand-in took for ``address``, in order."""
        found = []
        for entry in fake_sendgrid.bodies():
            body = entry["body"] or {}
            if entry["status"] == 202 and any(to["email"].lower() == address for p in body.get("personalizations", []) for to in p["to"]):
                text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
                found.append({title for title in ("Early November", "Late November", "Last Evening") if title in text})
        return found

    fake_sendgrid.reset()
    sent = site.run("send", "--as-of", "2026-11-30T08:30")
    assert sent.returncode == 0, sent.stderr
    assert titles("joiner@example.org") == [{"Late November"}]  # their first weekly window: Nov 23 to 30

    with site.serve() as base:
        token = make_token(settings_of(site), "joiner@example.org", "readers", "preferences")
        status, page = call(f"{base}/preferences?token={token}")
        assert status == 200
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page)[1].decode()
        assert call(f"{base}/preferences?token={token}", {"frequency": "monthly", "csrf": csrf})[0] == 200
    assert pg_rows(postgres_url, "SELECT frequency FROM frequencies WHERE address_key = 'joiner@example.org'") == [("monthly",)]

    fake_sendgrid.reset()
    sent = site.run("send", "--as-of", "2026-12-01T09:30")
    assert sent.returncode == 0, sent.stderr
    # The monthly issue covers November, but their own window starts where their weekly issue ended:
    # only what came after it, nothing twice, and the early article they joined after is not dug up.
    assert titles("joiner@example.org") == [{"Last Evening"}]
    assert titles("weekly@example.org") == []  # 2026-W49 went out already

    shown = json.loads(site.run("subscribers", "show", "joiner@example.org", "--json").stdout)
    assert [d["issue_key"] for d in shown["deliveries"]] == ["2026-W49", "2026-12"]
    assert shown["consents"][0]["list"] == "readers" and shown["choices"]["readers"]["frequency"] == "monthly"
    forgot = site.run("subscribers", "forget", "joiner@example.org")
    assert forgot.returncode == 0, forgot.stderr
    assert "1 consent" in forgot.stdout and "2 deliveries pseudonymized" in forgot.stdout and "1 frequency choice" in forgot.stdout
    assert pg_rows(postgres_url, "SELECT count(*) FROM consents") == [(0,)]
    assert pg_rows(postgres_url, "SELECT count(*) FROM forgotten") == [(1,)]
    assert pg_rows(postgres_url, "SELECT count(*) FROM deliveries WHERE lower(email) LIKE '%joiner%' OR subscriber_id LIKE '%joiner%'") == [(0,)]
    assert pg_rows(postgres_url, "SELECT count(*) FROM deliveries WHERE subscriber_id LIKE 'forgotten:%'") == [(2,)]  # counts stay true
    assert "joiner" not in readers(site).lower()
    after = json.loads(site.run("subscribers", "show", "joiner@example.org", "--json").stdout)
    assert after["forgotten_at"] and after["deliveries"] == [] and after["consents"] == []
    refused = site.run("subscribers", "add", "joiner@example.org")
    assert refused.returncode == 1 and "asked to be forgotten" in refused.stderr
