"""Audience speed: reading a large list, applying suppressions and
preferences, grouping into variants and signing every unsubscribe link.

    python benchmarks/audience_bench.py                  # 100,000 subscribers
    python benchmarks/audience_bench.py -n 20000 --suppressed 2000

Writes a synthetic list (addresses over 200 domains, tag choices drawn from
12 tags) and a ledger with ``--suppressed`` suppressions and ``--preferences``
stored choices to a temporary folder, then prints wall time per phase,
subscribers per second and peak memory (max RSS of this process).
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest import suppressions  # noqa: E402
from digest.articles import Article  # noqa: E402
from digest.audience import build_variants, load_audience  # noqa: E402
from digest.settings import load_settings  # noqa: E402
from digest.unsubscribe import recipient_for  # noqa: E402

TAGS = ["roses", "bees", "compost", "seeds", "events", "recipes", "weather", "wildlife", "news", "growing", "tools", "ponds"]


def write_list(path: Path, count: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,name,tags\n")
        for n in range(count):
            tags = ";".join(rng.sample(TAGS, rng.randint(0, 3)))
            handle.write(f"Reader.{n}@Domain{n % 200}.example.org,Reader {n},{tags}\n")


def write_ledger(path: Path, count: int, suppressed: int, preferences: int, rng: random.Random) -> None:
    with suppressions.connect(path) as conn:
        for n in rng.sample(range(count), suppressed):
            suppressions.add(conn, f"reader.{n}@domain{n % 200}.example.org", "unsubscribed", "bench", "readers")
        for n in rng.sample(range(count), preferences):
            suppressions.set_preferences(conn, f"reader.{n}@domain{n % 200}.example.org", "readers", rng.sample(TAGS, 2))
    conn.close()


def articles() -> list[Article]:
    when = datetime(2026, 11, 27, tzinfo=UTC)
    return [
        Article(f"a{i}", f"Article {i}", f"https://example.org/{i}", when, (TAGS[i % 12], TAGS[(i * 5) % 12]), "", "", None, None, 1, "bench")
        for i in range(12)
    ]


def timed(label: str, count: int, action):
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"{label:<38} {seconds:7.2f} s  {count / seconds:>10,.0f} subscribers/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("--suppressed", type=int, default=5_000)
    parser.add_argument("--preferences", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "subscribers").mkdir()
        write_list(root / "subscribers" / "readers.csv", options.subscribers, rng)
        write_ledger(root / "digest.db", options.subscribers, options.suppressed, options.preferences, rng)
        settings = load_settings(subscribers=root / "subscribers", ledger=root / "digest.db", secret_key="bench-" + "x" * 30)
        n = options.subscribers
        audience = timed("load_audience (validate, suppress, prefs)", n, lambda: load_audience(settings))
        variants = timed("build_variants (12 articles)", n, lambda: build_variants(articles(), audience.subscribers))
        timed("recipient_for (sign every link)", n, lambda: [recipient_for(s, settings) for v in variants for s in v.subscribers])
        print(
            f"{len(audience.subscribers):,} subscribers, {len(audience.suppressed):,} suppressed, "
            f"{len(audience.problems)} problems, {len(variants)} variants"
        )
        print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
