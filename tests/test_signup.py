"""Sign-up with double opt-in in digest serve's app (Starlette's test client;
the real process is in test_signup_e2e.py): the form, the confirmation
email (the outbox provider here), the signed confirm-only link, and what an
attacker would try against each step. Every test runs on both ledgers: a
SQLite file and a database on the real PostgreSQL server."""

from __future__ import annotations

import email
import json
import re
import threading
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from pages import check_page
from starlette.testclient import TestClient

from digest import consent, suppressions
from digest.ledger import Ledger, scheme_of
from digest.ledger.model import TABLES
from digest.listedits import add_subscriber
from digest.settings import load_settings
from digest.signup import SignupRequest, confirm, make_confirm_token, read_confirm_token
from digest.subscribers import load_subscribers
from digest.unsubscribe import TokenError, make_token
from digest.web import create_app

BASE = "http://127.0.0.1:8025"
TAGS = ["bees", "roses", "compost"]


@pytest.fixture
def settings(tmp_path, ledger_target):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text("email,name,tags\nada@example.org,Ada,roses\n", encoding="utf-8")
    return load_settings(
        secret_key="signup-test-secret-" + "q" * 24, public_url=BASE, subscribers=lists, ledger=ledger_target,
        outbox=tmp_path / "outbox", sources=[], provider="outbox", site_name="The Gazette",
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, known_tags=TAGS), client=("198.51.100.7", 50000)) as test_client:
        yield test_client


def form(address="new@example.org", **extra):
    return {"email": address, "name": "New Reader", "topic": ["bees"], "frequency": "daily", "website": "", **extra}


def mails(settings) -> list[email.message.EmailMessage]:
    """The confirmation and welcome messages the outbox holds, oldest first."""
    folder = Path(settings.outbox) / "signup"
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


def link_in(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"http://127\.0\.0\.1:8025(/confirm\?token=[\w.-]+)", text)[1]


def ledger_bytes(settings) -> bytes:
    """What the ledger holds, lower-cased: a SQLite file's bytes (its free
    pages and its -wal file too); on PostgreSQL, the text of every row of
    every table."""
    if scheme_of(settings.ledger):
        with Ledger(settings.ledger) as ledger:
            rows = [row for table in TABLES for page in ledger.table_rows(table) for row in page]
        return json.dumps(rows, default=str).encode().lower()
    wal = Path(f"{settings.ledger}-wal")
    return (Path(settings.ledger).read_bytes() + (wal.read_bytes() if wal.exists() else b"")).lower()


def on_list(settings) -> dict[str, object]:
    found, problems = load_subscribers(Path(settings.subscribers))
    assert problems == []
    return {s.email: s for s in found}


# The round trip -----------------------------------------------------------------------------------


def test_form_email_link_button_confirm_puts_the_reader_on_the_list_with_their_choices(client, settings):
    page = client.get("/subscribe")
    assert page.status_code == 200 and check_page(page.text) == []
    assert f'action="{BASE}/subscribe"' in page.text and 'value="compost"' in page.text

    answer = client.post("/subscribe", data=form())
    assert answer.status_code == 200 and "check your inbox" in answer.text.lower()
    assert check_page(answer.text) == []
    (message,) = mails(settings)
    assert message["To"] == "New Reader <new@example.org>"
    assert message["List-Unsubscribe"] is None and message["Precedence"] is None  # transactional, not list mail
    path = link_in(message)
    assert "new@example.org" not in on_list(settings)  # nothing before the click

    shown = client.get(path)
    assert shown.status_code == 200 and check_page(shown.text) == []
    assert f'<form method="post" action="{BASE}{path}">' in shown.text
    assert client.head(path).status_code in (200, 405)  # a scanner's HEAD adds nobody either
    assert "new@example.org" not in on_list(settings)

    done = client.post(path)
    assert done.status_code == 200 and check_page(done.text) == []
    reader = on_list(settings)["new@example.org"]
    assert (reader.name, reader.tags, reader.list_name) == ("New Reader", frozenset({"bees"}), "garden")
    assert suppressions.get_frequency(settings.ledger, "new@example.org", "garden") == "daily"
    (given,) = consent.consents_of(settings.ledger, "new@example.org")
    assert given.method == "double opt-in via form" and given.ip_address is None  # the IP only when the operator asks


