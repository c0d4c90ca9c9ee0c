"""Sending speed and memory: N synthetic subscribers in V variants sent by
the product's own path (``digest.issue.plan_issue``, then
``digest.delivery.send_issue`` with the SendGrid provider and a ledger) to
the local stand-in, against the naive way, in one run.

    python benchmarks/send_bench.py                      # 100,000 subscribers, 20 variants
    python benchmarks/send_bench.py -n 1000000           # memory stays flat
    python benchmarks/send_bench.py --suppressions 100000
    python benchmarks/send_bench.py --suppressions 100000 --compare   # without and with, interleaved: what they add
    python benchmarks/send_bench.py -n 20000 --workers 4 --ledger postgresql://postgres@127.0.0.1/bench
    python benchmarks/send_bench.py --overlap 0.5        # half the readers on a second list too: merged

A site is generated in a temporary folder: Markdown articles (three "news"
ones everyone gets, two per variant tag) and a subscriber CSV whose rows
follow one tag each (with ``--overlap F``, the first F of them are also on
a second list, following the next tag: each is merged into one reader
with both tags, ``digest.audience``); ``--suppressions S`` suppresses S other addresses in
the ledger, as a list with a long history has (each batch is checked
against them). The phases are those of ``digest send``: plan (read the
articles and the list, check every address, group variants), render and
inline each variant once, queue (every recipient written to the ledger in
one transaction), send (claim a batch, POST it, record the answers and
claim the next: ``--concurrency`` requests in flight). The naive way,
timed on ``--sample`` subscribers in the same run (half of them after
the render phase, half after the send, against a stand-in of its own) and
extrapolated: render and inline per subscriber, one request per recipient.

With ``--compare`` (and ``--suppressions S``) the send is made
``--rounds`` times without the suppressions and as often with them,
interleaved, each with a new ledger and stand-in, and the best wall and CPU
times of the two cases are compared (a shared machine's noise is larger than
what is measured); the peak RSS shown is then this process's so far.

With ``--workers W`` the send is W real ``digest send`` processes sharing a
PostgreSQL ledger (``--ledger URL``, an empty database): the phases are then
those of the whole group, and RSS is the largest worker's.

The stand-in (../shared/tools/fake_sendgrid.py) runs as a separate process
with ``--lean`` (it validates every request but does not hash every
recipient's content), so that its work does not count against ours. Prints
per phase: wall time, CPU time, peak RSS of this process, requests,
recipients per second and the stand-in's own CPU time (on two cores the
send cannot be faster than the larger of the two CPU figures); then whether
the stand-in recorded every subscriber exactly once, and the speed ratio to
the naive way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TOOLS = REPO.parent / "shared" / "tools"
sys.path.insert(0, str(REPO))

from digest.delivery import queue_issue, render_issue, send_queued  # noqa: E402
from digest.issue import IssueRequest, plan_issue  # noqa: E402
from digest.ledger import Ledger  # noqa: E402
from digest.providers.sendgrid import SendGridProvider  # noqa: E402
from digest.recipients import Status  # noqa: E402
from digest.rendering import render_variant  # noqa: E402
from digest.settings import load_settings  # noqa: E402
from digest.unsubscribe import recipient_for  # noqa: E402

API_KEY = "SG.benchmark"
AS_OF = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # issue 2026-W48 of "weekly monday 08:00"
SCHEDULED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SECRET = secrets.token_urlsafe(32)  # send and workers refuse a guessable key

ARTICLE = """\
---
title: "Allotment notes №{n}: leeks, frost and “soil”"
date: {date}
tags: [{tag}]
author: A. Gardener
---
{body}
"""


def start_stand_in(record: Path):
    """(base URL, stop function, process id) of a running stand-in recording to ``record``."""
    process = subprocess.Popen(
        [sys.executable, str(SHARED_TOOLS / "fake_sendgrid.py"), "--port", "0", "--record", str(record),
         "--api-key", API_KEY, "--keep-bodies", "2", "--lean"],
        stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"the stand-in did not start: {line!r}")

    def stop():
        process.terminate()
        process.wait(timeout=10)

    return line.removeprefix("listening on "), stop, process.pid


def stand_in_requests(url: str) -> int:
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return json.load(response)["requests"]


def write_site(folder: Path, subscribers: int, variants: int, overlap: float = 0.0) -> None:
    """posts/ (three "news" articles, two per tag0..tagV-1) and readers.csv
    (subscriber n follows news and tag n % V), written row by row; with
    ``overlap``, lists/readers.csv and lists/more.csv instead, the second
    holding the first ``overlap`` of the readers again, following tag n+1."""
    posts = folder / "posts"
    posts.mkdir()
    body = "What we learned this week about the beds, with *care* and a [link](https://gazette.example.org/).\n\n" * 3
    tags = ["news"] * 3 + [f"tag{v}" for v in range(variants) for _ in range(2)]
    for n, tag in enumerate(tags):
        date = (SCHEDULED - timedelta(hours=n + 1)).isoformat()
        (posts / f"{n}.md").write_text(ARTICLE.format(n=n, date=date, tag=tag, body=body), encoding="utf-8")
    lists = folder / "lists" if overlap else folder
    lists.mkdir(exist_ok=True)
    with open(lists / "readers.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "tags"])
        writer.writerows((f"reader{n}@example.org", f"Reader {n}", f"news;tag{n % variants}") for n in range(subscribers))
    if overlap:
        with open(lists / "more.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "tags"])
            writer.writerows((f"reader{n}@example.org", "", f"tag{(n + 1) % variants}") for n in range(int(subscribers * overlap)))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 where
    /proc is not there to say (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Phases:
    """Wall and CPU time, peak RSS and requests per phase, printed as a table."""

    def __init__(self, url: str, stand_in_pid: int) -> None:
        self.url, self.stand_in_pid, self.rows = url, stand_in_pid, []

    def run(self, name: str, step, *, recipients: int = 0, children: bool = False):
        wall, started_cpu, requests = time.perf_counter(), cpu(), stand_in_requests(self.url)
        child_cpu, stand_in_cpu = _children_cpu(), process_cpu(self.stand_in_pid)
        result = step()
        spent_cpu = cpu() - started_cpu + (_children_cpu() - child_cpu if children else 0)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if children else peak_mb()
        self.rows.append((name, time.perf_counter() - wall, spent_cpu, peak, stand_in_requests(self.url) - requests, recipients,
                          process_cpu(self.stand_in_pid) - stand_in_cpu))
        return result

    def print(self) -> float:
        print(f"  {'phase':<34}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}{'requests':>10}{'recipients/s':>14}{'stand-in CPU s':>16}")
        for name, wall, spent, peak, requests, recipients, stand_in in self.rows:
            rate = f"{recipients / wall:,.0f}" if recipients else ""
            print(f"  {name:<34}{wall:8.2f}{spent:8.2f}{peak:9.0f}{requests:10,}{rate:>14}{stand_in:16.2f}")
        total = sum(row[1] for row in self.rows)
        print(f"  {'total':<34}{total:8.2f}{sum(row[2] for row in self.rows):8.2f}{max(row[3] for row in self.rows):9.0f}"
              f"{sum(row[4] for row in self.rows):10,}{self.rows[-1][5] / total if self.rows[-1][5] else 0:14,.0f}"
              f"{sum(row[6] for row in self.rows):16.2f}")
        return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def naive_people(sample: int, issue) -> list:
    """``sample`` (variant, subscriber) pairs spread over the variants of ``issue``."""
    people = [(variant, subscriber) for variant in issue.variants for subscriber in variant.subscribers[:sample]]
    return people[::max(1, len(people) // sample)][:sample]


def naive(people: list, issue, settings, provider: SendGridProvider) -> float:
    """Seconds spent on ``people`` when rendering and inlining per
    subscriber and sending one request per recipient."""
    started = time.perf_counter()
    for variant, subscriber in people:
        rendered = render_variant(variant.articles, issue.context, settings, variant_key=variant.key, tags=variant.tags)
        results = provider.send_batch(rendered, [recipient_for(subscriber, settings)], "naive")
        assert results[0].status is Status.ACCEPTED, results[0]
    return time.perf_counter() - started


def exactly_once(record: Path, count: int) -> tuple[bool, int]:
    """Whether ``record`` has reader0..reader{count-1} once each (and nobody
    else), read in a child process so this one's peak RSS stays the send's."""
    code = (
        "import json, sys\n"
        "seen = bytearray(int(sys.argv[2])); lines = 0; extra = 0\n"
        "for line in open(sys.argv[1], encoding='utf-8'):\n"
        "    lines += 1; to = json.loads(line)['to']\n"
        "    n = int(to[6:to.index('@')]) if to.startswith('reader') else -1\n"
        "    if 0 <= n < len(seen): seen[n] += 1\n"
        "    else: extra += 1\n"
        "print(json.dumps({'ok': extra == 0 and all(c == 1 for c in seen), 'lines': lines}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(record), str(count)], capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout)
    return answer["ok"], answer["lines"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("-v", "--variants", type=int, default=20)
    parser.add_argument("--suppressions", type=int, default=0, help="other addresses suppressed in the ledger")
    parser.add_argument("--workers", type=int, default=1, help="digest send processes sharing a PostgreSQL ledger (needs --ledger)")
    parser.add_argument("--ledger", help="a postgresql:// URL of an empty database (default: a SQLite file)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight per worker (the concurrency setting)")
    parser.add_argument("--sample", type=int, default=200, help="subscribers sent the naive way")
    parser.add_argument("--compare", action="store_true",
                        help="with --suppressions: send without them and with them, interleaved, and print what they add")
    parser.add_argument("--overlap", type=float, default=0.0, help="this share of the readers also on a second list (merged)")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: sends of each case (the best of each is compared)")
    args = parser.parse_args()
    if not (SHARED_TOOLS / "fake_sendgrid.py").is_file():
        raise SystemExit(f"the SendGrid stand-in is not at {SHARED_TOOLS} (../shared is absent)")
    if args.workers > 1 and not (args.ledger or "").startswith("postgresql://"):
        raise SystemExit("--workers needs --ledger postgresql://... (workers share a PostgreSQL ledger)")
    if args.compare and (not args.suppressions or args.workers > 1 or args.ledger):
        raise SystemExit("--compare needs --suppressions S (one worker, a SQLite ledger: each send gets a new one)")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_site(folder, args.subscribers, args.variants, args.overlap)
        os.chdir(folder)  # settings files of the current folder are read: the generated site has none
        try:
            if not args.compare:
                show(args, run_once(folder / "run", args, args.suppressions, args.sample))
                return
            # Interleaved, so that a busy moment of the machine weighs on both cases alike.
            runs: dict[int, list[dict]] = {0: [], args.suppressions: []}
            for round_number in range(args.rounds):
                for count in (0, args.suppressions):
                    run = run_once(folder / f"run-{round_number}-{count}", args, count, 0)
                    runs[count].append(run)
                    print(f"round {round_number + 1}, {count:,} suppressions: {run['wall']:.2f} s, "
                          f"peak {run['peak']:.0f} MB, exactly once: {run['once']}", flush=True)
        finally:
            os.chdir(REPO)
    for count, found in runs.items():
        print(f"\n{count:,} suppressions, best of {len(found)} (by total wall):")
        show(args, min(found, key=lambda run: run["wall"]), suppressions=count)
    for measure, unit in (("wall", "wall"), ("cpu", "CPU")):
        without, with_them = (min(run[measure] for run in runs[count]) for count in (0, args.suppressions))
        print(f"{args.suppressions:,} suppressions add {100 * (with_them / without - 1):+.1f}% {unit} time "
              f"(best {with_them:.2f} s against {without:.2f} s; each round without/with: "
              + ", ".join(f"{a[measure]:.2f}/{b[measure]:.2f}" for a, b in zip(runs[0], runs[args.suppressions], strict=True)) + ")")


def run_once(folder: Path, args, suppressions: int, sample: int) -> dict:
    """One send of the generated site (in the current folder) with its own
    ledger and stand-in under ``folder``: the phases, the peak RSS, the
    exactly-once check, and the naive way on ``sample`` subscribers."""
    folder.mkdir()
    record = folder / "sent.jsonl"
    url, stop, stand_in_pid = start_stand_in(record)
    # The naive way has a stand-in of its own, so that its requests stay out of the send's record.
    naive_url, naive_stop, _ = start_stand_in(folder / "naive.jsonl") if sample else (None, lambda: None, None)
    try:
        site = Path.cwd()
        values = dict(
            provider="sendgrid", sendgrid_api_key=API_KEY, sendgrid_host=url, concurrency=args.concurrency,
            sources=["posts"], subscribers=str(site / ("lists" if args.overlap else "readers.csv")), ledger=args.ledger or str(folder / "digest.db"),
            site_url="https://gazette.example.org/", timezone="UTC", schedule="weekly monday 08:00",
            sender_email="digest@gazette.example.org", secret_key=SECRET,
        )
        settings = load_settings(**values)
        naive_settings = load_settings(**{**values, "sendgrid_host": naive_url}) if sample else None
        naive_seconds = 0.0
        if suppressions:  # in a child, so this process's peak RSS is the send's alone
            code = ("import sys; sys.path.insert(0, sys.argv[3]); from digest import suppressions; "
                    "suppressions.add_many(sys.argv[1], ((f'left{n}@example.net', 'unsubscribed', None) for n in range(int(sys.argv[2]))), 'bench')")
            subprocess.run([sys.executable, "-c", code, str(settings.ledger), str(suppressions), str(REPO)], check=True)
        # The disk writes what was just written (the site, the suppressions) before the clock starts,
        # in every case alike: otherwise the ledger's fsyncs wait behind that write-back.
        os.sync()
        phases = Phases(url, stand_in_pid)
        if args.workers == 1:
            issue = phases.run("plan: articles, list, variants", lambda: plan_issue(settings, IssueRequest(as_of=AS_OF)))
            rendered = phases.run("render once per variant", lambda: render_issue(issue, settings))
            # Half of the naive sample now (each variant was rendered once, as before the other
            # half), half after the send: both ways are timed across the same minute, so that the
            # machine slowing down (it is shared) weighs on both alike.
            people = naive_people(sample, issue) if sample else []
            if people:
                naive_seconds += naive(people[: len(people) // 2], issue, settings, SendGridProvider(naive_settings))
            ledger = Ledger.from_settings(settings)
            phases.run("queue: every recipient in the ledger", lambda: queue_issue(issue, ledger, rendered, scheduled_at=issue.scheduled_at),
                       recipients=args.subscribers)
            issue_variants, key = len(issue.variants), issue.context.key
            sample_issue = issue if sample else None
            del issue  # what the send needs is in the ledger
            report = phases.run("send: claim, POST, record", lambda: send_queued(ledger, key, SendGridProvider(settings), settings),
                                recipients=args.subscribers)
            ledger.close()
        else:
            env = {**os.environ, "PYTHONPATH": str(REPO), **{f"DIGEST_{k.upper()}": str(v) for k, v in values.items()}}
            env["DIGEST_SOURCES"] = json.dumps(values["sources"])

            def workers():
                started = [subprocess.Popen([sys.executable, "-m", "digest", "send", "--as-of", AS_OF.isoformat(), "--json"],
                                            env=env, cwd=site, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                           for _ in range(args.workers)]
                return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in started]

            summaries = phases.run(f"{args.workers} workers: plan, queue, send", workers, recipients=args.subscribers, children=True)
            report = None
            issue_variants, key = len(summaries[0]["variants"]), summaries[0]["issue"]
            sample_issue = plan_issue(settings, IssueRequest(as_of=AS_OF)) if sample else None
            people = naive_people(sample, sample_issue) if sample else []
        once, lines = exactly_once(record, args.subscribers)
        if people:
            rest = people[len(people) // 2:] if args.workers == 1 else people
            naive_seconds += naive(rest, sample_issue, settings, SendGridProvider(naive_settings))
        per_recipient_naive = naive_seconds / len(people) if people else 0.0
    finally:
        stop()
        naive_stop()
    return dict(phases=phases, wall=sum(row[1] for row in phases.rows), cpu=sum(row[2] for row in phases.rows), peak=max(row[3] for row in phases.rows), once=once,
                lines=lines, report=report, variants=issue_variants, naive=per_recipient_naive, sample=len(people))


def show(args, run: dict, *, suppressions: int | None = None) -> None:
    """Print one run's table and figures."""
    suppressions = args.suppressions if suppressions is None else suppressions
    print(f"subscribers {args.subscribers:,} in {run['variants']} variants, suppressions {suppressions:,}, "
          f"{f'on two lists {args.overlap:.0%}, ' if args.overlap else ''}workers {args.workers}, concurrency {args.concurrency}, ledger {'PostgreSQL' if args.ledger else 'SQLite'}, stand-in --lean")
    run["phases"].print()
    if run["report"] is not None:
        print(f"ledger                                {run['report'].counts}")
    print(f"peak RSS of the sender                {run['peak']:8.0f} MB{' (the largest worker)' if args.workers > 1 else ''}")
    print(f"stand-in recorded each subscriber exactly once: {run['once']} ({run['lines']:,} records)")
    if run["sample"]:
        naive_total = run["naive"] * args.subscribers
        print(f"naive (render+inline per subscriber, one request each), {run['sample']} sampled: "
              f"{run['naive'] * 1000:.1f} ms per recipient, about {naive_total:,.0f} s for {args.subscribers:,}")
        print(f"ratio naive / digest                  {naive_total / run['wall']:8.0f}x")


if __name__ == "__main__":
    main()
