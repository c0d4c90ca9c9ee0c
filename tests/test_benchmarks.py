"""The benchmarks still run: `benchmarks/send_bench.py` on a small list, in
one process and as workers sharing a PostgreSQL ledger, reports that the
SendGrid stand-in got every subscriber exactly once. Its figures are not
checked here (they are for a person to read, on a quiet machine); that it
runs end to end, through the same path as `digest send`, is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_SENDGRID

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "send_bench.py"

pytestmark = pytest.mark.skipif(not FAKE_SENDGRID.is_file(), reason=f"the SendGrid stand-in is not at {FAKE_SENDGRID} (../shared is absent)")


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_send_benchmark_sends_every_subscriber_once_and_prints_its_ratio():
    out = run_bench("-n", "300", "-v", "3", "--sample", "4")
    assert "stand-in recorded each subscriber exactly once: True (300 records)" in out
    assert re.search(r"ratio naive / digest +\d+x", out)
    # 300 readers in 3 variants of 100: one request per variant (batches hold up to 1000).
    requests = re.search(r"send: claim, POST, record +[\d.]+ +[\d.]+ +\d+ +([\d,]+) ", out)
    assert requests and requests.group(1) == "3", out


def test_the_send_benchmark_runs_its_workers_on_a_postgresql_ledger(postgres_url):
    out = run_bench("-n", "400", "-v", "2", "--workers", "2", "--ledger", postgres_url, "--sample", "2")
    assert "stand-in recorded each subscriber exactly once: True (400 records)" in out
    assert "2 workers: plan, queue, send" in out
