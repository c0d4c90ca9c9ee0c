"""Moving to PostgreSQL: `digest ledger migrate --to URL` copies a SQLite
ledger with its history (issues, deliveries, suppressions, preferences,
events, archive pages, consent and erasure records), and `digest status`,
`digest archive` and `digest subscribers show` then print the same from
either. The real command, a real send to the stand-in, a real PostgreSQL
database. And a ledger of schema version 5 (with or without the tables an
older consent.py made itself) migrates to 6 keeping every row."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from conftest import SENDGRID_KEY, WEEK48

from digest import consent, suppressions
from digest.ledger import SCHEMA_VERSION, Ledger, record_events, scheme_of
from digest.ledger.model import TABLES

CONSENT_TABLES = ("consents", "signup_sends", "used_confirmations", "forgotten")


def test_migrate_copies_the_history_and_status_and_archive_read_the_same(make_site, fake_sendgrid, postgres_url):
    site = make_site(readers=30)
    env = {"sendgrid_api_key": SENDGRID_KEY, "sendgrid_host": fake_sendgrid.url}
    assert site.run("send", "--as-of", WEEK48, **env).returncode == 0
    assert site.run("send", "--as-of", WEEK48, "--issue", "special", "--include-sent", **env).returncode == 0
    ledger_file = site.root / "digest.db"
    suppressions.add(ledger_file, "reader3@example.org", "bounced", "sendgrid:bounce")
    suppressions.set_preferences(ledger_file, "reader4@example.org", "readers", ["news"])
    with suppressions.transaction(ledger_file) as db:
        event = SimpleNamespace(issue_key="2026-W48", subscriber_id="reader3@example.org", event="bounce", event_id="e1",
                                detail="550 gone", occurred_at=datetime(2026, 11, 23, 9, tzinfo=UTC))
        assert record_events(db, [event]) == 1
    write_consent_records(ledger_file)

    done = site.run("ledger", "migrate", "--to", postgres_url)
    assert done.returncode == 0, done.stderr
    assert "2 issues, 60 deliveries" in done.stdout and "1 events" in done.stdout and "1 suppressions" in done.stdout

    # Every table holds the same rows in both.
    with Ledger(ledger_file) as old, Ledger(postgres_url) as new:
        for table in TABLES:
            assert [r for page in new.table_rows(table) for r in page] == [r for page in old.table_rows(table) for r in page], table
        assert all(next(old.table_rows(table), None) for table in CONSENT_TABLES)  # each held a row to compare

    for command in (("status",), ("status", "--json"), ("status", "--issue", "2026-W48"),
                    ("subscribers", "show", "reader5@example.org", "--json"), ("subscribers", "show", "gone@example.org", "--json")):
        from_file = site.run(*command, ledger=ledger_file)
        from_server = site.run(*command, ledger=postgres_url)
        assert from_file.returncode == from_server.returncode == 0
        assert from_file.stdout == from_server.stdout and from_file.stdout
    assert len(json.loads(site.run("status", "--json", ledger=postgres_url).stdout)["issues"]) == 2
    shown = json.loads(site.run("subscribers", "show", "reader5@example.org", "--json", ledger=postgres_url).stdout)
    assert shown["consents"][0]["list"] == "readers" and [d["issue_key"] for d in shown["deliveries"]] == ["2026-W48", "special"]
    assert json.loads(site.run("subscribers", "show", "gone@example.org", "--json", ledger=postgres_url).stdout)["forgotten_at"]

    for name, target in (("from-file", ledger_file), ("from-server", postgres_url)):
        done = site.run("archive", name, ledger=target)
        assert done.returncode == 0, done.stderr
    pages = sorted(p.relative_to(site.root / "from-file") for p in (site.root / "from-file").rglob("*") if p.is_file())
    assert pages and pages == sorted(p.relative_to(site.root / "from-server") for p in (site.root / "from-server").rglob("*") if p.is_file())
    for page in pages:
        assert (site.root / "from-file" / page).read_bytes() == (site.root / "from-server" / page).read_bytes(), page

    # A new issue on the server numbers its rows after the copied ones, and the server suppressions hold.
    assert site.run("send", "--as-of", WEEK48, "--issue", "after", "--include-sent", ledger=postgres_url, **env).returncode == 0
    status = json.loads(site.run("status", "--json", "--issue", "after", ledger=postgres_url).stdout)["issues"][0]
    assert status["counts"] == {"accepted": 29}  # reader3 bounced: suppressed


def test_migrate_refuses_a_ledger_in_use_and_names_the_problem(make_site, fake_sendgrid, postgres_url):
    site = make_site(readers=5)
    assert site.run("send", "--as-of", WEEK48, sendgrid_api_key=SENDGRID_KEY, sendgrid_host=fake_sendgrid.url).returncode == 0
    assert site.run("ledger", "migrate", "--to", postgres_url).returncode == 0
    again = site.run("ledger", "migrate", "--to", postgres_url)
    assert again.returncode == 2 and "copy only into an empty ledger" in again.stderr
    assert again.stderr.startswith("error: --to ") and again.stderr.count("\n") == 1
    missing = site.run("ledger", "migrate", "--ledger", "nowhere.db", "--to", postgres_url)
    assert missing.returncode == 2 and "--ledger: no ledger file at nowhere.db" in missing.stderr
    secret = postgres_url.replace("postgres@", "postgres:hunter2secret@").rsplit("/", 1)[0] + "/no_such_db"
    refused = site.run("ledger", "migrate", "--to", secret)
    assert refused.returncode == 2 and "hunter2secret" not in refused.stderr + refused.stdout and "no_such_db" in refused.stderr
    assert refused.stderr.startswith("error: --to: ") and refused.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("--to", "mysql://x/y"), "--to 'mysql://x/y': not a PostgreSQL ledger; give postgresql://user@host/dbname"),
        (("--to", "mysql://root:hunter2secret@db/y"), "--to 'mysql://root@db/y': not a PostgreSQL ledger"),
        (("--to", "digest.db"), "--to 'digest.db': not a PostgreSQL ledger"),
        (("--to", ""), "--to '': not a PostgreSQL ledger"),
        (("--ledger", "nowhere.db", "--to", "postgresql://x@127.0.0.1:1/y"), "--ledger: no ledger file at nowhere.db"),
        (("--ledger", "readers.csv", "--to", "postgresql://x@127.0.0.1:1/y"), "--ledger: the ledger readers.csv is not a digest ledger"),
        (("--ledger", "posts", "--to", "postgresql://x@127.0.0.1:1/y"), "--ledger: no ledger file at posts"),
        (("--ledger", "postgresql://x:hunter2secret@h/y", "--to", "postgresql://x@127.0.0.1:1/y"), "--ledger: no ledger file at postgresql://x@h/y"),
    ],
)
def test_migrate_answers_a_wrong_source_or_target_with_one_line_and_exit_2(make_site, arguments, named):
    site = make_site(readers=1)
    done = site.run("ledger", "migrate", *arguments)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {named}" + done.stderr.removeprefix(f"error: {named}")
    assert done.stderr.count("\n") == 1 and "hunter2secret" not in done.stderr + done.stdout
    assert not done.stdout


def test_migrate_to_a_server_that_does_not_answer_is_a_wrong_target(make_site, tmp_path):
    """Nothing listens on the port (bound, never listening): refused at once."""
    import socket

    site = make_site(readers=1)
    (site.root / "digest.db").touch()  # the source must pass first
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        for url in (f"postgresql://digest:hunter2secret@127.0.0.1:{port}/digest", "postgresql://digest:hunter2secret@127.0.0.1:notaport/digest"):
            done = site.run("ledger", "migrate", "--to", url)
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("error: --to: ") and "postgresql://digest@127.0.0.1:" in done.stderr, done.stderr
            assert ("cannot connect to the ledger" if "notaport" not in url else "is not a valid postgresql:// URL") in done.stderr
            assert done.stderr.count("\n") == 1 and "hunter2secret" not in done.stderr + done.stdout


def write_consent_records(ledger) -> None:
    """A row in each of the consent tables of ``ledger``, the way sign-up
    and erasure write them."""
    secret = "issue-3-tests-signing-secret-7c1e9a04b6d2f853"  # the sites' secret_key: show finds the erasure by it
    assert consent.claim_signup_email(ledger, consent.address_hash(secret, "pending@example.org"))
    with consent.write_transaction(ledger) as db:
        assert consent.use_confirmation(db, "a-confirmation-token", keep_for=timedelta(hours=48))
        consent.record_consent(db, "reader5@example.org", "readers", requested_at=datetime(2026, 11, 20, 9, tzinfo=UTC))
        consent.erase(db, "gone@example.org", consent.address_hash(secret, "gone@example.org"))


def consent_rows(ledger) -> dict[str, list[dict]]:
    with Ledger(ledger) as opened:
        return {table: [row for page in opened.table_rows(table) for row in page] for table in CONSENT_TABLES}


def make_version_5(target, *, keep_consent_tables: bool) -> None:
    """Turn the new ledger at ``target`` into what digest wrote at schema
    version 5: the version number back, and the consent tables either gone
    or left as an older consent.py made them itself."""
    if scheme_of(target):
        import psycopg

        with psycopg.connect(str(target)) as db:
            db.execute("UPDATE digest_schema SET version = 5")
            if not keep_consent_tables:
                for table in CONSENT_TABLES:
                    db.execute(f"DROP TABLE {table}")
        return
    with closing(sqlite3.connect(target)) as db:
        db.execute("PRAGMA user_version = 5")
        if not keep_consent_tables:
            for table in CONSENT_TABLES:
                db.execute(f"DROP TABLE {table}")
        db.commit()


@pytest.mark.parametrize("keep_consent_tables", [True, False], ids=["consent-tables-made-by-consent.py", "no-consent-tables"])
def test_a_version_5_ledger_migrates_to_6_keeping_its_rows(ledger_target, keep_consent_tables):
    with Ledger(ledger_target) as ledger:
        ledger.create_issue("2026-W48", datetime(2026, 11, 16, 8, tzinfo=UTC), datetime(2026, 11, 23, 8, tzinfo=UTC), ["a"])
    suppressions.add(ledger_target, "bounced@example.org", "bounced", "sendgrid:bounce")
    write_consent_records(ledger_target)
    before = consent_rows(ledger_target)
    make_version_5(ledger_target, keep_consent_tables=keep_consent_tables)

    with Ledger(ledger_target) as ledger:  # opening migrates
        assert [issue.key for issue in ledger.issues()] == ["2026-W48"]
    if scheme_of(ledger_target):
        import psycopg

        with psycopg.connect(str(ledger_target)) as db:
            assert db.execute("SELECT version FROM digest_schema").fetchone()[0] == SCHEMA_VERSION == 6
    else:
        with closing(sqlite3.connect(ledger_target)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert suppressions.is_suppressed(ledger_target, "bounced@example.org") is not None
    after = consent_rows(ledger_target)
    assert after == (before if keep_consent_tables else {table: [] for table in CONSENT_TABLES})
    if not keep_consent_tables:
        write_consent_records(ledger_target)  # the tables the migration made take rows
    assert consent.consents_of(ledger_target, "reader5@example.org")[0].list_name == "readers"