def test_a_reused_link_adds_nobody_even_after_the_reader_left(client, settings):
    client.post("/subscribe", data=form())
    path = link_in(mails(settings)[0])
    assert client.post(path).status_code == 200
    from digest.listedits import remove_subscriber

    remove_subscriber(Path(settings.subscribers) / "garden.csv", "new@example.org")
    again = client.post(path)
    assert again.status_code == 400 and "used already" in again.text
    assert "new@example.org" not in on_list(settings)


def test_expired_altered_foreign_and_unsubscribe_tokens_add_nobody(client, settings):
    request = SignupRequest("new@example.org", "", frozenset(), "weekly", "garden", None)
    with mock.patch("itsdangerous.timed.time.time", return_value=1_000_000_000.0):  # 2001: long expired
        expired = make_confirm_token(settings, request)
    fresh = make_confirm_token(settings, request)
    other = load_settings(secret_key="another-secret-" + "w" * 30, public_url=BASE)
    payload, stamp, signature = fresh.split(".")
    tampered_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    wrong = [
        expired,
        f"{tampered_payload}.{stamp}.{signature}",
        f"{payload}.{stamp}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        make_confirm_token(other, request),
        make_token(settings, "new@example.org", "garden"),  # an unsubscribe token
        "", "x" * 5000, "%00", "eyJlIjoibmV3QGV4YW1wbGUub3JnIn0",
    ]
    for token in wrong:
        answer = client.post(f"/confirm?token={token}")
        assert answer.status_code == 400, token
        assert check_page(answer.text) == []
    assert "expired" in client.get(f"/confirm?token={expired}").text
    assert "new@example.org" not in on_list(settings)
    with pytest.raises(TokenError):
        read_confirm_token(settings, make_token(settings, "new@example.org", "garden"))
    # And the other way round: a confirmation token unsubscribes nobody.
    assert client.post(f"/unsubscribe?token={fresh}", content="List-Unsubscribe=One-Click").status_code == 400


def test_confirming_lifts_an_earlier_unsubscribe_and_changes_only_the_choices_of_a_reader_on_the_list(client, settings):
    suppressions.add(settings.ledger, "ada@example.org", "unsubscribed", "one-click", "garden")
    suppressions.add(settings.ledger, "ada@example.org", "bounced", "sendgrid:bounce")  # not lifted: not the reader's choice
    before = (Path(settings.subscribers) / "garden.csv").read_bytes()
    client.post("/subscribe", data=form("ADA@example.org", topic=["compost"], frequency="monthly"))
    assert client.post(link_in(mails(settings)[0])).status_code == 200
    assert (Path(settings.subscribers) / "garden.csv").read_bytes() == before  # already there: the row stays
    assert suppressions.get_preferences(settings.ledger, "ada@example.org", "garden") == {"compost"}
    assert suppressions.get_frequency(settings.ledger, "ada@example.org", "garden") == "monthly"
    left = suppressions.list_suppressions(settings.ledger)
    assert [(s.reason, s.list_name) for s in left] == [("bounced", None)]


