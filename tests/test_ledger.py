"""The ledger: the same tests on a real SQLite file and a real PostgreSQL
database (each test its own); real processes for crashes and the run lock
of a file."""

import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SENDGRID_KEY

from digest.errors import DigestError, LedgerBusyError, SettingsError
from digest.ledger import SCHEMA_VERSION, DeliveryStatus, Ledger, postgresql
from digest.recipients import Recipient, RecipientResult, Status

REPO = Path(__file__).resolve().parents[1]
END = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
START = END - timedelta(days=7)


def person(n: int, list_name: str = "main") -> Recipient:
    email = f"reader{n}@example.org"
    return Recipient(email=email, name=f"Reader {n}", subscriber_id=email, list_name=list_name,
                     unsubscribe_url=f"https://example.org/u/{n}")


@pytest.fixture
def ledger(ledger_target):
    with Ledger(ledger_target) as opened:
        opened.create_issue("2026-W48", START, END, ["a1", "a2"], scheduled_at=END)
        yield opened


@pytest.fixture
def file_ledger(tmp_path):
    with Ledger(tmp_path / "digest.db") as opened:
        opened.create_issue("2026-W48", START, END, ["a1", "a2"], scheduled_at=END)
        yield opened


@contextmanager
def other_connection(ledger: Ledger):
    """What another process sees: only committed data."""
    if ledger.exclusive:
        with closing(sqlite3.connect(ledger.path)) as db:
            yield db
        return
    with closing(postgresql.Connection(ledger.url)) as db:
        yield db


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_new_ledger_file_has_the_schema_in_wal_mode_and_keeps_data_across_opens(tmp_path):
    path = tmp_path / "digest.db"
    with Ledger(path) as ledger:
        ledger.create_issue("2026-W48", START, END, ["a1"])
        ledger.enqueue("2026-W48", [(person(1), "v1")])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    with Ledger(path) as again:
        assert again.get_issue("2026-W48").article_ids == ("a1",)
        assert again.counts("2026-W48")[DeliveryStatus.QUEUED] == 1


def test_a_file_that_is_not_a_ledger_or_is_from_a_newer_digest_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DigestError, match="junk.db is not a digest ledger"):
        Ledger(junk)
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(DigestError, match="newer than this digest knows"):
        Ledger(newer)


def test_create_issue_twice_is_a_resume_keeping_the_first_articles_and_window(ledger):
    again = ledger.create_issue("2026-W48", START + timedelta(days=1), END, ["other"])
    assert again.article_ids == ("a1", "a2")
    assert again.window_start == START and again.scheduled_at == END
    assert [issue.key for issue in ledger.issues()] == ["2026-W48"]
    assert ledger.get_issue("2026-W49") is None


def test_enqueue_writes_every_row_in_one_transaction_or_none(ledger):
    def entries():
        for n in range(10):
            if n == 7:
                raise RuntimeError("the audience failed to load half-way")
            yield person(n), "v1"

    with pytest.raises(RuntimeError):
        ledger.enqueue("2026-W48", entries())
    assert ledger.counts("2026-W48")[DeliveryStatus.QUEUED] == 0
    assert ledger.enqueue("2026-W48", ((person(n), "v1") for n in range(10))) == 10
    with other_connection(ledger) as db:
        assert db.execute("SELECT count(*) FROM deliveries WHERE status = 'queued'").fetchone()[0] == 10


def test_enqueue_again_leaves_existing_rows_untouched_and_adds_newcomers(ledger):
    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(3)])
    batch = ledger.claim_batch("2026-W48", "v1", 10)
    ledger.record_results([(batch[0].id, RecipientResult(batch[0].email, Status.ACCEPTED, "m-1"))])
    # A resume enqueues the whole audience again; reader 0 switched variant meanwhile.
    added = ledger.enqueue("2026-W48", [(person(0), "v2"), (person(1), "v1"), (person(2), "v1"), (person(3), "v1")])
    assert added == 1
    rows = {d.email: d for d in ledger.pending("2026-W48", resend_unknown=True)}
    assert set(rows) == {"reader3@example.org"}  # 1 and 2 are still 'sending' from the claim above
    counts = ledger.counts("2026-W48")
    assert counts[DeliveryStatus.ACCEPTED] == 1 and counts[DeliveryStatus.SENDING] == 2


