"""Many `digest send` workers on one issue, sharing a PostgreSQL ledger: the
real command as separate processes, the SendGrid stand-in as a program
recording every recipient, a real PostgreSQL database per test.

* every subscriber is recorded exactly once, however many workers run;
* with a slow provider (``--delay-ms``), 4 workers take a fraction of the
  time 1 takes;
* workers killed (SIGKILL) at random and restarted double nobody and lose
  nobody; the unknowns are at most the batches the killed workers held.

CI runs them small; the acceptance sizes, by hand::

    DIGEST_WORKERS_SUBSCRIBERS=20000 DIGEST_WORKERS_KILLS=20 .venv/bin/python -m pytest -q -s tests/test_workers.py

(about four minutes; the speed check is then end to end).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import psycopg
from conftest import SENDGRID_KEY, WEEK48, read_record, stand_in_stats

SUBSCRIBERS = int(os.environ.get("DIGEST_WORKERS_SUBSCRIBERS", "4000"))
KILLS = int(os.environ.get("DIGEST_WORKERS_KILLS", "6"))
WORKERS = 4
# The speed check: requests of 200 ms, so that sending, not starting Python and
# planning, is what is measured: 250 requests at the acceptance size (20,000
# subscribers), 80 in CI.
FULL_SIZE = SUBSCRIBERS >= 20000
REQUESTS = 250 if FULL_SIZE else 80
SEND = ("send", "--as-of", WEEK48)


def sendgrid(url: str) -> dict[str, object]:
    return {"sendgrid_api_key": SENDGRID_KEY, "sendgrid_host": url, "sendgrid_retry_wait": 0.01}


def wait_all(processes, timeout: float = 600) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        codes.append(process.wait(timeout=max(1, deadline - time.monotonic())))
    return codes


def everyone(count: int) -> set[str]:
    return {f"reader{n}@example.org" for n in range(count)}


def test_four_workers_send_one_issue_to_every_subscriber_exactly_once(make_site, stand_in_process, postgres_url):
    url, record = stand_in_process("--lean")
    site = make_site(readers=SUBSCRIBERS, ledger=postgres_url, batch_size=250)
    workers = [site.start(*SEND, **sendgrid(url)) for _ in range(WORKERS)]
    assert wait_all(workers) == [0] * WORKERS, [p.read_text() for p in site.root.glob("run-*.out")]

    sent = Counter(line["to"] for line in read_record(record))
    assert set(sent) == everyone(SUBSCRIBERS) and set(sent.values()) == {1}
    status = site.status(ledger=postgres_url)["2026-W48"]
    assert status["counts"] == {"accepted": SUBSCRIBERS} and status["status"] == "finished"
    handed = [int(re.search(r"\((\d+) attempted through sendgrid in this run", path.read_text()).group(1)) for path in site.root.glob("run-*.out")]
    assert sum(handed) == SUBSCRIBERS and sum(n > 0 for n in handed) >= 2  # the work was shared
    with psycopg.connect(postgres_url) as db:
        workers_seen = db.execute("SELECT count(DISTINCT split_part(worker, '/', 1)) FROM deliveries").fetchone()[0]
        stored = db.execute("SELECT count(*) FROM variants").fetchone()[0]
        used = db.execute("SELECT count(DISTINCT variant_key) FROM deliveries").fetchone()[0]
    assert workers_seen >= 2  # the work was shared
    assert stored == used > 1  # each variant rendered and stored once


def test_a_worker_needs_only_the_ledger_and_the_provider_settings(make_site, stand_in_process, postgres_url, tmp_path):
    """A second machine: no digest.toml, no articles, no lists; only
    DIGEST_* settings for the ledger, the provider and the links. It joins
    an issue another worker queued and sends part of it."""
    # The first worker alone would take 80 requests of 200 ms one at a time (16 s):
    # time enough for the second to start and join, however busy the machine.
    url, record = stand_in_process("--lean", "--delay-ms", "200")
    site = make_site(readers=2000, ledger=postgres_url, batch_size=25, concurrency=1)
    first = site.start(*SEND, **sendgrid(url))
    deadline = time.monotonic() + 60
    with psycopg.connect(postgres_url, autocommit=True) as db:
        def queued() -> bool:
            if not db.execute("SELECT to_regclass('issues') IS NOT NULL").fetchone()[0]:
                return False
            return db.execute("SELECT count(*) FROM issues WHERE queued_at IS NOT NULL").fetchone()[0] == 1

        while not queued():
            assert time.monotonic() < deadline and first.poll() is None, "the first worker never queued the issue"
            time.sleep(0.05)
    bare = tmp_path / "bare"
    bare.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}
    env.update(site.env(ledger=postgres_url, provider="sendgrid", sender_email="digest@gazette.example.org",
                        secret_key="issue-3-tests-signing-secret-7c1e9a04b6d2f853", **sendgrid(url)))
    second = subprocess.run([sys.executable, "-m", "digest", *SEND], cwd=bare, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert first.wait(timeout=120) == 0
    handed = int(re.search(r"\((\d+) attempted through sendgrid in this run", second.stdout).group(1))
    assert handed > 0
    sent = Counter(line["to"] for line in read_record(record))
    assert set(sent) == everyone(2000) and set(sent.values()) == {1}


def test_four_workers_take_a_fraction_of_the_time_of_one_with_a_slow_provider(make_site, stand_in_process, postgres_server):
    """The stand-in waits 200 ms per request, so the time is the requests'
    own: 4 workers (2 requests in flight each) against 1. End to end (each
    process started, the issue planned and queued once, sent, reported) at
    the acceptance size; in CI's short run the fixed start-up of Python
    processes on a busy machine would swamp the send, so there the sending
    span (first to last request the stand-in received) is compared, and the
    end to end time must still be shorter."""
    count = SUBSCRIBERS
    timings, spans = {}, {}
    for workers in (1, WORKERS):
        url, record = stand_in_process("--lean", "--delay-ms", "200")
        database = _fresh_database(postgres_server, f"speed{workers}")
        site = make_site(readers=count, ledger=database, batch_size=max(1, count // REQUESTS))
        started = time.monotonic()
        codes = wait_all([site.start(*SEND, **sendgrid(url)) for _ in range(workers)])
        timings[workers] = time.monotonic() - started
        assert codes == [0] * workers
        lines = read_record(record)
        sent = Counter(line["to"] for line in lines)
        assert set(sent) == everyone(count) and set(sent.values()) == {1}
        assert stand_in_stats(url)["requests"] >= REQUESTS  # (batches are per variant: a few more)
        arrivals = [line["received_at"] for line in lines]
        spans[workers] = max(arrivals) - min(arrivals) + 0.2  # + the last request's own 200 ms
    print(f"end to end: 1 worker {timings[1]:.1f} s, {WORKERS} workers {timings[WORKERS]:.1f} s: {timings[WORKERS] / timings[1]:.0%}; "
          f"sending: {spans[1]:.1f} s, {spans[WORKERS]:.1f} s: {spans[WORKERS] / spans[1]:.0%}")
    if FULL_SIZE:
        assert timings[WORKERS] <= 0.35 * timings[1]
    else:
        assert spans[WORKERS] <= 0.35 * spans[1] and timings[WORKERS] < timings[1]


def _fresh_database(server: str, suffix: str) -> str:
    name = f"digest_workers_{suffix}_{os.getpid()}_{random.randrange(10**6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{server.rsplit('/', 1)[0]}/{name}"


def held_by(database: str, pid: int) -> int:
    """Rows a worker process held when it died: claimed (sending), or
    already called unknown because its lease ran out."""
    prefix = f"{socket.gethostname()}:{pid}:"
    with psycopg.connect(database) as db:
        if not db.execute("SELECT to_regclass('deliveries') IS NOT NULL").fetchone()[0]:
            return 0  # killed before the ledger was even made
        return db.execute(
            "SELECT count(*) FROM deliveries WHERE starts_with(worker, %s) AND status IN ('sending', 'unknown')", (prefix,)
        ).fetchone()[0]


def test_workers_killed_at_random_and_restarted_double_nobody_and_lose_nobody(make_site, stand_in_process, postgres_url):
    url, record = stand_in_process("--lean", "--delay-ms", "30")
    batch = 100
    site = make_site(readers=SUBSCRIBERS, ledger=postgres_url, batch_size=batch, lease=2)
    chance = random.Random(12)
    running = [site.start(*SEND, **sendgrid(url)) for _ in range(WORKERS)]
    held, kills = 0, 0
    deadline = time.monotonic() + 300
    while kills < KILLS and time.monotonic() < deadline:
        time.sleep(chance.uniform(0.1, 0.6))
        alive = [p for p in running if p.poll() is None]
        if not alive:
            # Everyone finished before all the kills: start a new issue round on the same one
            # (nothing left to send) would prove nothing; stop here.
            break
        victim = chance.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        kills += 1
        held += held_by(postgres_url, victim.pid)
        running[running.index(victim)] = site.start(*SEND, **sendgrid(url))  # restarted, as systemd would
    codes = wait_all(running)
    assert kills >= min(KILLS, 3), "the workers finished before the kills landed"
    assert set(codes) <= {0, 1}

    sent = Counter(line["to"] for line in read_record(record))
    assert max(sent.values()) == 1  # nobody twice
    status = site.status(ledger=postgres_url)["2026-W48"]
    unknown = {p["email"] for p in status["problems"] if p["status"] == "unknown"}
    assert set(sent) | unknown == everyone(SUBSCRIBERS)  # nobody lost
    assert status["counts"].get("queued", 0) == status["counts"].get("sending", 0) == 0
    assert status["counts"]["accepted"] == len(set(sent) - unknown)
    print(f"{kills} workers killed; they held {held} recipients; {len(unknown)} unknown, {len(sent)} recorded once, none twice")
    assert len(unknown) <= held <= kills * 2 * batch  # at most the batches the killed workers held
