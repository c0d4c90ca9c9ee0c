"""Delivery acceptance through the real command line: `digest send` and
`digest status` run as programs in a site of our own, against the SendGrid
stand-in (../shared/tools/fake_sendgrid.py, in this process) or a real
aiosmtpd server on loopback. What the stand-in recorded and what
`digest status --json` says are the evidence; the ledger is never read
directly. (Killed sends: tests/test_crash_resume.py.)"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from collections import Counter

from conftest import SENDGRID_KEY, WEEK48, WEEK49, held_requests, reader, recorded, tags_of_readers

SEND = ("send", "--as-of", WEEK48)


def sendgrid(server, **settings) -> dict:
    """The settings that point a run at ``server`` with the accepted key."""
    return {"sendgrid_host": server.url, "sendgrid_api_key": SENDGRID_KEY, **settings}


def summary(done) -> dict:
    """The JSON summary line of `digest send --json` (log lines go to stderr)."""
    return json.loads(done.stdout)


tags_of = tags_of_readers


# 1. Everyone once, in requests of at most 1000, also through faults ---------------------


def test_5000_subscribers_in_six_variants_are_each_recorded_once_in_requests_of_at_most_1000(
    make_site, fake_sendgrid
):
    server = fake_sendgrid
    site = make_site(readers=5000)
    done = site.run(*SEND, "--json", **sendgrid(server))
    assert done.returncode == 0, done.stdout + done.stderr
    report = summary(done)
    assert report["counts"] == {"accepted": 5000} and len(report["variants"]) == 6

    records, tags = server.records(), tags_of(5000)
    assert recorded(records) == dict.fromkeys(tags, 1)
    bodies = server.bodies()
    assert {body["status"] for body in bodies} == {202}
    sizes = [len(body["body"]["personalizations"]) for body in bodies]
    assert sum(sizes) == 5000 and max(sizes) == 1000  # full batches, never more than SendGrid's limit
    assert max(record["personalization"] for record in records) == 999
    for body in bodies:
        assert [part["type"] for part in body["body"]["content"]] == ["text/plain", "text/html"]
        addresses = [p["to"][0]["email"] for p in body["body"]["personalizations"]]
        assert len(set(addresses)) == len(addresses)
    # The variant follows the tags: same tags, same variant; six variants in all.
    variant_of_tags: dict[str, set[str]] = {}
    for record in records:
        assert record["custom_args"]["subscriber_id"] == record["to"]
        variant_of_tags.setdefault(tags[record["to"]], set()).add(record["custom_args"]["variant_key"])
    assert all(len(keys) == 1 for keys in variant_of_tags.values())
    assert len(set().union(*variant_of_tags.values())) == 6

    issue = site.status()["2026-W48"]
    assert issue["counts"] == {"accepted": 5000} and issue["status"] == "finished" and issue["problems"] == []


def test_server_errors_and_rate_limits_still_end_with_everyone_exactly_once_and_exit_0(make_site, start_fake_sendgrid):
    server = start_fake_sendgrid(fail_rate=0.2, rate_limit=5)
    site = make_site(readers=5000)
    # Batches of 500 (thirteen), all sent at once (concurrency 16): unless they take
    # over a second to leave, two one-second windows of 5 cannot hold them all.
    done = site.run(*SEND, **sendgrid(server, concurrency=16, batch_size=500, sendgrid_retry_wait=0.05, retry_delay=0))
    assert done.returncode == 0, done.stdout + done.stderr
    answered = server.stats()["by_status"]
    assert answered.get("500", 0) > 0 and answered.get("429", 0) > 0, answered  # the faults did happen
    assert recorded(server.records()) == dict.fromkeys(tags_of(5000), 1)
    assert site.status()["2026-W48"]["counts"] == {"accepted": 5000}


# 3. A request taken but never answered: unknown, not doubled ------------------------------


def test_accepted_then_dropped_requests_become_unknown_and_only_resend_unknown_sends_them_once_more(
    make_site, start_fake_sendgrid
):
    server = start_fake_sendgrid(accept_then_drop=0.3)
    site = make_site(readers=600, batch_size=50)
    done = site.run(*SEND, **sendgrid(server))
    assert done.returncode == 1, done.stdout + done.stderr
    dropped = {record["to"] for record in server.records() if record["dropped"]}
    assert dropped  # some requests were taken and their answers withheld
    problems = site.status()["2026-W48"]["problems"]
    unknown = {p["email"] for p in problems if p["status"] == "unknown"}
    assert unknown == dropped and {p["status"] for p in problems} == {"unknown"}
    # The summary lists the first 20 (a cron log needs examples, not thousands of lines) and points to status.
    listed = {email_ for email_ in unknown if email_ in done.stdout}
    assert len(listed) == min(20, len(unknown))
    if len(unknown) > 20:
        assert f"and {len(unknown) - 20} more: digest status --issue 2026-W48" in done.stdout

    again = site.run(*SEND, **sendgrid(server))  # a plain resume leaves them alone
    assert again.returncode == 1
    assert max(recorded(server.records()).values()) == 1

    server.config.accept_then_drop = 0
    resent = site.run(*SEND, "--resend-unknown", **sendgrid(server))
    assert resent.returncode == 0, resent.stdout + resent.stderr
    counts = recorded(server.records())
    assert {address for address, n in counts.items() if n == 2} == unknown  # exactly once more
    assert set(counts.values()) == {1, 2} and len(counts) == 600
    assert site.status()["2026-W48"]["counts"] == {"accepted": 600}


# 4. SMTP on loopback ----------------------------------------------------------------------


def smtp(port: int, **settings) -> dict:
    return {"provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none", **settings}


def received(handler) -> dict[str, list[email.message.EmailMessage]]:
    """Envelope recipient -> the messages that reached the server for it."""
    found: dict[str, list] = {}
    for envelope in handler.messages:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        for address in envelope.rcpt_tos:
            found.setdefault(address, []).append(message)
    return found


def test_smtp_messages_arrive_intact_one_per_subscriber(make_site, smtp_server):
    handler, port = smtp_server
    site = make_site(readers=12)
    done = site.run(*SEND, **smtp(port))
    assert done.returncode == 0, done.stdout + done.stderr
    messages = received(handler)
    people = {address: (name, tags) for address, name, tags in (reader(n) for n in range(12))}
    assert set(messages) == set(people) and all(len(m) == 1 for m in messages.values())
    for address, (message,) in messages.items():
        name, tags = people[address]
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        (to,) = message["To"].addresses
        assert (to.addr_spec, to.display_name) == (address, name)  # "Doe, Zoë №0" survives
        assert message["Subject"].startswith("Allotment Gazette: Grüße aus dem Garten")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click = message["List-Unsubscribe"].split(">")[0].removeprefix("<")
        assert one_click.startswith("https://")
        text = message.get_body(("plain",)).get_content()
        page = html.unescape(message.get_body(("html",)).get_content())
        assert name in text and name in page and one_click in page
        assert "Grüße aus dem Garten" in text and "“curly quotes”" in text
        assert "%%digest." not in text and "%%digest." not in page  # every placeholder filled
        # The subscriber's variant: their tag's article, and only theirs unless untagged.
        beds = {k for k in range(5) if f"Bed {k} notes" in text}
        assert beds == (set(range(5)) if not tags else {int(tags[-1])})


def test_smtp_451_replies_are_retried_and_those_recipients_arrive_once(make_site, smtp_server):
    handler, port = smtp_server
    site = make_site(readers=12)
    handler.rcpt_replies = {
        "reader1@example.org": ["451 4.7.1 Try again later"],
        "reader2@example.org": ["451 4.7.1 Try again later", "451 4.7.1 Greylisted, try again later"],
    }
    done = site.run(*SEND, **smtp(port, retry_delay=0))
    assert done.returncode == 0, done.stdout + done.stderr
    assert handler.rcpt_replies == {"reader1@example.org": [], "reader2@example.org": []}  # the 451s were given
    counts = Counter({address: len(m) for address, m in received(handler).items()})
    assert counts == dict.fromkeys((reader(n)[0] for n in range(12)), 1)
    assert site.status()["2026-W48"]["counts"] == {"accepted": 12}


# 5. One send per ledger --------------------------------------------------------------------


def test_a_second_send_on_the_same_ledger_exits_75_while_the_first_sends_everyone_once(make_site, start_fake_sendgrid):
    server = start_fake_sendgrid()
    site = make_site(readers=800, batch_size=100)
    # The first send's first request is held at the stand-in until the second
    # has finished: it holds the ledger then, however loaded the machine is.
    with held_requests(server) as arrived:
        first = site.start(*SEND, **sendgrid(server))
        assert arrived.wait(120), "the first send made no request"
        second = site.run(*SEND, **sendgrid(server))
        still_sending = first.poll() is None
    assert first.wait(timeout=120) == 0
    assert still_sending
    assert second.returncode == 75, second.stdout + second.stderr
    assert "another send is using the ledger" in second.stderr and str(first.pid) in second.stderr
    assert recorded(server.records()) == dict.fromkeys(tags_of(800), 1)


# 6. Exit codes and the lifecycle of an issue ------------------------------------------------


def test_a_refused_api_key_exits_3_without_showing_it_and_the_issue_resumes_with_the_right_one(
    make_site, fake_sendgrid
):
    server = fake_sendgrid
    site = make_site(readers=20)
    wrong = "SG.wrong-key-0123456789abcdef"
    done = site.run(*SEND, sendgrid_host=server.url, sendgrid_api_key=wrong)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refused our API key" in done.stderr
    assert "0123456789abcdef" not in done.stdout + done.stderr  # no part of the key
    # Stopped at once: only the batches already in flight (concurrency 2) were tried.
    assert server.records() == [] and server.stats()["requests"] <= 2
    assert "accepted" not in site.status()["2026-W48"]["counts"]
    fixed = site.run(*SEND, **sendgrid(server))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert recorded(server.records()) == dict.fromkeys(tags_of(20), 1)


def test_a_recipient_sendgrid_refuses_exits_1_listing_that_address_and_the_others_go_out(make_site, fake_sendgrid):
    server = fake_sendgrid
    site = make_site()
    # A typo email-validator lets through (its syntax allows a digit in the
    # top-level domain); the stand-in, as SendGrid, answers 400 for it.
    typo = "ada@example.c0m"
    everyone = site.write_readers(20, extra=[(typo, "Ada", "")])
    done = site.run(*SEND, **sendgrid(server))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"rejected: {typo}" in done.stdout
    assert recorded(server.records()) == dict.fromkeys(everyone - {typo}, 1)
    (problem,) = site.status()["2026-W48"]["problems"]
    assert problem["email"] == typo and problem["status"] == "rejected"
    assert "400" in problem["reason"] and "valid address" in problem["reason"]


def test_a_send_later_than_not_after_is_refused_with_exit_2_and_sends_nothing(make_site, fake_sendgrid):
    server = fake_sendgrid
    site = make_site()
    done = site.run(*SEND, "--not-after", "1h", **sendgrid(server))  # scheduled 2026-11-23 08:00: days ago
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not sending" in done.stderr and "--not-after 1h" in done.stderr
    assert server.stats()["requests"] == 0
    assert "2026-W48" not in (site.status() if (site.root / "digest.db").exists() else {})


def test_nothing_to_send_exits_0_and_makes_no_request(make_site, fake_sendgrid):
    server = fake_sendgrid
    site = make_site()
    done = site.run("send", "--as-of", "2020-01-06", **sendgrid(server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to send" in done.stdout
    assert server.stats()["requests"] == 0


def test_a_test_send_is_one_test_message_and_the_dry_run_sends_nothing_both_without_a_ledger(
    make_site, fake_sendgrid
):
    server = fake_sendgrid
    site = make_site()
    done = site.run(*SEND, "--test-to", "editor@example.net", "--as-subscriber", "reader3@example.org", **sendgrid(server))
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = server.records()
    assert record["to"] == "editor@example.net" and record["subject"].startswith("[TEST] ")
    # Its unsubscribe link is the editor's own: clicking it in a test must not unsubscribe reader3.
    assert _token_address(record["headers"]["List-Unsubscribe"]) == "editor@example.net"
    dry = site.run(*SEND, "--dry-run", **sendgrid(server))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert len(list((site.root / "outbox").glob("*.eml"))) == 20
    assert len(server.records()) == 1  # the dry run went to the outbox only
    assert not [p.name for p in site.root.iterdir() if p.name.startswith("digest.db")]


def test_a_finished_issue_is_not_sent_again_and_next_week_leaves_out_articles_already_sent(
    make_site, fake_sendgrid
):
    server = fake_sendgrid
    site = make_site()
    first = site.run(*SEND, "--json", **sendgrid(server))
    assert first.returncode == 0 and summary(first)["articles"] == 6
    again = site.run(*SEND, "--json", **sendgrid(server))
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again)["sent_now"] == 0
    assert recorded(server.records()) == dict.fromkeys(tags_of(20), 1)

    # A window of two weeks reaches back over week 48's six articles: left out...
    week49 = ("send", "--as-of", WEEK49, "--since", "14d", "--json")
    later = site.run(*week49, **sendgrid(server))
    assert later.returncode == 0, later.stdout + later.stderr
    assert summary(later)["articles"] == 1 and site.status()["2026-W49"]["articles"] == 1
    # ... unless --include-sent (a special edition, so not a resume of 2026-W49).
    everything = site.run(*week49, "--include-sent", "--issue", "2026-W49-all", **sendgrid(server))
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert summary(everything)["articles"] == 7
    by_issue = Counter(record["custom_args"]["issue_key"] for record in server.records())
    assert by_issue == {"2026-W48": 20, "2026-W49": 20, "2026-W49-all": 20}


def _token_address(list_unsubscribe: str) -> str:
    """The address an unsubscribe link's signed token names (read without the secret: itsdangerous payloads are base64 JSON)."""
    import base64
    import re

    token = re.search(r"token=([^>&]+)", list_unsubscribe)[1]
    payload = token.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data[0]


