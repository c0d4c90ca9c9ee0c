"""The send loop with a real ledger file and the outbox provider: what it
records, what it resends, and who it never mails."""

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from digest import suppressions
from digest.articles import Article
from digest.audience import build_variants
from digest.delivery import SUPPRESSED, send_issue
from digest.issue import Issue
from digest.ledger import Ledger
from digest.providers.outbox import OutboxProvider
from digest.rendering import IssueContext
from digest.selection import Window, select_articles
from digest.settings import load_settings
from digest.subscribers import Subscriber

AS_OF = datetime(2026, 11, 30, 8, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load_settings(site_url="https://garden.example.org/", ledger=tmp_path / "digest.db", outbox=tmp_path / "outbox", retry_delay=0, concurrency=1, batch_size=2)


def make_issue(addresses, key="2026-W49"):
    article = Article(
        id="https://garden.example.org/frost/", title="First frost", url="https://garden.example.org/frost/",
        published=AS_OF - timedelta(days=1), tags=("growing",), summary_html="<p>Frost came early.</p>",
        summary_text="Frost came early.", author=None, image=None, reading_minutes=1, source="test",
    )
    window = Window(AS_OF - timedelta(days=7), AS_OF)
    selection = select_articles([article], window)
    people = [Subscriber(email=a, name="", tags=frozenset(), list_name="readers", line=n) for n, a in enumerate(addresses, start=2)]
    context = IssueContext(key=key, as_of=AS_OF, window_start=window.start, window_end=window.end)
    return Issue(context, selection, build_variants(selection.articles, people), people)


def test_an_address_suppressed_while_the_issue_is_being_sent_is_not_mailed(settings, tmp_path):
    issue = make_issue([f"reader{n}@example.org" for n in range(6)])
    ledger = Ledger(settings.ledger)

    def unsubscribe_reader5_after_the_first_batch(count):
        suppressions.add(settings.ledger, "Reader5@example.org", "unsubscribed", "one-click", "readers")

    report = send_issue(issue, OutboxProvider(settings.outbox, settings), settings, ledger=ledger, progress=unsubscribe_reader5_after_the_first_batch)
    ledger.close()
    written = sorted(p.name for p in settings.outbox.glob("*.eml"))
    assert "reader5@example.org.eml" not in written
    assert len(written) == 5
    assert [(p.email, p.last_error) for p in report.skipped] == [("reader5@example.org", SUPPRESSED)]
    assert report.problems == []
    assert report.counts == {"accepted": 5, "rejected": 1}
    assert report.complete  # leaving is not a failure: cron must not see a red run


def test_addresses_that_share_a_file_name_each_get_their_own_message(settings):
    addresses = ["a_b@example.org", "a/b@example.org", "a%b@example.org", "_n@example.org"]
    issue = make_issue(addresses)
    report = send_issue(issue, OutboxProvider(settings.outbox, settings), settings)
    files = list(settings.outbox.glob("*.eml"))
    assert report.counts == {"accepted": 4}
    assert len(files) == 4
    recipients = {email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec for f in files}
    assert recipients == set(addresses)


def test_the_dry_run_leaves_no_ledger_file(settings):
    send_issue(make_issue(["ada@example.org"]), OutboxProvider(settings.outbox, settings), settings)
    assert not settings.ledger.exists()


def test_a_ledger_in_a_missing_folder_is_one_clear_error(tmp_path):
    from digest.errors import DigestError

    with pytest.raises(DigestError, match="does not exist"):
        Ledger(tmp_path / "no-such-folder" / "digest.db")


def test_a_provider_that_is_down_is_given_up_on_after_a_few_batches_and_the_rest_stay_queued(settings, tmp_path):
    import socket

    from digest.providers.sendgrid import SendGridProvider

    with socket.socket() as probe:  # a loopback port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = settings.model_copy(update={"provider": "sendgrid", "sendgrid_host": f"http://127.0.0.1:{closed_port}", "sendgrid_api_key": SecretStr("SG.x"), "sendgrid_max_tries": 1, "sendgrid_retry_wait": 0})
    issue = make_issue([f"reader{n}@example.org" for n in range(20)])  # 10 batches of 2
    with Ledger(settings.ledger) as ledger:
        report = send_issue(issue, SendGridProvider(down), down, ledger=ledger)
        pending = ledger.pending("2026-W49")
    assert report.gave_up and "took none of 3 batches" in report.gave_up
    assert report.requests == 3  # concurrency 1: it stops at the third refused batch
    assert report.counts == {"queued": 14, "retryable": 6}
    assert len(pending) == 20  # nobody lost: all of them go out on the next run
    assert not report.complete


def test_a_misconfigured_provider_leaves_the_batch_to_send_later_not_unknown(settings, smtp_server):
    from digest.errors import DigestError
    from digest.providers.smtp import SMTPProvider

    handler, port = smtp_server  # plain SMTP, no STARTTLS offered
    wrong = settings.model_copy(update={"provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "starttls"})
    issue = make_issue(["ada@example.org", "grace@example.org", "alan@example.org"])
    with Ledger(settings.ledger) as ledger:
        with pytest.raises(DigestError):
            send_issue(issue, SMTPProvider(wrong), wrong, ledger=ledger)
        counts = ledger.counts("2026-W49")
    assert counts["sending"] == 0 and counts["unknown"] == 0
    assert counts["retryable"] + counts["queued"] == 3
    right = settings.model_copy(update={"provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"})
    with Ledger(settings.ledger) as ledger:
        report = send_issue(issue, SMTPProvider(right), right, ledger=ledger)
    assert report.counts == {"accepted": 3}
    assert sorted(address for envelope in handler.messages for address in envelope.rcpt_tos) == ["ada@example.org", "alan@example.org", "grace@example.org"]


def test_an_issue_is_too_late_only_past_not_after_from_its_scheduled_time():
    from dataclasses import replace as changed

    from digest.delivery import check_not_too_late
    from digest.errors import UsageError

    issue = changed(make_issue(["ada@example.org"]), scheduled_at=AS_OF)
    check_not_too_late(issue, "36h", now=AS_OF + timedelta(hours=35))
    check_not_too_late(issue, None, now=AS_OF + timedelta(days=30))
    with pytest.raises(UsageError, match="later than --not-after 36h"):
        check_not_too_late(issue, "36h", now=AS_OF + timedelta(hours=37))
    check_not_too_late(changed(issue, scheduled_at=None), "1h", now=AS_OF + timedelta(days=30))  # named with --issue