def test_concurrent_confirmations_and_list_edits_lose_nobody(settings):
    tokens = [
        make_confirm_token(settings, SignupRequest(f"r{n}@example.org", f"R {n}", frozenset(), "weekly", "garden", None)) for n in range(20)
    ]
    barrier = threading.Barrier(len(tokens) + 5)
    errors = []

    def confirm_one(token):
        barrier.wait()
        confirm(settings, token)

    def operator_adds(n):
        barrier.wait()
        add_subscriber(Path(settings.subscribers) / "garden.csv", f"op{n}@example.org")

    threads = [threading.Thread(target=confirm_one, args=(t,)) for t in tokens]
    threads += [threading.Thread(target=operator_adds, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    expected = {"ada@example.org"} | {f"r{n}@example.org" for n in range(20)} | {f"op{n}@example.org" for n in range(5)}
    assert set(on_list(settings)) == expected
    # The same token confirmed by two posts at once: one wins, the other is refused.
    token = make_confirm_token(settings, SignupRequest("twice@example.org", "", frozenset(), "weekly", "garden", None))
    outcomes = []
    barrier = threading.Barrier(2)

    def race():
        barrier.wait()
        try:
            confirm(settings, token)
            outcomes.append("ok")
        except TokenError:
            outcomes.append("refused")

    pair = [threading.Thread(target=race) for _ in range(2)]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["ok", "refused"]


# What a stranger learns and can do ----------------------------------------------------------------


def test_the_answer_is_the_same_for_a_subscriber_and_a_stranger_and_one_email_an_hour(client, settings):
    known = client.post("/subscribe", data=form("ada@example.org"))
    unknown = client.post("/subscribe", data=form("nobody@example.org"))
    assert known.content == unknown.content
    assert {k: v for k, v in known.headers.items() if k != "date"} == {k: v for k, v in unknown.headers.items() if k != "date"}
    for _ in range(10):
        assert client.post("/subscribe", data=form("nobody@example.org")).content == unknown.content
    assert sorted(m["To"].addresses[0].addr_spec for m in mails(settings)) == ["ada@example.org", "nobody@example.org"]
    later = consent.claim_signup_email  # an hour later one more may go
    hashed = consent.address_hash(settings.secret_key.get_secret_value(), "nobody@example.org")
    from datetime import UTC, datetime

    assert later(settings.ledger, hashed, now=datetime.now(UTC) + timedelta(minutes=61))


def test_the_throttle_keeps_no_address_of_people_who_never_confirmed(client, settings):
    client.post("/subscribe", data=form("secret-person@example.org"))
    assert consent.signup_pending(settings.ledger, consent.address_hash(settings.secret_key.get_secret_value(), "secret-person@example.org"))
    assert b"secret-person" not in ledger_bytes(settings)


def test_the_honeypot_drops_bots_with_the_same_answer(client, settings):
    human = client.post("/subscribe", data=form("human@example.org"))
    bot = client.post("/subscribe", data=form("bot@example.org", website="http://spam.example"))
    assert bot.status_code == 200 and bot.content == human.content
    assert [m["To"].addresses[0].addr_spec for m in mails(settings)] == ["human@example.org"]


def test_one_client_address_is_rate_limited(settings):
    limited = settings.model_copy(update={"signup_client_limit": 5})
    with TestClient(create_app(limited, known_tags=TAGS), client=("203.0.113.9", 1)) as one, TestClient(
        create_app(limited, known_tags=TAGS), client=("203.0.113.10", 1)
    ):
        answers = [one.post("/subscribe", data=form(f"r{n}@example.org")).status_code for n in range(8)]
    assert answers == [200] * 5 + [429] * 3
    assert len(mails(settings)) == 5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (form("not an address"), "email"),
        (form(""), "email"),
        (form("ünïcode@example.org"), "email"),
        (form("a@example.org", name="x" * 201), "name"),
        (form("a@example.org", name="Eve\r\nBcc: victim@example.org"), None),  # one line once spaces are folded: taken
        (form("a@example.org", topic=["bees", "not-a-topic"]), "topic"),
        (form("a@example.org", frequency="hourly"), "frequency"),
        ({**form("a@example.org"), "email": ["a@example.org", "b@example.org"]}, "email"),
    ],
)
def test_bad_forms_come_back_with_the_field_named_and_nothing_sent(client, settings, data, field):
    answer = client.post("/subscribe", data=data)
    if field is None:
        assert answer.status_code == 200
        (message,) = mails(settings)
        assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.org" and message["Bcc"] is None
        return
    assert answer.status_code == 400 and f"{field}:" in answer.text
    assert check_page(answer.text) == []
    assert mails(settings) == []


def test_what_a_form_echoes_is_escaped(client, settings):
    script = '"><script>alert(1)</script>'
    answer = client.post("/subscribe", data=form(script, name=script))
    assert answer.status_code == 400
    assert "<script>" not in answer.text and "&lt;script&gt;" in answer.text
    assert check_page(answer.text) == []


