"""Crash and resume: `digest send` killed with SIGKILL at random moments
and run again loses nobody and doubles nobody.

Each trial is one issue (``--issue kill-NN``, articles reused with
``--include-sent``): the real command is started, killed at a random moment,
then run again, as cron would, until it exits 0 or 1. The SendGrid stand-in
runs as a program with ``--record`` and ``--delay-ms`` so that requests are
slow enough to be killed mid-flight. Then, per trial:

* no subscriber is recorded twice by the stand-in;
* every subscriber is recorded once or listed as unknown by
  `digest status --json` (and only the others are counted accepted);
* the unknowns of one kill are at most the requests in flight when it
  landed: ``concurrency`` (2, the default) batches of ``batch_size``. The
  issue's "one batch per kill" holds per request in flight.

Trials run in two streams at once, each with its own site, ledger and
stand-in, so that both cores work. In CI: 20 trials of 2,000 subscribers (two variants) in
batches of 100, so one kill may strand at most 200. The acceptance form, by
hand (about five minutes)::

    DIGEST_KILL_TRIALS=20 DIGEST_KILL_SUBSCRIBERS=20000 DIGEST_KILL_BATCH=1000 \\
        /work/venv/bin/pytest -q tests/test_crash_resume.py

(``DIGEST_KILL_DELAY_MS`` sets the stand-in's delay per request, default 20.)
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SENDGRID_KEY, WEEK48, Site, held_requests, read_record, recorded, stand_in_stats

TRIALS = int(os.environ.get("DIGEST_KILL_TRIALS", "20"))
SUBSCRIBERS = int(os.environ.get("DIGEST_KILL_SUBSCRIBERS", "2000"))
BATCH = int(os.environ.get("DIGEST_KILL_BATCH", "100"))
DELAY_MS = int(os.environ.get("DIGEST_KILL_DELAY_MS", "20"))
CONCURRENCY = 2  # the default of the concurrency setting
STREAMS = 2


def kill_at_random(process, url: str, batches: int, chance: random.Random) -> bool:
    """SIGKILL ``process`` at a random moment: while it starts (plans,
    renders, enqueues), or just after its k-th request reached the stand-in
    at ``url``, k drawn from the batches an issue takes. Returns whether it
    was killed (it may have finished first)."""
    target = chance.randint(0, batches - 1)
    if target == 0:
        time.sleep(chance.uniform(0, 1.0))
    else:
        start, deadline = stand_in_stats(url)["requests"], time.monotonic() + 120
        while process.poll() is None and stand_in_stats(url)["requests"] - start < target:
            assert time.monotonic() < deadline, "the send made no progress"
            time.sleep(0.01)
        time.sleep(chance.uniform(0, DELAY_MS / 1000))  # while that request waits at the stand-in
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return True


def run_trials(site: Site, url: str, keys: list[str], batches: int, chance: random.Random) -> dict[str, tuple[bool, int]]:
    """Each issue of ``keys`` in turn on ``site``, whose stand-in is at
    ``url``: started, killed at random, run again until it exits 0 or 1.
    Returns key -> (killed, last exit code)."""
    outcome = {}
    for key in keys:
        command = ("send", "--as-of", WEEK48, "--issue", key, "--include-sent")
        killed = kill_at_random(site.start(*command), url, batches, chance)
        for _ in range(3):
            done = site.run(*command)
            if done.returncode in (0, 1):
                break
        assert done.returncode in (0, 1), done.stdout + done.stderr
        outcome[key] = (killed, done.returncode)
    return outcome


def test_sends_killed_at_random_and_run_again_never_double_anyone_and_lose_nobody(make_site, stand_in_process):
    # Two variants (each run renders every variant: more would only slow the trials down).
    readers = [(f"reader{n}@example.org", f"Reader {n}", "" if n % 2 else "news;tag4") for n in range(SUBSCRIBERS)]
    everyone = {address for address, _, _ in readers}
    # Per stream a site (its ledger) and a stand-in (whose request count times the kills).
    sites = [make_site(readers=0, batch_size=BATCH) for _ in range(STREAMS)]
    stand_ins = [stand_in_process("--delay-ms", str(DELAY_MS)) for _ in range(STREAMS)]
    for site, (url, _) in zip(sites, stand_ins, strict=False):
        site.settings.update(sendgrid_host=url, sendgrid_api_key=SENDGRID_KEY)
        site.write_readers(0, extra=readers)
    batches = math.ceil(SUBSCRIBERS / BATCH) + 1  # about: each variant may end with a short batch
    keys = [f"kill-{trial:02d}" for trial in range(TRIALS)]

    with ThreadPoolExecutor(STREAMS) as pool:
        streams = [
            pool.submit(run_trials, site, url, keys[stream::STREAMS], batches, random.Random(f"kill-{stream}"))
            for stream, (site, (url, _)) in enumerate(zip(sites, stand_ins, strict=False))
        ]
        outcome = {key: result for stream in streams for key, result in stream.result().items()}

    assert sum(killed for killed, _ in outcome.values()) >= TRIALS * 3 // 4  # most kills beat the send's end
    status = {key: entry for site in sites for key, entry in site.status().items()}
    per_issue: dict[str, Counter] = {}
    for line in (line for _, record in stand_ins for line in read_record(record)):
        per_issue.setdefault(line["custom_args"]["issue_key"], Counter())[line["to"]] += 1
    stranded = []
    for key, (_, exit_code) in sorted(outcome.items()):
        sent = per_issue.get(key, Counter())
        unknown = {p["email"] for p in status[key]["problems"] if p["status"] == "unknown"}
        assert not [address for address, n in sent.items() if n > 1], f"{key}: recorded twice"
        assert set(sent) | unknown == everyone, f"{key}: lost {len(everyone - set(sent) - unknown)}"
        assert status[key]["counts"] == {"accepted": len(everyone - unknown), **({"unknown": len(unknown)} if unknown else {})}
        assert len(unknown) <= CONCURRENCY * BATCH, f"{key}: {len(unknown)} unknown after one kill"
        assert exit_code == (1 if unknown else 0)
        stranded.append(len(unknown))
    print(f"{TRIALS} trials of {SUBSCRIBERS:,} in batches of {BATCH}: unknown after each kill {stranded}")
    # Most kills landed with requests in flight, which is what this is about.
    assert sum(1 for n in stranded if n) >= TRIALS // 2, stranded


def _in_flight(site: Site, **settings) -> tuple[dict, str, bool]:
    """`digest status --json` and `digest status` of 2026-W48 on ``site``:
    (the issue's JSON entry, the text, send_in_progress)."""
    shown = site.run("status", "--json", **settings)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    text = site.run("status", **settings)
    assert text.returncode == 0, text.stderr
    return data["issues"][0], text.stdout, data["send_in_progress"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_status_tells_a_send_in_progress_from_rows_a_killed_send_left_in_flight(request, make_site, fake_sendgrid, backend):
    """A real `digest send` held in its requests by the stand-in (a
    barrier), then killed with SIGKILL: while it runs `digest status` says a
    send is in progress; once it is dead (SQLite: its run lock is free;
    PostgreSQL: the leases ran out) it says those rows were interrupted in
    flight and what the next send does with them, which the next send then
    does: unknown, not resent."""
    settings = {"sendgrid_api_key": SENDGRID_KEY, "sendgrid_host": fake_sendgrid.url}
    if backend == "postgresql":
        settings.update(ledger=request.getfixturevalue("postgres_url"), lease=8)
    site = make_site(readers=20, batch_size=4)
    with held_requests(fake_sendgrid) as arrived:
        sender = site.start("send", "--as-of", WEEK48, **settings)
        assert arrived.wait(120), "the send made no request"
        entry, text, running = _in_flight(site, **settings)
        sending = entry["counts"]["sending"]
        assert running and entry["in_flight"] == {"sending_now": sending, "interrupted": 0}
        assert f"{sending} recipients being sent now: a send is in progress" in text and "interrupted" not in text
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=30)
        deadline = time.monotonic() + 60  # PostgreSQL: until the killed worker's leases run out
        while True:
            entry, text, running = _in_flight(site, **settings)
            if entry["in_flight"]["interrupted"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert entry["counts"]["sending"] == sending and entry["in_flight"] == {"sending_now": 0, "interrupted": sending}
    assert not running and "being sent now" not in text and "a send is in progress" not in text
    assert (
        f"{sending} recipients interrupted in flight: the send stopped while their request was out, so the provider may or may "
        "not have taken them; the next `digest send` marks them unknown and does not resend them without --resend-unknown"
    ) in text

    again = site.run("send", "--as-of", WEEK48, **settings)
    assert again.returncode == 1, again.stdout + again.stderr  # the unknowns
    entry, text, running = _in_flight(site, **settings)
    unknown = {p["email"] for p in entry["problems"] if p["status"] == "unknown"}
    assert entry["counts"] == {"accepted": 20 - sending, "unknown": sending} and len(unknown) == sending
    assert entry["in_flight"] == {"sending_now": 0, "interrupted": 0} and "interrupted in flight" not in text
    assert all(n == 1 for n in recorded(fake_sendgrid.records()).values())  # the held requests were taken, nobody twice