def test_claim_batch_commits_sending_before_returning_and_counts_attempts(ledger):
    ledger.enqueue("2026-W48", [(person(n), "v1" if n < 5 else "v2") for n in range(8)])
    batch = ledger.claim_batch("2026-W48", "v1", 3)
    assert [d.email for d in batch] == [f"reader{n}@example.org" for n in range(3)]
    with other_connection(ledger) as db:
        seen = dict(db.execute("SELECT email, status FROM deliveries WHERE attempts = 1").fetchall())
    assert seen == {d.email: "sending" for d in batch}
    assert len(ledger.claim_batch("2026-W48", "v1", 10)) == 2  # the rest of v1 only
    assert ledger.claim_batch("2026-W48", "v1", 10) == []
    assert {d.variant_key for d in ledger.pending("2026-W48")} == {"v2"}


def test_record_results_stores_each_outcome_and_only_for_rows_in_flight(ledger):
    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(4)])
    a, b, c, d = ledger.claim_batch("2026-W48", "v1", 4)
    changed = ledger.record_results([
        (a.id, RecipientResult(a.email, Status.ACCEPTED, message_id="msg-a")),
        (b.id, RecipientResult(b.email, Status.REJECTED, reason="550 no such user")),
        (c.id, RecipientResult(c.email, Status.RETRYABLE, reason="451 try later")),
        (d.id, RecipientResult(d.email, Status.UNKNOWN, reason="connection lost after the request")),
    ])
    assert changed == 4
    # A late duplicate answer for a row no longer in flight changes nothing.
    assert ledger.record_results([(b.id, RecipientResult(b.email, Status.ACCEPTED, "late"))]) == 0
    problems = {p.email: (p.status, p.last_error) for p in ledger.problems("2026-W48")}
    assert problems == {b.email: (DeliveryStatus.REJECTED, "550 no such user"),
                        d.email: (DeliveryStatus.UNKNOWN, "connection lost after the request")}
    assert [p.email for p in ledger.pending("2026-W48")] == [c.email]
    assert {p.email for p in ledger.pending("2026-W48", resend_unknown=True)} == {c.email, d.email}
    with other_connection(ledger) as db:
        assert db.execute("SELECT message_id FROM deliveries WHERE id = ?", (a.id,)).fetchone()[0] == "msg-a"


def test_resent_retryable_row_counts_its_attempts_and_clears_its_error_on_acceptance(ledger):
    ledger.enqueue("2026-W48", [(person(1), "v1")])
    (first,) = ledger.claim_batch("2026-W48", "v1", 1)
    ledger.record_results([(first.id, RecipientResult(first.email, Status.RETRYABLE, reason="429"))])
    (second,) = ledger.claim_batch("2026-W48", "v1", 1)
    assert (second.status, second.attempts, second.last_error) == (DeliveryStatus.RETRYABLE, 1, "429")
    ledger.record_results([(second.id, RecipientResult(second.email, Status.ACCEPTED, "m"))])
    assert ledger.counts("2026-W48")[DeliveryStatus.ACCEPTED] == 1
    assert ledger.problems("2026-W48") == [] and ledger.pending("2026-W48") == []
    assert ledger.update_issue_status("2026-W48") == "finished"


def test_sent_articles_are_recorded_with_the_first_acceptance_and_skipped_by_later_issues(ledger):
    ledger.create_issue("2026-W49", END, END + timedelta(days=7), ["a3"])
    ledger.enqueue("2026-W48", [(person(1), "v1"), (person(2), "v2")])
    (one,) = ledger.claim_batch("2026-W48", "v1", 5)
    ledger.record_results([(one.id, RecipientResult(one.email, Status.REJECTED, reason="550"))], article_ids=["a1"])
    assert ledger.sent_article_ids() == set()  # nobody got it: not sent
    (two,) = ledger.claim_batch("2026-W48", "v2", 5)
    ledger.record_results([(two.id, RecipientResult(two.email, Status.ACCEPTED, "m"))], article_ids=["a1", "a2"])
    assert ledger.sent_article_ids() == {"a1", "a2"}
    assert ledger.sent_article_ids(except_issue="2026-W48") == set()  # a resume keeps its own articles
    assert ledger.sent_article_ids(except_issue="2026-W49") == {"a1", "a2"}


