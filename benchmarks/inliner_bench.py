"""css-inline against premailer on real variants: correctness (the cascade
cases of tests/test_inlining_browser.py, compared in headless Chromium), time
per call and size of the inlined HTML.

    python benchmarks/inliner_bench.py            # variants of 5, 20 and 60 articles
    python benchmarks/inliner_bench.py -n 100 --runs 20

Prints, per inliner: how many cascade cases give the same computed styles
as the original page (needs Chromium and playwright; skipped otherwise), and
per variant size: milliseconds per inline_css call (median of --runs) and
the inlined HTML's size in KB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rendering_samples import article, issue  # noqa: E402

import digest.rendering as rendering  # noqa: E402
from digest.inlining import INLINERS, inline_css  # noqa: E402
from digest.settings import load_settings  # noqa: E402


def raw_variant(count: int, settings) -> str:
    """The HTML of a variant of ``count`` articles before inlining."""
    pages: list[str] = []
    original = rendering.inline_css
    rendering.inline_css = lambda html, *args: pages.append(html) or original(html, *args)
    try:
        items = [article(n, image=f"https://example.org/images/{n}.jpg" if n % 2 else None) for n in range(count)]
        rendering.render_variant(items, issue(), settings, variant_key="bench", web_page=True)  # no budget: one render
    finally:
        rendering.inline_css = original
    return pages[0]


def correctness() -> dict[str, str]:
    try:
        from playwright.sync_api import sync_playwright
        from test_inlining_browser import CASES, CHROMIUM, PAGE, SITUATIONS, differences

        from digest.preview import CHROMIUM_ARGS
    except BaseException as exc:  # noqa: BLE001 - pytest.skip raises a BaseException when Chromium is missing
        return {name: f"not measured ({exc})" for name in INLINERS}
    out = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        pages = {situation: [browser.new_page(viewport={"width": situation[0], "height": 800}, color_scheme=situation[1]) for _ in range(2)] for situation in SITUATIONS}
        for name in INLINERS:
            wrong = []
            for case, (css, body) in CASES.items():
                page = PAGE.format(css=css, body=body)
                if differences(pages, page, inline_css(page, None, name)):
                    wrong.append(case)
            out[name] = f"{len(CASES) - len(wrong)}/{len(CASES)} cascade cases right" + (f"; wrong: {'; '.join(wrong)}" if wrong else "")
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--articles", type=int, action="append", help="articles in the variant (repeatable)")
    parser.add_argument("--runs", type=int, default=10, help="calls per inliner and variant")
    options = parser.parse_args()
    settings = load_settings(site_url="https://example.org/")
    for name, verdict in correctness().items():
        print(f"{name}: {verdict}")
    for count in options.articles or [5, 20, 60]:
        raw = raw_variant(count, settings)
        for name in INLINERS:
            times = []
            for _ in range(options.runs):
                start = time.perf_counter()
                out = inline_css(raw, settings.site_url, name)
                times.append(time.perf_counter() - start)
            print(
                f"{count:4} articles, {name:10}: {statistics.median(times) * 1000:7.1f} ms per call, "
                f"{len(raw.encode()) / 1024:6.1f} KB -> {len(out.encode()) / 1024:6.1f} KB"
            )


if __name__ == "__main__":
    main()
