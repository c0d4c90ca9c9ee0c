"""Sending speed: N synthetic subscribers in V variants through the ledger and
the SendGrid provider to the local stand-in, against the naive way.

    python benchmarks/send_bench.py                      # 100,000 subscribers, 20 variants
    python benchmarks/send_bench.py -n 5000 -v 5 --sample 100

The way digest sends: each variant rendered (and CSS-inlined) once; the
audience written to the ledger in one transaction, from a generator (no list
of subscriber objects); batches of up to 1000 claimed from the ledger and sent
``--concurrency`` at a time, one request per batch. The naive way, timed on
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
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TOOLS = REPO.parent / "shared" / "tools"
sys.path.insert(0, str(REPO))

from digest.articles import Article  # noqa: E402
from digest.audience import Subscriber  # noqa: E402
from digest.ledger import Ledger  # noqa: E402
from digest.providers import Recipient, Status  # noqa: E402
from digest.providers.sendgrid import SendGridProvider  # noqa: E402
from digest.rendering import IssueContext, RenderedVariant, render_variant  # noqa: E402
from digest.settings import Settings, load_settings  # noqa: E402
from digest.unsubscribe import recipient_for  # noqa: E402

API_KEY = "SG.benchmark"
ISSUE_KEY = "2026-W48"
AS_OF = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


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


def synthetic_articles(variants: int) -> list[list[Article]]:
    """Per variant: three articles everyone gets and two of its own tag."""

    def article(n: int, tag: str) -> Article:
        return Article(
            id=f"https://gazette.example.org/{n}", title=f"Allotment notes №{n}: leeks, frost and “soil”",
            url=f"https://gazette.example.org/{n}", published=AS_OF - timedelta(hours=n + 1), tags=(tag,),
            summary_html=f"<p>What we learned this week about bed {n}, with <em>care</em>.</p>" * 3,
            summary_text=f"What we learned this week about bed {n}, with care. " * 3,
            author="A. Gardener", image=None, reading_minutes=4, source="bench",
        )

    common = [article(n, "news") for n in range(3)]
    return [common + [article(100 + 2 * v, f"tag{v}"), article(101 + 2 * v, f"tag{v}")] for v in range(variants)]


def render(articles: list[Article], settings: Settings, key: str) -> RenderedVariant:
    context = IssueContext(ISSUE_KEY, AS_OF, AS_OF - timedelta(days=7), AS_OF)
    return render_variant(articles, context, settings, variant_key=key)


def subscriber(n: int) -> Subscriber:
    return Subscriber(email=f"reader{n}@example.org", name=f"Reader {n}", tags=frozenset(), list_name="main", line=n + 2)


def audience(count: int, variants: int) -> Iterator[tuple[Recipient, str]]:
    """(recipient, variant key) for ``count`` subscribers, made one at a time.
    The ledger needs only the address, id and list: links are signed at send
    time, once."""
    for n in range(count):
        email = f"reader{n}@example.org"
        yield Recipient(email, f"Reader {n}", email, "main", unsubscribe_url=""), f"v{n % variants}"


def send_all(ledger: Ledger, provider: SendGridProvider, rendered: dict[str, RenderedVariant],
             settings: Settings, concurrency: int) -> Counter:
    """Claim and send every pending batch, ``concurrency`` at a time; a
    variant goes back in the queue while it has rows left."""
    work: queue.Queue[str] = queue.Queue()
    for key in rendered:
        work.put(key)
    outcome: Counter = Counter()
    lock = threading.Lock()

    def worker():
        while True:
            try:
                key = work.get_nowait()
            except queue.Empty:
                return
            batch = ledger.claim_batch(ISSUE_KEY, key, provider.max_batch_size)
            if not batch:
                continue
            work.put(key)
            # The ledger keeps no names (it stores what was sent, not the audience); the
            # send loop takes them from the audience, here a stand-in name.
            people = [recipient_for(Subscriber(row.email, "Reader", frozenset(), row.list_name, 0), settings)
                      for row in batch]
            results = provider.send_batch(rendered[key], people, ISSUE_KEY)
            ledger.record_results(zip((row.id for row in batch), results), article_ids=rendered[key].article_ids)
            with lock:
                outcome.update(result.status.value for result in results)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def naive(sample: int, variants: int, article_sets: list[list[Article]], provider: SendGridProvider,
          settings: Settings) -> float:
    """Seconds per recipient when rendering and inlining per subscriber and
    sending one request per recipient."""
    started = time.perf_counter()
    for n in range(sample):
        rendered = render(article_sets[n % variants], settings, f"v{n % variants}")
        results = provider.send_batch(rendered, [recipient_for(subscriber(n), settings)], ISSUE_KEY)
        assert results[0].status is Status.ACCEPTED, results[0]
    return (time.perf_counter() - started) / sample


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

    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "sent.jsonl"
        url, stop = start_stand_in(record, args.in_process)
        try:
            settings = load_settings(provider="sendgrid", sendgrid_api_key=API_KEY, sendgrid_host=url,
                                     ledger=Path(folder) / "digest.db", site_url="https://gazette.example.org/")
            provider = SendGridProvider(settings)
            article_sets = synthetic_articles(args.variants)

            started = time.perf_counter()
            rendered = {f"v{v}": render(article_sets[v], settings, f"v{v}") for v in range(args.variants)}
            render_seconds = time.perf_counter() - started

            with Ledger(settings.ledger) as ledger, ledger.run_lock():
                ledger.create_issue(ISSUE_KEY, AS_OF - timedelta(days=7), AS_OF,
                                    sorted({a.id for s in article_sets for a in s}), scheduled_at=AS_OF)
                mark = time.perf_counter()
                ledger.enqueue(ISSUE_KEY, audience(args.subscribers, args.variants))
                enqueue_seconds = time.perf_counter() - mark
                mark = time.perf_counter()
                outcome = send_all(ledger, provider, rendered, settings, args.concurrency)
                send_seconds = time.perf_counter() - mark
                counts = ledger.counts(ISSUE_KEY)
            wall = time.perf_counter() - started
            requests = stand_in_stats(url)["requests"]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            lines = record.read_text(encoding="utf-8").splitlines()
            per_address = Counter(json.loads(line)["to"] for line in lines)
            exactly_once = len(per_address) == args.subscribers and set(per_address.values()) == {1}

            per_recipient_naive = naive(args.sample, args.variants, article_sets, provider, settings)
        finally:
            stop()

    html_kb = sum(len(r.html.encode()) for r in rendered.values()) / len(rendered) / 1024
    print(f"subscribers {args.subscribers:,} in {args.variants} variants (HTML {html_kb:.0f} KB each), "
          f"concurrency {args.concurrency}, stand-in {'in-process' if args.in_process else 'subprocess'}")
    print(f"  render once per variant   {render_seconds:8.2f} s")
    print(f"  ledger: enqueue all       {enqueue_seconds:8.2f} s")
    print(f"  send: claim, POST, record {send_seconds:8.2f} s")
    print(f"wall time                   {wall:8.2f} s")
    print(f"requests                    {requests:8,}")
    print(f"recipients per second       {args.subscribers / wall:8,.0f}")
    print(f"peak memory (max RSS)       {peak_mb:8.0f} MB")
    print(f"results                     {dict(outcome)}; ledger {dict((k.value, v) for k, v in counts.items() if v)}")
    print(f"stand-in recorded each subscriber exactly once: {exactly_once} ({len(lines):,} records)")
    naive_total = per_recipient_naive * args.subscribers
    print(f"naive (render+inline per subscriber, one request each), {args.sample} sampled: "
          f"{per_recipient_naive * 1000:.1f} ms per recipient, about {naive_total:,.0f} s for {args.subscribers:,}")
    print(f"ratio naive / digest        {naive_total / wall:8.0f}x")


if __name__ == "__main__":
    main()
