"""Shared fixtures: the local SendGrid stand-in (../shared/tools/fake_sendgrid.py)
in this process or as a program, a real aiosmtpd server on 127.0.0.1 whose
answers a test can steer, and small sites of our own on which tests run the
real `digest` command line."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import frontmatter
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FAKE_SENDGRID = SHARED / "tools" / "fake_sendgrid.py"
SENDGRID_KEY = "SG.test-key-not-a-secret"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test starts in an empty working directory with no DIGEST_*
    variables, so the repository's own digest.toml (the example site) and
    the developer's environment never leak into a test's settings."""
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def load_fake_sendgrid():
    """The stand-in as a module (it lives outside the repo); skips the test
    when ../shared is absent."""
    if not FAKE_SENDGRID.is_file():
        pytest.skip(f"the SendGrid stand-in is not at {FAKE_SENDGRID} (../shared is absent)")
    if "fake_sendgrid" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_sendgrid", FAKE_SENDGRID)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_sendgrid"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["fake_sendgrid"]


@pytest.fixture(scope="session")
def _loopback_without_proxy():
    # urllib honours http_proxy; the stand-in is on loopback.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        yield


@pytest.fixture
def start_fake_sendgrid(tmp_path, _loopback_without_proxy):
    """``start(**options)`` runs the stand-in on a free loopback port with
    ``options`` (``fail_rate``, ``rate_limit``, ``accept_then_drop``,
    ``max_body_bytes``...) and only ``SENDGRID_KEY`` accepted; each server
    records to its own JSONL file and is stopped after the test."""
    fake = load_fake_sendgrid()
    servers = []

    def start(**options):
        options.setdefault("api_keys", (SENDGRID_KEY,))
        server, _ = fake.serve(port=0, record=tmp_path / f"sendgrid-{len(servers)}.jsonl", **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def _shared_fake_sendgrid(tmp_path_factory, _loopback_without_proxy):
    fake = load_fake_sendgrid()
    server, _ = fake.serve(port=0, record=tmp_path_factory.mktemp("sendgrid") / "sent.jsonl", api_keys=(SENDGRID_KEY,))
    yield server
    server.stop()


@pytest.fixture
def fake_sendgrid(_shared_fake_sendgrid):
    """The stand-in with default (strict) settings, its records and request
    ring cleared for this test (one server for the session: stopping one
    takes half a second)."""
    _shared_fake_sendgrid.reset()
    return _shared_fake_sendgrid


class SMTPHandler:
    """aiosmtpd handler steered by tests.

    ``messages``: the envelopes received. ``rcpt_replies``: address -> list
    of replies to give to its next RCPT commands, in turn (e.g. ``["451 4.7.1
    Try again later"]``; once used up, the address is accepted).
    ``hang_ups``: how many of the next MAIL commands are answered by closing
    the connection without a reply (an idle timeout, a crash).
    """

    def __init__(self) -> None:
        self.messages = []
        self.rcpt_replies: dict[str, list[str]] = {}
        self.hang_ups = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.hang_ups:
            self.hang_ups -= 1
            server.transport.abort()
            return "250 OK"  # written nowhere: the transport is gone
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_smtp_server():
    """``start(**controller_options)``: a real aiosmtpd server on 127.0.0.1
    (plain SMTP unless the options say otherwise, e.g. an ``authenticator``)
    with a fresh :class:`SMTPHandler`; returns ``(handler, port)``. Stopped
    after the test."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(**options):
        handler = SMTPHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10, **options)
        controller.start()
        controllers.append(controller)
        return handler, controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp_server):
    """A plain aiosmtpd server: ``(handler, port)``."""
    return start_smtp_server()


# Rendered variants and recipients for the provider tests ---------------------------------


@pytest.fixture
def variant():
    """A rendered variant as rendering makes it: UTF-8 subject, HTML and text
    with the per-person placeholders that personalize()/substitutions() fill."""
    from digest.personalization import html_placeholders, new_nonce, text_placeholders
    from digest.rendering import RenderedVariant

    nonce = new_nonce()
    HTML_PLACEHOLDERS, TEXT_PLACEHOLDERS = html_placeholders(nonce), text_placeholders(nonce)  # noqa: N806

    html = (
        '<!doctype html><html lang="en"><body><table role="presentation" width="600"><tr><td>'
        f"<p>Hello {HTML_PLACEHOLDERS['name']},</p><p>Grüße from the allotment: “quotes” kept.</p>"
        f'<p><a href="{HTML_PLACEHOLDERS["unsubscribe_url"]}">Unsubscribe</a></p>'
        "</td></tr></table></body></html>"
    )
    text = (
        f"Hello {TEXT_PLACEHOLDERS['name']},\n\nGrüße from the allotment: “quotes” kept.\n\n"
        f"Unsubscribe: {TEXT_PLACEHOLDERS['unsubscribe_url']}\n"
    )
    return RenderedVariant(
        variant_key="v-3f9a", subject="Gazette: Rübe & Kürbis and 2 more", preheader="This week",
        html=html, text=text, article_ids=("a1", "a2", "a3"), nonce=nonce,
    )


@pytest.fixture
def make_recipients():
    """``make(n, start=0, names=None)``: recipients reader{i}@example.org,
    named ``names[i - start]`` when given, else "Reader i"."""
    from digest.recipients import Recipient

    def make(n, start=0, names=None):
        return [
            Recipient(
                email=f"reader{i}@example.org",
                name=names[i - start] if names else f"Reader {i}",
                subscriber_id=f"reader{i}@example.org",
                list_name="main",
                unsubscribe_url=f"https://gazette.example.org/unsubscribe?t=tok{i}",
                unsubscribe_mailto="mailto:unsubscribe@gazette.example.org",
            )
            for i in range(start, start + n)
        ]

    return make


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    """``settings_for(**overrides)``: settings read in an empty folder (no
    digest.toml or .env of the repo), with ``overrides``."""
    from digest.settings import load_settings

    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("DIGEST_")]:
        monkeypatch.delenv(name)

    def make(**overrides):
        return load_settings(**overrides)

    return make


@pytest.fixture
def make_provider(settings_for):
    """``make_provider(cls, **settings)``: provider class ``cls`` built from
    the test site's sender and ``settings``; closed after the test."""
    made = []

    def make(cls, **overrides):
        options = {"sender_email": "digest@gazette.example.org", "sender_name": "The Allotment Gazette"}
        provider = cls(settings_for(**{**options, **overrides}))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


# The real command line on a site of our own (the delivery acceptance tests) ---------------

REPO = Path(__file__).resolve().parents[1]

# Issue 2026-W48 of the schedule "weekly monday 08:00" (UTC): scheduled
# 2026-11-23 08:00, window (2026-11-16 08:00, 2026-11-23 08:00]. --as-of takes
# a date as the end of that day, so this date names that Monday's issue.
WEEK48 = "2026-11-23"
WEEK49 = "2026-11-30"

BODY = """\
{title}: what happened at the allotment this week, with “curly quotes” and a few words more.

A second paragraph, so the summary has something to cut.
"""

# (file stem, title, date, tag). Tagged subscribers (news;tagK) get the week's
# "news" article and tagK's, untagged ones every article: six variants in week
# 48. One article falls in week 49 only, for everyone.
ARTICLES = [
    ("news-48", "Grüße aus dem Garten: frost on the leeks", "2026-11-22T09:00:00+00:00", "news"),
    *[(f"tag{k}-48", f"Bed {k} notes: Kürbis and kale", f"2026-11-{17 + k}T10:00:00+00:00", f"tag{k}") for k in range(5)],
    ("news-49", "Winter pruning, step by step", "2026-11-26T09:00:00+00:00", "news"),
]


def reader(n: int) -> tuple[str, str, str]:
    """Subscriber ``n`` of a generated list: (email, name, tags). Every
    seventh name has a comma (SendGrid refuses those in To names) and UTF-8;
    every sixth subscriber chose no tags (every article); half the others
    follow tag4, so that variant outgrows one request of 1000."""
    name = f"Doe, Zoë №{n}" if n % 7 == 0 else f"Reader {n}"
    return f"reader{n}@example.org", name, "" if n % 6 == 5 else f"news;tag{min(n % 8, 4)}"


def tags_of_readers(count: int) -> dict[str, str]:
    """address -> tags of subscribers 0..count-1 of a generated list (see :func:`reader`)."""
    return {address: tags for address, _, tags in (reader(n) for n in range(count))}


@dataclass
class Site:
    """A site in its own folder (digest.toml, posts/, readers.csv) and the
    environment its `digest` runs get: no DIGEST_* of the caller, the repo
    importable, loopback without a proxy; ``settings`` become DIGEST_*
    variables (the API key travels that way, as in cron)."""

    root: Path
    settings: dict[str, object] = field(default_factory=dict)
    started: list[subprocess.Popen] = field(default_factory=list)  # killed at teardown if still running

    def env(self, **settings: object) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}
        env.update(PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for name, value in {**self.settings, **settings}.items():
            env[f"DIGEST_{name.upper()}"] = str(value)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "digest", *args]

    def run(self, *args: str, timeout: float = 120, **settings: object) -> subprocess.CompletedProcess:
        """`digest ARGS` to the end; its output is text. A traceback is a
        failure whatever the exit code (errors are one line)."""
        done = subprocess.run(
            self.command(*args), cwd=self.root, env=self.env(**settings), capture_output=True, text=True,
            timeout=timeout,
        )
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        return done

    def start(self, *args: str, **settings: object) -> subprocess.Popen:
        """`digest ARGS` started in the background, output to run-N.out in the site."""
        with open(self.root / f"run-{len(self.started)}.out", "w") as out:  # the child keeps its own copy
            process = subprocess.Popen(
                self.command(*args), cwd=self.root, env=self.env(**settings), stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append(process)
        return process

    @contextlib.contextmanager
    def serve(self, **settings: object):
        """The real `digest serve` of this site on a free loopback port, its
        public_url pointing at itself (plain http is allowed on loopback
        only); yields its base URL once it accepts connections (polled with a
        deadline), and stops it after."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = self.start("serve", "--port", str(port), public_url=base, **settings)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"digest serve exited: {(self.root / f'run-{len(self.started) - 1}.out').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                pytest.fail("digest serve did not start listening within 30 s")
            time.sleep(0.05)
        try:
            yield base
        finally:
            process.terminate()
            process.wait(timeout=10)

    def status(self, **settings: object) -> dict:
        """`digest status --json`, parsed: {issue key: entry}."""
        done = self.run("status", "--json", **settings)
        assert done.returncode == 0, done.stderr
        return {entry["issue"]: entry for entry in json.loads(done.stdout)["issues"]}

    def write_readers(self, count: int, *, extra: Sequence[tuple[str, str, str]] = ()) -> set[str]:
        """readers.csv with subscribers 0..count-1 (see :func:`reader`) and
        ``extra`` rows; returns every address."""
        rows = [reader(n) for n in range(count)] + list(extra)
        with open(self.root / "readers.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "tags"])
            writer.writerows(rows)
        return {email for email, _, _ in rows}


@pytest.fixture
def make_site(tmp_path):
    """``make_site(readers=20, **toml)``: a site in a fresh folder with
    :data:`ARTICLES` and ``readers`` generated subscribers; ``toml`` settings
    go into its digest.toml (the sendgrid provider unless told otherwise)."""
    made = []

    def make(readers: int = 20, **toml: object) -> Site:
        root = tmp_path / f"site-{len(made)}"
        (root / "posts").mkdir(parents=True)
        for stem, title, date, tag in ARTICLES:
            post = frontmatter.Post(BODY.format(title=title), title=title, date=date, tags=[tag])
            (root / "posts" / f"{stem}.md").write_text(frontmatter.dumps(post), encoding="utf-8")
        config = {
            "site_name": "Allotment Gazette", "site_url": "https://gazette.example.org/",
            "sender_email": "digest@gazette.example.org", "sender_name": "The Allotment Gazette",
            "sources": ["posts"], "subscribers": "readers.csv", "provider": "sendgrid",
            "secret_key": "issue-3-tests-signing-secret-7c1e9a04b6d2f853", **toml,
        }
        (root / "digest.toml").write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()), encoding="utf-8")
        site = Site(root)
        site.write_readers(readers)
        made.append(site)
        return site

    yield make
    for process in (process for site in made for process in site.started):
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@contextlib.contextmanager
def held_requests(server, timeout: float = 120):
    """A barrier in the stand-in (in this process): within the block, every
    request to it waits on arrival until the block ends (through the
    stand-in's ``clock`` hook, called first thing per request). Yields an
    Event set when the first request has arrived, so a test knows a send is
    in flight and holding its ledger however slow the machine is, with no
    sleeping and hoping."""
    arrived, release = threading.Event(), threading.Event()
    plain = server.config.clock

    def gate() -> float:
        arrived.set()
        release.wait(timeout)
        return plain()

    server.config.clock = gate
    try:
        yield arrived
    finally:
        release.set()
        server.config.clock = plain


def recorded(records: Iterable[dict]) -> Counter:
    """How many times the stand-in recorded each address."""
    return Counter(record["to"] for record in records)


@pytest.fixture
def stand_in_process(tmp_path, _loopback_without_proxy):
    """``start(*options)``: ../shared/tools/fake_sendgrid.py as a program
    (``--record``, only ``SENDGRID_KEY`` accepted, plus ``options`` such as
    ``"--delay-ms", "40"``), for tests that kill processes; returns
    ``(url, record path)``. Terminated after the test."""
    load_fake_sendgrid()  # skips without ../shared
    processes = []

    def start(*options: str) -> tuple[str, Path]:
        record = tmp_path / f"stand-in-{len(processes)}.jsonl"
        process = subprocess.Popen(
            [sys.executable, str(FAKE_SENDGRID), "--port", "0", "--record", str(record), "--api-key", SENDGRID_KEY, *options],
            stdout=subprocess.PIPE, text=True,
        )
        processes.append(process)
        line = process.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
        assert line.startswith("listening on "), line
        return line.removeprefix("listening on "), record

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def read_record(path: Path) -> list[dict]:
    """The lines of a stand-in's --record file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def stand_in_stats(url: str) -> dict:
    """The /__stats counters of a stand-in started by :func:`stand_in_process`."""
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return json.load(response)


@dataclass
class Served:
    """A real `digest serve` process on loopback: ``base`` URL, the
    process (its output, stdout and stderr together, in ``log_path``)."""

    base: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def start_serve(tmp_path):
    """``start(**settings)``: `digest serve` as a process on a free loopback
    port with ``settings`` as DIGEST_* variables (public_url defaults to
    the server itself), in ``tmp_path``; returns a :class:`Served` once it
    answers. Terminated after the test."""
    started = []

    def start(**settings: object) -> Served:
        port = free_port()
        env = {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}
        env.update(PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        settings.setdefault("public_url", f"http://127.0.0.1:{port}")
        env.update({f"DIGEST_{name.upper()}": str(value) for name, value in settings.items()})
        log_path = tmp_path / f"serve-{len(started)}.log"
        with open(log_path, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "digest", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        served = Served(f"http://127.0.0.1:{port}", process, log_path)
        started.append(served)
        deadline = time.monotonic() + 60  # the interpreter and uvicorn starting (a loaded CI machine)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"digest serve exited: {served.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return served
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"digest serve did not listen within 60 s: {served.log()}")

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.terminate()
            try:
                served.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait(timeout=10)


# PostgreSQL ------------------------------------------------------------------------------------

POSTGRES_ENV = "TEST_POSTGRES_URL"  # an admin URL of a throwaway server (.ci/run exports it)


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """An admin URL of a real PostgreSQL server: ``$TEST_POSTGRES_URL``
    when set (.ci/run starts a throwaway cluster and exports it), else a
    cluster started here for the session (initdb + pg_ctl, as the
    ``postgres`` user when we are root, on a socket in its own folder and a
    free loopback port) and stopped at the end. Skips where neither exists."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        yield url
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server binary (initdb) on this machine and {POSTGRES_ENV} is not set")
    folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F -c max_connections=100"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a fresh, empty database of its own for this test, dropped after it."""
    import psycopg

    name = f"digest_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request, tmp_path):
    """A ledger target of each backend: a file in the test's folder, then a
    database of its own on the test server; the same tests run on both."""
    if request.param == "sqlite":
        return tmp_path / "digest.db"
    return request.getfixturevalue("postgres_url")