def test_update_issue_status_stays_open_while_rows_remain(ledger):
    ledger.enqueue("2026-W48", [(person(1), "v1")])
    assert ledger.update_issue_status("2026-W48") == "open"
    assert ledger.get_issue("2026-W48").status == "open"


def test_two_worker_threads_never_claim_the_same_row(ledger):
    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(2000)])
    claimed: list[list[int]] = [[], []]

    def worker(out):
        while batch := ledger.claim_batch("2026-W48", "v1", 7):
            out.extend(d.id for d in batch)

    threads = [threading.Thread(target=worker, args=(out,)) for out in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 2000


CRASH_AFTER_CLAIM = """
import os, signal, sys
from digest.ledger import Ledger
ledger = Ledger(sys.argv[1])
with ledger.run_lock():
    batch = ledger.claim_batch("2026-W48", "v1", 3)
    print(len(batch), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # killed while the request would be in flight
"""


def test_rows_left_sending_by_a_killed_process_become_unknown_and_are_resent_only_on_request(file_ledger):
    ledger = file_ledger
    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(5)])
    child = run_child(CRASH_AFTER_CLAIM, str(ledger.path))
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL and out.strip() == "3"
    with pytest.raises(RuntimeError):
        ledger.recover_crashed("2026-W48")  # never without the run lock
    with ledger.run_lock():  # the dead process's lock went with it
        assert ledger.recover_crashed("2026-W48") == 3
    counts = ledger.counts("2026-W48")
    assert (counts[DeliveryStatus.UNKNOWN], counts[DeliveryStatus.QUEUED], counts[DeliveryStatus.SENDING]) == (3, 2, 0)
    assert len(ledger.pending("2026-W48")) == 2
    assert len(ledger.pending("2026-W48", resend_unknown=True)) == 5
    assert all("may or may not" in p.last_error for p in ledger.problems("2026-W48"))


HOLD_LOCK = """
import sys, time
from digest.ledger import Ledger
with Ledger(sys.argv[1]).run_lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_only_one_send_holds_the_run_lock_and_it_dies_with_its_process(file_ledger):
    ledger = file_ledger
    holder = run_child(HOLD_LOCK, str(ledger.path))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LedgerBusyError) as caught:
            with ledger.run_lock():
                pass
        assert caught.value.exit_code == 75
        assert str(holder.pid) in str(caught.value) and str(ledger.path) in str(caught.value)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with ledger.run_lock():
        with Ledger(ledger.path) as second, pytest.raises(LedgerBusyError):  # refused in this process too
            with second.run_lock():
                pass
    with ledger.run_lock():  # released at the end of the block
        pass


SEND_LOOP = """
import sys
from datetime import datetime, timedelta, UTC
from digest.ledger import Ledger
from digest.recipients import Recipient
from digest.providers.sendgrid import SendGridProvider
from digest.rendering import RenderedVariant
from digest.settings import load_settings

path, url, key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
settings = load_settings(sendgrid_api_key=key, sendgrid_host=url, sendgrid_retry_wait=0.01)
provider = SendGridProvider(settings)
rendered = RenderedVariant("v1", "Weekly", "", "<p>Hello</p>", "Hello", ("a1",), "0123456789abcdef")

def person(email):
    return Recipient(email, "", email, "main", "https://example.org/u")

end = datetime(2026, 11, 23, 7, tzinfo=UTC)
with Ledger(path) as ledger, ledger.run_lock():
    ledger.create_issue("2026-W48", end - timedelta(days=7), end, ["a1"])
    ledger.enqueue("2026-W48", ((person(f"reader{n}@example.org"), "v1") for n in range(count)))
    ledger.recover_crashed("2026-W48")
    print("sending", flush=True)
    while batch := ledger.claim_batch("2026-W48", "v1", 100):
        results = provider.send_batch(rendered, [person(row.email) for row in batch], "2026-W48")
        ledger.record_results(zip([row.id for row in batch], results), article_ids=rendered.article_ids)