def test_huge_bodies_other_encodings_and_methods_are_refused(client, settings):
    assert client.post("/subscribe", content=b"email=" + b"a" * 20_000, headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
    assert client.post("/subscribe", content=json.dumps(form()), headers={"content-type": "application/json"}).status_code == 415
    assert client.put("/subscribe", data=form()).status_code == 405
    assert client.delete("/confirm").status_code == 405
    assert mails(settings) == []


def test_a_forged_host_header_changes_no_link(client, settings):
    page = client.get("/subscribe", headers={"host": "evil.example"})
    assert "evil.example" not in page.text and f'action="{BASE}/subscribe"' in page.text
    client.post("/subscribe", data=form(), headers={"host": "evil.example"})
    path = link_in(mails(settings)[0])  # the emailed link is public_url's
    assert "evil.example" not in client.get(path, headers={"host": "evil.example"}).text


def test_every_signup_page_and_the_snippet_are_valid_and_labelled(client, settings):
    from digest.signup import signup_form

    snippet = str(signup_form(settings, TAGS))
    assert check_page(f"<!doctype html><html lang=en><title>t</title>{snippet}</html>") == []
    assert "<script" not in snippet and f'<form method="post" action="{BASE}/subscribe">' in snippet
    token, choices = make_token(settings, "ada@example.org", "garden"), make_token(settings, "ada@example.org", "garden", "preferences")
    for path in ("/subscribe", f"/preferences?token={choices}", f"/unsubscribe?token={token}", f"/forget?token={choices}", "/confirm?token=bad"):
        page = client.get(path)
        assert check_page(page.text) == [], path


def test_welcome_message_links_the_latest_issue_and_carries_unsubscribe(settings):
    from datetime import UTC, datetime

    with Ledger(settings.ledger) as ledger:  # an issue that went out, and one whose page was never kept
        ledger.create_issue("2026-W48", datetime(2026, 11, 16, 8, tzinfo=UTC), datetime(2026, 11, 23, 8, tzinfo=UTC), ["a"])
        ledger.keep_page("2026-W48", "Issue 48", "", "<html></html>")
        ledger.create_issue("special", datetime(2026, 11, 23, 8, tzinfo=UTC), datetime(2026, 11, 24, 8, tzinfo=UTC), ["b"])
    welcoming = settings.model_copy(update={"welcome_message": True, "consent_record_ip": True})
    with TestClient(create_app(welcoming, known_tags=TAGS), client=("198.51.100.7", 1)) as client:
        client.post("/subscribe", data=form())
        assert client.post(link_in(mails(settings)[0])).status_code == 200
    confirmation, welcome = mails(settings)
    assert welcome["Subject"] == "Welcome to The Gazette"
    text = welcome.get_body(("plain",)).get_content()
    assert "https://example.org/archive/2026-W48.html" in text
    assert welcome["List-Unsubscribe"].startswith(f"<{BASE}/unsubscribe?token=")
    (given,) = consent.consents_of(settings.ledger, "new@example.org")
    assert given.ip_address == "198.51.100.7"


def test_preferences_save_a_frequency_and_offer_erasure_with_a_confirmation_step(client, settings):
    token = make_token(settings, "ada@example.org", "garden", "preferences")
    page = client.get(f"/preferences?token={token}")
    assert 'value="weekly" checked' in page.text and f"{BASE}/forget?token={token}" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    client.post(f"/preferences?token={token}", data={"tag": ["roses"], "frequency": "daily", "csrf": csrf})
    assert suppressions.get_frequency(settings.ledger, "ada@example.org", "garden") == "daily"
    assert 'value="daily" checked' in client.get(f"/preferences?token={token}").text

    step = client.get(f"/forget?token={token}")
    assert step.status_code == 200 and "Delete everything about me" in step.text
    assert "ada@example.org" in on_list(settings)  # a GET deletes nothing
    assert client.post(f"/forget?token={token[:-2]}xx").status_code == 400
    # The preferences token is in every email, forwarded copies too: alone, or with
    # another page's form token, it erases nobody.
    assert client.post(f"/forget?token={token}").status_code in (403, 415)
    assert client.post(f"/forget?token={token}", data={"csrf": csrf}).status_code == 403
    assert client.post(f"/forget?token={token}", data={"csrf": "forged"}).status_code == 403
    assert "ada@example.org" in on_list(settings)
    erase = re.search(r'name="csrf" value="([^"]+)"', step.text)[1]
    done = client.post(f"/forget?token={token}", data={"csrf": erase})
    assert done.status_code == 200 and check_page(done.text) == []
    assert "ada@example.org" not in on_list(settings)
    assert len(consent.forgotten_hashes(settings.ledger)) == 1
    assert b"ada@example.org" not in ledger_bytes(settings)


def test_after_erasure_old_links_and_late_webhook_reports_do_not_write_the_address_back(client, settings):
    from digest.privacy import forget

    token, choices = make_token(settings, "ada@example.org", "garden"), make_token(settings, "ada@example.org", "garden", "preferences")
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/preferences?token={choices}").text)[1]
    forget(settings, "ada@example.org")
    for answer in (
        client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}),
        client.post(f"/preferences?token={choices}", data={"tag": ["roses"], "frequency": "daily", "csrf": csrf}),
        client.get(f"/preferences?token={choices}"),
    ):
        assert answer.status_code == 200 and "deleted on request" in answer.text
    bounce = [{"event": "bounce", "email": "Ada@example.org", "type": "bounce", "reason": "gone"}]
    unsigned = settings.model_copy(update={"webhook_allow_unsigned": True})
    with TestClient(create_app(unsigned, known_tags=TAGS)) as webhook:
        assert webhook.post("/webhooks/sendgrid", json=bounce).json()["suppressions"] == 0
    assert b"ada@example.org" not in ledger_bytes(settings)


