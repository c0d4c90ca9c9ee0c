"""Sending speed: N synthetic subscribers in V variants sent by the product's
own path (``digest.issue.plan_issue`` then ``digest.delivery.send_issue``
with the SendGrid provider and a ledger file) to the local stand-in, against
the naive way.

    python benchmarks/send_bench.py                      # 100,000 subscribers, 20 variants
    python benchmarks/send_bench.py -n 20000 -v 5 --sample 100

A site is generated in a temporary folder: Markdown articles (three "news"
ones everyone gets, two per variant tag) and a subscriber CSV whose rows
follow one tag each. The send is what `digest send` does after parsing its
options: plan the issue (read the articles and the list, validate every
address, group variants), render and inline each variant once, write the
audience to the ledger in one transaction, then requests of up to 1000
recipients, ``--concurrency`` at a time. The naive way, timed on
``--sample`` subscribers and extrapolated: render and inline per subscriber,
one request per recipient.

The stand-in (../shared/tools/fake_sendgrid.py) runs as a separate process so
that its work does not count against ours; ``--in-process`` starts it in a
thread instead. Prints wall time per phase, requests made, recipients per
second, peak memory (max RSS of this process), whether the stand-in recorded
every subscriber exactly once, and the speed ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TOOLS = REPO.parent / "shared" / "tools"
sys.path.insert(0, str(REPO))

from digest.delivery import render_issue, send_issue  # noqa: E402
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

ARTICLE = """\
---
title: "Allotment notes №{n}: leeks, frost and “soil”"
date: {date}
tags: [{tag}]
author: A. Gardener
---
{body}
"""


def start_stand_in(record: Path, in_process: bool):
    """(base URL, stop function) of a running stand-in recording to ``record``."""
    if in_process:
        sys.path.insert(0, str(SHARED_TOOLS))
        from fake_sendgrid import serve

        server, _ = serve(port=0, record=record, api_keys=(API_KEY,), keep_bodies=2)
        return server.url, server.stop
    process = subprocess.Popen(
        [sys.executable, str(SHARED_TOOLS / "fake_sendgrid.py"), "--port", "0", "--record", str(record),
         "--api-key", API_KEY, "--keep-bodies", "2"],
        stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"the stand-in did not start: {line!r}")

    def stop():
        process.terminate()
        process.wait(timeout=10)

    return line.removeprefix("listening on "), stop


def stand_in_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return json.load(response)


def write_site(folder: Path, subscribers: int, variants: int) -> None:
    """posts/ (three "news" articles, two per tag0..tagV-1) and readers.csv
    (subscriber n follows news and tag n % V), written row by row."""
    posts = folder / "posts"
    posts.mkdir()
    body = "What we learned this week about the beds, with *care* and a [link](https://gazette.example.org/).\n\n" * 3
    tags = ["news"] * 3 + [f"tag{v}" for v in range(variants) for _ in range(2)]
    for n, tag in enumerate(tags):
        date = (SCHEDULED - timedelta(hours=n + 1)).isoformat()
        (posts / f"{n}.md").write_text(ARTICLE.format(n=n, date=date, tag=tag, body=body), encoding="utf-8")
    with open(folder / "readers.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "tags"])
        writer.writerows((f"reader{n}@example.org", f"Reader {n}", f"news;tag{n % variants}") for n in range(subscribers))


def naive(sample: int, issue, settings, provider: SendGridProvider) -> float:
    """Seconds per recipient when rendering and inlining per subscriber and
    sending one request per recipient."""
    people = [(variant, subscriber) for variant in issue.variants for subscriber in variant.subscribers[:sample]]
    people = people[::max(1, len(people) // sample)][:sample]
    started = time.perf_counter()
    for variant, subscriber in people:
        rendered = render_variant(variant.articles, issue.context, settings, variant_key=variant.key, tags=variant.tags)
        results = provider.send_batch(rendered, [recipient_for(subscriber, settings)], "naive")
        assert results[0].status is Status.ACCEPTED, results[0]
    return (time.perf_counter() - started) / len(people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("-v", "--variants", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight (the concurrency setting)")
    parser.add_argument("--sample", type=int, default=200, help="subscribers sent the naive way")
    parser.add_argument("--in-process", action="store_true", help="run the stand-in in a thread of this process")
    args = parser.parse_args()
    if not (SHARED_TOOLS / "fake_sendgrid.py").is_file():
        raise SystemExit(f"the SendGrid stand-in is not at {SHARED_TOOLS} (../shared is absent)")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_site(folder, args.subscribers, args.variants)
        os.chdir(folder)  # settings files of the current folder are read: the generated site has none
        record = folder / "sent.jsonl"
        url, stop = start_stand_in(record, args.in_process)
        try:
            settings = load_settings(
                provider="sendgrid", sendgrid_api_key=API_KEY, sendgrid_host=url, concurrency=args.concurrency,
                sources=["posts"], subscribers=folder / "readers.csv", ledger=folder / "digest.db",
                site_url="https://gazette.example.org/", timezone="UTC", schedule="weekly monday 08:00",
            )
            started = time.perf_counter()
            issue = plan_issue(settings, IssueRequest(as_of=AS_OF))
            plan_seconds = time.perf_counter() - started
            mark = time.perf_counter()
            rendered = render_issue(issue, settings)
            render_seconds = time.perf_counter() - mark
            mark = time.perf_counter()
            provider = SendGridProvider(settings)
            with Ledger.from_settings(settings) as ledger:
                report = send_issue(issue, provider, settings, ledger=ledger, scheduled_at=issue.scheduled_at,
                                    rendered=rendered)
            send_seconds = time.perf_counter() - mark
            wall = time.perf_counter() - started
            requests = stand_in_stats(url)["requests"]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            lines = record.read_text(encoding="utf-8").splitlines()
            per_address = Counter(json.loads(line)["to"] for line in lines)
            exactly_once = len(per_address) == args.subscribers and set(per_address.values()) == {1}

            per_recipient_naive = naive(args.sample, issue, settings, SendGridProvider(settings))
        finally:
            stop()
            os.chdir(REPO)

    html_kb = sum(len(r.html.encode()) for r in rendered) / len(rendered) / 1024
    print(f"subscribers {args.subscribers:,} in {len(issue.variants)} variants (HTML {html_kb:.0f} KB each), "
          f"concurrency {args.concurrency}, stand-in {'in-process' if args.in_process else 'subprocess'}")
    print(f"  plan: articles, list, variants {plan_seconds:8.2f} s")
    print(f"  render once per variant        {render_seconds:8.2f} s")
    print(f"  send: ledger, POST, record     {send_seconds:8.2f} s")
    print(f"wall time                        {wall:8.2f} s")
    print(f"requests                         {requests:8,}")
    print(f"recipients per second            {args.subscribers / wall:8,.0f}")
    print(f"peak memory (max RSS)            {peak_mb:8.0f} MB")
    print(f"ledger                           {report.counts}")
    print(f"stand-in recorded each subscriber exactly once: {exactly_once} ({len(lines):,} records)")
    naive_total = per_recipient_naive * args.subscribers
    print(f"naive (render+inline per subscriber, one request each), {args.sample} sampled: "
          f"{per_recipient_naive * 1000:.1f} ms per recipient, about {naive_total:,.0f} s for {args.subscribers:,}")
    print(f"ratio naive / digest             {naive_total / wall:8.0f}x")


if __name__ == "__main__":
    main()