"""


def test_killed_sends_resumed_never_send_anyone_twice_and_lose_nobody(tmp_path, start_fake_sendgrid):
    """The outbox discipline end to end: a send loop over these blocks is
    killed (SIGKILL) at random moments and run again; the SendGrid stand-in
    must never record an address twice, and everyone must end up recorded
    or reported unknown (at most one batch per kill)."""
    server = start_fake_sendgrid(delay_ms=40)  # a request takes a while, so kills land mid-request
    path, count, kills = tmp_path / "digest.db", 2000, 4
    chance = random.Random(48)

    def run(kill_after: float | None) -> int:
        child = run_child(SEND_LOOP, str(path), server.url, SENDGRID_KEY, str(count))
        assert child.stdout.readline().strip() == "sending"
        if kill_after is None:
            return child.wait(timeout=60)
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
        return child.wait(timeout=10)

    killed = sum(run(chance.uniform(0.05, 0.6)) == -signal.SIGKILL for _ in range(kills))
    assert killed >= kills - 1  # the kills did interrupt sends
    assert run(None) == 0

    recorded = Counter(record["to"] for record in server.records())
    assert max(recorded.values()) == 1  # nobody twice
    with Ledger(path) as ledger:
        counts = ledger.counts("2026-W48")
        unknown = {d.email for d in ledger.problems("2026-W48") if d.status is DeliveryStatus.UNKNOWN}
    everyone = {f"reader{n}@example.org" for n in range(count)}
    assert set(recorded) | unknown == everyone  # nobody lost
    assert counts[DeliveryStatus.ACCEPTED] == len(set(recorded) - unknown)
    assert len(unknown) <= 100 * killed
    assert counts[DeliveryStatus.QUEUED] == counts[DeliveryStatus.SENDING] == 0


def test_two_ledger_connections_claiming_at_once_never_take_the_same_row(ledger_target):
    # Two workers (two connections, as two machines have): SKIP LOCKED on PostgreSQL, the write lock on SQLite.
    with Ledger(ledger_target) as first, Ledger(ledger_target) as second:
        first.create_issue("2026-W48", START, END, ["a1"])
        first.enqueue("2026-W48", [(person(n), f"v{n % 3}") for n in range(3000)])
        claimed: dict[str, list[int]] = {"a": [], "b": []}
        start = threading.Barrier(2)

        def work(book: Ledger, worker: str) -> None:
            start.wait()
            while (taken := book.claim("2026-W48", 50, worker=worker, lease=60)).rows:
                assert len({row.variant_key for row in taken.rows}) == 1  # one variant per batch
                claimed[worker].extend(row.id for row in taken.rows)

        threads = [threading.Thread(target=work, args=(book, name)) for book, name in ((first, "a"), (second, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not set(claimed["a"]) & set(claimed["b"])
        assert len(claimed["a"]) + len(claimed["b"]) == 3000
        assert first.counts("2026-W48")[DeliveryStatus.SENDING] == 3000


def test_a_claim_closes_suppressed_rows_and_record_and_claim_is_one_step(ledger):
    from digest import suppressions

    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(6)])
    target = ledger.url if not ledger.exclusive else ledger.path
    suppressions.add(target, "READER1@example.org", "unsubscribed", "test")  # every list
    suppressions.add(target, "reader2@example.org", "unsubscribed", "test", "other-list")  # not this list
    taken = ledger.claim("2026-W48", 3, worker="w/0", lease=60, suppressed="left")
    assert taken.suppressed == 1 and [row.email for row in taken.rows] == ["reader0@example.org", "reader2@example.org"]
    changed, following = ledger.record_and_claim(
        [(row.id, RecipientResult(row.email, Status.ACCEPTED, "m")) for row in taken.rows],
        article_ids=["a1"], issue_key="2026-W48", limit=10, worker="w/0", lease=60,
    )
    assert changed == 2 and [row.email for row in following.rows] == [f"reader{n}@example.org" for n in (3, 4, 5)]
    counts = ledger.counts("2026-W48")
    assert (counts[DeliveryStatus.ACCEPTED], counts[DeliveryStatus.REJECTED], counts[DeliveryStatus.SENDING]) == (2, 1, 3)
    assert [p.last_error for p in ledger.problems("2026-W48")] == ["left"]
    ledger.release(following.rows)  # never sent: back as they were
    assert ledger.counts("2026-W48")[DeliveryStatus.QUEUED] == 3 and ledger.claim("2026-W48", 10, worker="x/0", lease=60).rows


def test_a_round_never_takes_its_own_retryable_rows_again(ledger):
    ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(2)])
    taken = ledger.claim("2026-W48", 10, worker="w/0", lease=60)
    ledger.record_results([(row.id, RecipientResult(row.email, Status.RETRYABLE, reason="429")) for row in taken.rows])
    assert ledger.claim("2026-W48", 10, worker="w/0", lease=60).rows == []  # the same round
    assert len(ledger.claim("2026-W48", 10, worker="w/1", lease=60).rows) == 2  # the next round


def test_on_a_shared_ledger_expired_leases_become_unknown_and_live_ones_stay(postgres_url):
    with Ledger(postgres_url) as ledger:
        ledger.create_issue("2026-W48", START, END, ["a1"])
        ledger.enqueue("2026-W48", [(person(n), "v1") for n in range(5)])
        dead = ledger.claim("2026-W48", 2, worker="dead/0", lease=-1)  # its lease is over already
        live = ledger.claim("2026-W48", 2, worker="live/0", lease=600)
        assert ledger.recover_crashed("2026-W48") == 2  # no run lock on a shared ledger: leases decide
        problems = {p.email: p for p in ledger.problems("2026-W48")}
        assert set(problems) == {row.email for row in dead.rows}
        assert all(p.status is DeliveryStatus.UNKNOWN and "lease expired" in p.last_error for p in problems.values())
        assert ledger.in_flight("2026-W48")[0] == len(live.rows) == 2
        assert [row.email for row in ledger.claim("2026-W48", 10, worker="other/0", lease=60).rows] == ["reader4@example.org"]
        assert ledger.claim("2026-W48", 10, worker="other/0", lease=60, resend_unknown=True).rows  # only when asked


def test_only_the_first_worker_queues_an_issue_on_a_shared_ledger(postgres_url):
    def row(n: int, tag: str) -> tuple[str, str, str, str, str]:
        someone = person(n)
        return someone.email, someone.name, someone.subscriber_id, someone.list_name, tag

    def entries(tag: str):
        yield row(1, tag)
        raise AssertionError("a second worker must not read the audience")

    variant = type("V", (), {"variant_key": "v1", "subject": "S", "preheader": "", "html": "<p>", "text": "t", "article_ids": ("a1",), "notes": (), "nonce": "n0"})
    with Ledger(postgres_url) as first, Ledger(postgres_url) as second:
        assert first.queue_issue("2026-W48", START, END, ["a1"], END, [row(1, "v1"), row(2, "v1")], [variant]) is True
        assert second.queue_issue("2026-W48", START, END, ["a1"], END, entries("v2"), [variant]) is False
        assert second.get_issue("2026-W48").queued_at is not None
        assert second.variant_counts("2026-W48") == {"v1": 2}
        assert [v["html"] for v in second.variants("2026-W48")] == ["<p>"]


def test_a_row_queued_without_a_name_gets_it_when_queued_again_and_nothing_else_changes(ledger):
    from dataclasses import replace

    nameless = replace(person(1), name="")  # as rows queued before schema 4 are
    assert ledger.enqueue("2026-W48", [(nameless, "v1")]) == 1
    ledger.enqueue("2026-W48", [(person(1), "v2")])  # a resume: the name arrives, the variant stays
    ledger.enqueue("2026-W48", [(replace(person(1), name="Other"), "v2")])  # a name kept is kept
    (row,) = ledger.pending("2026-W48")
    assert (row.name, row.variant_key, row.status) == ("Reader 1", "v1", DeliveryStatus.QUEUED)


@pytest.mark.parametrize("url", ["postgresql://digest:s3cret@[::1/db", "postgresql://digest:s3cret@127.0.0.1:notaport/db"])
def test_a_malformed_postgresql_url_is_a_settings_error_without_its_password(url):
    """Not an "unexpected ValueError" (exit 1): the setting is wrong (exit 2), and its password stays out of the message."""
    with pytest.raises(SettingsError, match="setting 'ledger'") as refused:
        Ledger(url)
    assert refused.value.exit_code == 2 and "s3cret" not in str(refused.value)