def test_sign_up_is_closed_with_503_when_no_list_can_be_chosen(settings):
    (Path(settings.subscribers) / "kitchen.csv").write_text("email,name,tags\n", encoding="utf-8")
    from digest.web import serve_warnings

    assert any("signup_list" in line for line in serve_warnings(settings))
    with TestClient(create_app(settings, known_tags=TAGS)) as client:
        answer = client.post("/subscribe", data=form())
        assert answer.status_code == 503 and check_page(answer.text) == []
    chosen = settings.model_copy(update={"signup_list": "kitchen"})
    with TestClient(create_app(chosen, known_tags=TAGS)) as client:
        client.post("/subscribe", data=form())
        assert client.post(link_in(mails(settings)[0])).status_code == 200
    assert "new@example.org" in (Path(settings.subscribers) / "kitchen.csv").read_text()


def test_a_confirmation_the_provider_did_not_take_frees_the_hour(settings, start_fake_sendgrid, caplog):
    from conftest import SENDGRID_KEY

    server = start_fake_sendgrid(fail_first=1)
    sending = settings.model_copy(update={"provider": "sendgrid", "sendgrid_host": server.url, "sendgrid_max_tries": 1,
                                          "sendgrid_api_key": load_settings(sendgrid_api_key=SENDGRID_KEY).sendgrid_api_key})
    with TestClient(create_app(sending, known_tags=TAGS)) as client:
        first = client.post("/subscribe", data=form("retry@example.org"))
        assert server.records() == []
        assert "retry@example.org" not in caplog.text and "not accepted by sendgrid" in caplog.text
        second = client.post("/subscribe", data=form("retry@example.org"))
    assert first.content == second.content
    assert [r["to"] for r in server.records()] == ["retry@example.org"]


def test_topics_may_also_come_as_tag_or_a_semicolon_list(client, settings):
    data = {"email": "alias@example.org", "tag": "Roses", "tags": "bees; compost", "frequency": "weekly"}
    assert client.post("/subscribe", data=data).status_code == 200
    assert client.post(link_in(mails(settings)[0])).status_code == 200
    assert on_list(settings)["alias@example.org"].tags == {"roses", "bees", "compost"}


def test_confirmations_during_an_import_that_writes_the_ledger_lose_nobody_and_wait_on_nobody(settings, tmp_path):
    from digest.listedits import import_subscribers

    export = tmp_path / "export.csv"
    rows = [f"imp{n}@example.org,,,subscribed" for n in range(30)] + ["gone@example.org,,,unsubscribed"]
    export.write_text("email,name,tags,status\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tokens = [make_confirm_token(settings, SignupRequest(f"c{n}@example.org", "", frozenset(), "daily", "garden", None)) for n in range(10)]
    barrier = threading.Barrier(len(tokens) + 1)
    failures = []

    def run(job):
        barrier.wait()
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            failures.append(exc)

    jobs = [lambda t=t: confirm(settings, t) for t in tokens]
    jobs.append(lambda: import_subscribers(Path(settings.subscribers) / "garden.csv", export, ledger=settings.ledger))
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    people = set(on_list(settings))
    assert {f"c{n}@example.org" for n in range(10)} | {f"imp{n}@example.org" for n in range(30)} <= people
    assert suppressions.is_suppressed(settings.ledger, "gone@example.org", "garden") is not None


def test_a_confirmation_link_outlives_a_secret_rotation_only_while_the_old_key_is_listed(settings):
    request = SignupRequest("rotate@example.org", "Ro", frozenset({"soil"}), "daily", "garden", None)
    token = make_confirm_token(settings, request)
    new_key = "rotated-" + "k7Qz" * 10
    rotated = load_settings(secret_key=new_key, previous_secret_keys=[settings.secret_key.get_secret_value()], public_url=BASE)
    read = read_confirm_token(rotated, token)
    assert (read.email, read.frequency, read.tags) == ("rotate@example.org", "daily", frozenset({"soil"}))
    with pytest.raises(TokenError):
        read_confirm_token(load_settings(secret_key=new_key, public_url=BASE), token)