def test_the_outbox_numbers_variants_as_digest_audience_does(make_site):
    # "error: variant 3: ..." from the built-in checks must point at variant-3.html.
    site = make_site(readers=40)
    audience = site.run("audience", "--as-of", WEEK48)
    listed = re.findall(r"^variant (\d+) \[[0-9a-f]+\]: (\d+) articles?, (\d+) subscribers?", audience.stdout, re.M)
    assert len(listed) > 2, audience.stdout
    assert site.run("send", "--dry-run", "--as-of", WEEK48).returncode == 0
    index = (site.root / "outbox" / "index.html").read_text(encoding="utf-8")
    shown = re.findall(r"<h2>Variant (\d+): [^<]*</h2><p>(\d+) articles?, (\d+) recipients?", index)
    assert shown == listed
    assert sorted(p.name for p in (site.root / "outbox").glob("variant-*.html")) == sorted(f"variant-{n}.html" for n, _, _ in listed)


def test_a_dry_run_replaces_its_own_messages_and_leaves_other_files_alone(make_site):
    site = make_site(readers=6)
    outbox = site.root / "outbox"
    assert site.run("send", "--dry-run", "--as-of", WEEK48).returncode == 0
    first = {p.name for p in outbox.glob("*.eml")}
    (outbox / "notes.eml").write_text("the editor's own draft", encoding="utf-8")
    site.write_readers(3)  # fewer readers: the messages of the three who left must go
    assert site.run("send", "--dry-run", "--as-of", WEEK48).returncode == 0
    second = {p.name for p in outbox.glob("*.eml")} - {"notes.eml"}
    assert len(second) == 3 and second < first
    assert (outbox / "notes.eml").read_text(encoding="utf-8") == "the editor's own draft"
