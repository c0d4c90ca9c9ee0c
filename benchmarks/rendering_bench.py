"""Rendering speed: one variant of N articles rendered and inlined (with the
size budget at work for large N), then the per-recipient steps.

    python benchmarks/rendering_bench.py                 # 10, 100 and 300 articles
    python benchmarks/rendering_bench.py -n 50 -n 500 --recipients 2000

Prints, per article count: wall time of render_variant, how many times the
HTML was rendered and inlined (1 unless the size budget had to step in), the
HTML size and the budget's notes; then the time per recipient of
personalize() (the outbox/SMTP per-person step) and of build_message() (the
whole MIME message, most of it the email package's header parsing).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import digest.rendering as rendering  # noqa: E402
from digest.articles import Article  # noqa: E402
from digest.messages import build_message  # noqa: E402
from digest.recipients import Recipient  # noqa: E402
from digest.settings import load_settings  # noqa: E402

AS_OF = datetime(2026, 11, 30, 8, tzinfo=UTC)


def synthetic_articles(count: int) -> list[Article]:
    words = "allotment beans compost dahlias espalier fennel gooseberries hedging irises jasmine kale leeks".split()
    items = []
    for n in range(count):
        text = " ".join(words[(n + i) % len(words)] for i in range(55)) + "."
        items.append(
            Article(
                id=f"https://example.org/{n}/", title=f"Plot {n}: the week’s “{words[n % 12]}”", url=f"https://example.org/{n}/",
                published=AS_OF - timedelta(hours=n), tags=(words[n % 5],), summary_html=f"<p>{text}</p>", summary_text=text,
                author=None, image=f"https://example.org/{n}.jpg" if n % 3 == 0 else None, reading_minutes=3, source="bench",
            )
        )
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--articles", type=int, action="append", help="articles in the variant (repeatable)")
    parser.add_argument("--recipients", type=int, default=1000, help="recipients for the per-person timings")
    options = parser.parse_args()
    settings = load_settings()  # digest.toml of the working folder, if any
    context = rendering.IssueContext("bench", AS_OF, AS_OF - timedelta(days=7), AS_OF)

    inlined = 0
    original = rendering.inline_css

    def counting(html: str, *args: object) -> str:
        nonlocal inlined
        inlined += 1
        return original(html, *args)

    rendering.inline_css = counting
    rendered = None
    for count in options.articles or [10, 100, 300]:
        inlined = 0
        start = time.perf_counter()
        rendered = rendering.render_variant(synthetic_articles(count), context, settings, variant_key="bench")
        took = time.perf_counter() - start
        size = len(rendered.html.encode()) / 1024
        print(f"{count:5d} articles: {took:6.2f} s, {inlined} render(s), {size:5.1f} KB  {'; '.join(rendered.notes)}")

    people = [
        Recipient(f"r{i}@example.org", f"Reader {i}", f"r{i}@example.org", "main", f"https://example.org/u?t={i}")
        for i in range(options.recipients)
    ]
    start = time.perf_counter()
    for person in people:
        rendering.personalize(rendered, person)
    per_person = (time.perf_counter() - start) / len(people)
    start = time.perf_counter()
    for person in people:
        build_message(rendered, person, settings, issue_key="bench")
    per_message = (time.perf_counter() - start) / len(people)
    print(f"personalize: {per_person * 1e3:.3f} ms per recipient; build_message: {per_message * 1e3:.2f} ms per recipient")


if __name__ == "__main__":
    main()
