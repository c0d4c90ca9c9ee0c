"""What editors wait for, on the whole shared corpus (../shared/corpus):

* the preview's re-render after a template edit: ``digest preview --serve``
  plans and renders afresh on every reload (:func:`digest.preview.build_preview`);
  sources that did not change come from the parsed-source cache (path, size,
  mtime), so only the template's work is redone;
* the corpus dry run: ``digest send --dry-run`` over every corpus post
  folder and feed, as a separate process (Python's start included).

    python benchmarks/editor_bench.py
    python benchmarks/editor_bench.py --repeat 5

Prints each figure (best and median of ``--repeat`` runs) and the target
(issue 12: re-render <= 0.5 s, dry run <= 2 s). Times are wall clock on a
machine shared with others: read the best.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
sys.path.insert(0, str(REPO))

from digest.issue import IssueRequest  # noqa: E402
from digest.preview import build_preview  # noqa: E402
from digest.rendering import default_templates_dir  # noqa: E402
from digest.settings import load_settings  # noqa: E402

AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


def corpus_sources() -> list[str]:
    sources = [str(CORPUS / "seed" / "seed-article.md")]
    sources += sorted(str(path) for path in (CORPUS / "posts").iterdir() if path.is_dir())
    sources += sorted(str(path) for path in (CORPUS / "feeds").iterdir() if path.is_file())
    return sources


def write_readers(folder: Path) -> Path:
    readers = folder / "readers.csv"
    readers.write_text("email,name,tags\nada@example.org,Ada,\nbob@example.org,Bob,rust\n", encoding="utf-8")
    return readers


def rerender_after_template_edit(folder: Path, repeat: int) -> list[float]:
    """Seconds of build_preview after each edit of the digest template (the
    first, cold build not counted)."""
    templates = folder / "templates"
    shutil.copytree(default_templates_dir(), templates)
    settings = load_settings(
        sources=corpus_sources(), subscribers=write_readers(folder), templates_dir=templates,
        site_url="https://digest.example/", timezone="UTC",
    )
    request = IssueRequest(as_of=AS_OF, since="1990-01-01")
    build_preview(settings, request)  # the editor opened the preview
    template = templates / "digest.html.j2"
    times = []
    for n in range(repeat):
        text = template.read_text(encoding="utf-8")
        template.write_text(text + f"\n{{# edit {n} #}}\n", encoding="utf-8")
        os.utime(template, ns=(time.time_ns() + n * 1_000_000_000,) * 2)  # a new mtime, however coarse the clock
        started = time.perf_counter()
        build_preview(settings, request)
        times.append(time.perf_counter() - started)
    return times


def dry_run(folder: Path, repeat: int) -> list[float]:
    readers = write_readers(folder)
    command = [sys.executable, "-m", "digest", "send", "--dry-run", "--outbox", str(folder / "outbox"),
               "--subscribers", str(readers), "--since", "1990-01-01", "--as-of", AS_OF.date().isoformat()]
    for source in corpus_sources():
        command += ["--content", source]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}, "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"the dry run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (CORPUS / "seed" / "seed-article.md").is_file():
        raise SystemExit(f"the shared corpus is not at {CORPUS} (../shared is absent)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        rerender = rerender_after_template_edit(folder, args.repeat)
        dry = dry_run(folder, args.repeat)
    print(f"corpus: {len(corpus_sources())} sources")
    print(f"preview re-render after a template edit  best {min(rerender):6.2f} s  median {statistics.median(rerender):6.2f} s  (target <= 0.5 s)")
    print(f"corpus dry run (a new process)           best {min(dry):6.2f} s  median {statistics.median(dry):6.2f} s  (target <= 2 s)")


if __name__ == "__main__":
    main()
