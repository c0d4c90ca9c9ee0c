"""Suppressions and preferences in a real SQLite file, beside the ledger's tables."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from digest import suppressions
from digest.ledger import Ledger


@pytest.fixture
def db(tmp_path):
    return tmp_path / "digest.db"


def test_an_address_is_suppressed_whatever_its_case_and_spaces(db):
    assert suppressions.add(db, "Ada.Lovelace@Example.org", "bounced", "sendgrid:bounce")
    found = suppressions.is_suppressed(db, "  ada.lovelace@EXAMPLE.ORG ")
    assert found is not None
    assert (found.address, found.reason, found.source, found.list_name) == (
        "Ada.Lovelace@Example.org",
        "bounced",
        "sendgrid:bounce",
        None,
    )
    assert found.created_at.tzinfo is not None
    assert suppressions.is_suppressed(db, "grace@example.org") is None


def test_a_list_unsubscribe_stops_that_list_and_a_global_one_every_list(db):
    suppressions.add(db, "ada@example.org", "unsubscribed", "one-click", "garden")
    suppressions.add(db, "bob@example.org", "spam-report", "sendgrid:spamreport")
    assert suppressions.is_suppressed(db, "ada@example.org", "garden")
    assert suppressions.is_suppressed(db, "ada@example.org", "kitchen") is None
    assert suppressions.is_suppressed(db, "bob@example.org", "garden")
    assert suppressions.is_suppressed(db, "bob@example.org", "kitchen")
    assert set(suppressions.suppressed_keys(db, "garden")) == {"ada@example.org", "bob@example.org"}
    assert set(suppressions.suppressed_keys(db, "kitchen")) == {"bob@example.org"}
    assert [s.address for s in suppressions.list_suppressions(db, "kitchen")] == ["bob@example.org"]
    assert len(suppressions.list_suppressions(db)) == 2


def test_repeating_a_suppression_is_harmless_and_keeps_the_first(db):
    first = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert suppressions.add(db, "ada@example.org", "unsubscribed", "one-click", "garden", at=first)
    assert not suppressions.add(db, "ADA@example.org", "manual", "cli", "garden")
    (only,) = suppressions.list_suppressions(db)
    assert (only.reason, only.created_at) == ("unsubscribed", first)


def test_remove_lifts_one_list_or_every_suppression_of_an_address(db):
    suppressions.add(db, "ada@example.org", "unsubscribed", "one-click", "garden")
    suppressions.add(db, "ada@example.org", "unsubscribed", "one-click", "kitchen")
    suppressions.add(db, "ada@example.org", "bounced", "sendgrid:bounce")
    assert suppressions.remove(db, "Ada@Example.org", "garden") == 1
    assert suppressions.is_suppressed(db, "ada@example.org", "kitchen")
    assert suppressions.remove(db, "ada@example.org") == 2
    assert suppressions.list_suppressions(db) == []
    assert suppressions.remove(db, "ada@example.org") == 0


def test_unknown_reasons_and_empty_addresses_are_refused(db):
    with pytest.raises(ValueError, match="reason must be one of"):
        suppressions.add(db, "ada@example.org", "annoyed", "cli")
    with pytest.raises(ValueError, match="empty address"):
        suppressions.add(db, "   ", "manual", "cli")


def test_writes_on_one_connection_are_all_or_nothing(db):
    with pytest.raises(RuntimeError):
        with suppressions.connect(db) as conn:
            suppressions.add(conn, "ada@example.org", "bounced", "sendgrid:bounce")
            suppressions.add(conn, "bob@example.org", "bounced", "sendgrid:bounce")
            raise RuntimeError("the batch broke half-way")
    conn.close()
    assert suppressions.list_suppressions(db) == []


def test_add_many_records_a_batch_all_or_nothing_and_counts_the_new_rows(db):
    batch = [("ada@example.org", "unsubscribed", "garden"), ("bob@example.org", "bounced", None)]
    assert suppressions.add_many(db, batch, "import export.csv") == 2
    assert suppressions.add_many(db, [*batch, ("cy@example.org", "bounced", None)], "import again.csv") == 1
    with pytest.raises(ValueError, match="reason must be one of"):
        suppressions.add_many(db, [("dee@example.org", "bounced", None), ("eve@example.org", "gone", None)], "x")
    assert [(s.address, s.source, s.list_name) for s in suppressions.list_suppressions(db)] == [
        ("ada@example.org", "import export.csv", "garden"),
        ("bob@example.org", "import export.csv", None),
        ("cy@example.org", "import again.csv", None),
    ]


def test_preferences_are_stored_per_list_and_replaced(db):
    assert suppressions.get_preferences(db, "ada@example.org", "garden") is None
    suppressions.set_preferences(db, "Ada@example.org", "garden", ["roses", "compost", "roses"])
    suppressions.set_preferences(db, "ada@example.org", "kitchen", ["bread"])
    assert suppressions.get_preferences(db, "ADA@example.org", "garden") == {"roses", "compost"}
    suppressions.set_preferences(db, "ada@example.org", "garden", [])
    assert suppressions.get_preferences(db, "ada@example.org", "garden") == frozenset()
    assert suppressions.all_preferences(db, "kitchen") == {"ada@example.org": {"bread"}}


def test_the_file_is_shared_with_the_ledger_in_wal_mode(db):
    suppressions.add(db, "ada@example.org", "manual", "cli")
    with Ledger(db) as ledger:  # the ledger creates its own tables beside ours
        assert ledger.issues() == []
    suppressions.add(db, "bob@example.org", "manual", "cli")
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    assert {"suppressions", "preferences", "issues", "deliveries"} <= tables
    assert len(suppressions.list_suppressions(db)) == 2


def test_the_suppressions_commands(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from digest.cli import cli

    monkeypatch.chdir(tmp_path)
    ledger = str(tmp_path / "state.db")

    def run(*args: str):
        return CliRunner().invoke(cli, ["suppressions", *args, "--ledger", ledger], catch_exceptions=False)

    assert run("list").stdout == "" and not (tmp_path / "state.db").exists()  # listing creates nothing
    assert "suppressed Ada@example.org (manual, every list)" in run("add", " Ada@EXAMPLE.org").stdout
    assert "already suppressed" in run("add", "ada@example.org").stdout
    assert run("add", "bob@example.org", "--reason", "unsubscribed", "--list", "garden").exit_code == 0
    bad = run("add", "not-an-address")
    assert bad.exit_code == 1 and "invalid address" in bad.output
    listed = run("list").stdout.splitlines()
    assert [line.split("\t")[:4] for line in listed] == [
        ["Ada@example.org", "manual", "cli", "(every list)"],
        ["bob@example.org", "unsubscribed", "cli", "garden"],
    ]
    assert run("remove", "ADA@example.org").exit_code == 0
    missing = run("remove", "ada@example.org")
    assert missing.exit_code == 1 and "is not suppressed" in missing.output
    assert [s.address for s in suppressions.list_suppressions(ledger)] == ["bob@example.org"]


def test_planning_reads_only_keys_then_the_suppressions_of_those_on_the_list(tmp_path):
    db = tmp_path / "digest.db"
    suppressions.add_many(db, ((f"left{n}@example.net", "unsubscribed", None) for n in range(3000)), "bulk")
    suppressions.add(db, "Ada@example.org", "bounced", "sendgrid:bounce", at=datetime(2026, 11, 1, tzinfo=UTC))
    suppressions.add(db, "ada@example.org", "unsubscribed", "one-click", "garden", at=datetime(2026, 11, 2, tzinfo=UTC))  # later, same reader
    suppressions.add(db, "cy@example.org", "unsubscribed", "one-click", "kitchen")  # another list
    keys = suppressions.suppressed_key_set(db, "garden")
    assert len(keys) == 3001 and "ada@example.org" in keys and "cy@example.org" not in keys
    found = suppressions.suppressions_for(db, "garden", ["ada@example.org", "bob@example.org", *(f"left{n}@example.net" for n in range(600))])
    assert found["ada@example.org"].reason == "bounced"  # the oldest, as suppressed_keys gives
    assert "bob@example.org" not in found and len(found) == 601
    assert found == {k: v for k, v in suppressions.suppressed_keys(db, "garden").items() if k in found}
