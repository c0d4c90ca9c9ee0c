"""The SendGrid provider against the real stand-in (../shared/tools/fake_sendgrid.py)
with the official client: no mocks."""

import hashlib
import json
import logging
import threading
from collections import Counter

import pytest
from conftest import SENDGRID_KEY

from digest.errors import ProviderAuthError, SettingsError
from digest.messages import list_headers, list_unsubscribe_headers
from digest.providers.sendgrid import SendGridProvider
from digest.recipients import Status
from digest.rendering import personalize

ISSUE = "2026-W48"


@pytest.fixture
def provider_for(make_provider):
    """``provider_for(server, **settings)``: a SendGridProvider pointed at
    ``server``, with short backoffs so retries do not slow the suite."""

    def make(server, **overrides):
        options = dict(sendgrid_api_key=SENDGRID_KEY, sendgrid_host=server.url, sendgrid_retry_wait=0.01)
        return make_provider(SendGridProvider, **{**options, **overrides})

    return make


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def addresses(records) -> Counter:
    return Counter(record["to"] for record in records)


def test_one_request_carries_the_batch_and_everyone_is_accepted_with_their_own_values(
    fake_sendgrid, provider_for, variant, make_recipients
):
    recipients = make_recipients(3, names=["Zoë Ünal", "", "Ann"])
    provider = provider_for(fake_sendgrid, sendgrid_categories=["digest", "weekly"], asm_group_id=42)
    results = provider.send_batch(variant, recipients, ISSUE)

    (request,) = fake_sendgrid.bodies()
    assert request["status"] == 202
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert {r.message_id for r in results} == {request["message_id"]}
    body = request["body"]
    # The variant's content once, text/plain first (SendGrid answers 400 otherwise).
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["digest", "weekly"]
    assert body["asm"] == {"group_id": 42}
    records = {record["to"]: record for record in fake_sendgrid.records()}
    assert set(records) == {r.email for r in recipients}
    for recipient in recipients:
        record = records[recipient.email]
        html, text = personalize(variant, recipient)
        # What SendGrid makes of the substitutions is exactly what the outbox and SMTP send.
        assert (record["html_sha256"], record["text_sha256"]) == (sha256(html), sha256(text))
        assert record["subject"] == variant.subject
        assert record["custom_args"] == {"issue_key": ISSUE, "subscriber_id": recipient.subscriber_id,
                                         "variant_key": variant.variant_key}
        for name, value in list_unsubscribe_headers(recipient).items():
            assert record["headers"][name] == value
    assert records["reader0@example.org"]["name"] == "Zoë Ünal"
    assert records["reader1@example.org"]["name"] is None


def test_1001_recipients_take_two_requests_of_at_most_1000_and_each_is_sent_once(
    fake_sendgrid, provider_for, variant, make_recipients
):
    recipients = make_recipients(1001)
    results = provider_for(fake_sendgrid).send_batch(variant, recipients, ISSUE)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: 1001}
    sizes = [len(request["body"]["personalizations"]) for request in fake_sendgrid.bodies()]
    assert sorted(sizes) == [1, 1000]
    assert addresses(fake_sendgrid.records()) == Counter({r.email: 1 for r in recipients})


def test_the_same_address_twice_in_a_batch_is_sent_once(fake_sendgrid, provider_for, variant, make_recipients):
    first, second = make_recipients(2)
    shouting = first.__class__(**{**first.__dict__, "email": first.email.upper()})
    results = provider_for(fake_sendgrid).send_batch(variant, [first, second, shouting], ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.ACCEPTED, Status.REJECTED]
    assert len(fake_sendgrid.records()) == 2


def test_the_client_logs_neither_the_body_nor_the_key_even_at_debug(fake_sendgrid, provider_for, variant, make_recipients, caplog):
    # python_http_client's post() formats every body (and the Authorization
    # header) into debug lines: the provider goes through its request step instead.
    logging.getLogger("python_http_client.client").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            results = provider_for(fake_sendgrid).send_batch(variant, make_recipients(3), ISSUE)
    finally:
        logging.getLogger("python_http_client.client").setLevel(logging.INFO)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3 and len(fake_sendgrid.records()) == 3
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert SENDGRID_KEY not in logged and "reader0@example.org" not in logged and "PAYLOAD" not in logged


def test_names_with_commas_or_semicolons_are_accepted_by_strict_sendgrid(
    fake_sendgrid, provider_for, variant, make_recipients
):
    recipients = make_recipients(2, names=["Doe, Jane", "Smith; John"])
    results = provider_for(fake_sendgrid).send_batch(variant, recipients, ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED] * 2
    records = {record["to"]: record for record in fake_sendgrid.records()}
    assert records["reader0@example.org"]["name"] == "Doe Jane"
    # The greeting in the body keeps the name as written.
    assert records["reader0@example.org"]["text_sha256"] == sha256(personalize(variant, recipients[0])[1])
    assert "Doe, Jane" in personalize(variant, recipients[0])[1]


def test_faults_and_rate_limits_still_end_with_everyone_exactly_once(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    server = start_fake_sendgrid(fail_rate=0.2, rate_limit=5, seed=7)
    provider = provider_for(server)
    recipients = make_recipients(1500)
    batches = [recipients[i : i + 100] for i in range(0, len(recipients), 100)]
    accepted: Counter = Counter()

    def worker(mine):
        # What the send loop does: send, then send again what is retryable.
        while mine:
            results = provider.send_batch(variant, mine, ISSUE)
            accepted.update(r.email for r in results if r.status is Status.ACCEPTED)
            assert not [r for r in results if r.status in (Status.REJECTED, Status.UNKNOWN)]
            mine = [p for p, r in zip(mine, results, strict=False) if r.status is Status.RETRYABLE]

    threads = [threading.Thread(target=lambda b=b: [worker(x) for x in b]) for b in (batches[0::2], batches[1::2])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    faults = server.stats()["faults"]
    assert faults["fail_rate"] > 0 and faults["rate_limited"] > 0  # the faults did happen
    assert addresses(server.records()) == Counter({r.email: 1 for r in recipients})
    assert accepted == Counter({r.email: 1 for r in recipients})


def test_a_connection_dropped_after_the_request_is_unknown_and_never_resent(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    server = start_fake_sendgrid(accept_then_drop=1.0)
    results = provider_for(server).send_batch(variant, make_recipients(5), ISSUE)
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert all("after the request was sent" in r.reason for r in results)
    assert server.stats()["requests"] == 1
    assert addresses(server.records()) == Counter({f"reader{i}@example.org": 1 for i in range(5)})


def test_a_refused_api_key_stops_the_run_without_showing_the_key(
    fake_sendgrid, provider_for, variant, make_recipients
):
    provider = provider_for(fake_sendgrid, sendgrid_api_key="SG.wrong-secret-value")
    with pytest.raises(ProviderAuthError) as caught:
        provider.send_batch(variant, make_recipients(2), ISSUE)
    assert caught.value.exit_code == 3
    assert "401" in str(caught.value) and "SG.wrong-secret-value" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert fake_sendgrid.records() == []


def test_the_api_key_stays_out_of_debug_logs(fake_sendgrid, provider_for, variant, make_recipients, caplog):
    caplog.set_level(logging.DEBUG)  # as a --verbose run would
    provider_for(fake_sendgrid).send_batch(variant, make_recipients(1), ISSUE)
    assert SENDGRID_KEY not in caplog.text


def test_an_unverified_sender_stops_the_run_naming_the_sender(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    server = start_fake_sendgrid(verified_senders=("news@elsewhere.example",))
    with pytest.raises(ProviderAuthError, match="digest@gazette.example.org.*403"):
        provider_for(server).send_batch(variant, make_recipients(1), ISSUE)


def test_a_request_too_large_is_split_in_halves_until_it_fits(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    server = start_fake_sendgrid(max_body_bytes=60_000)
    recipients = make_recipients(400)
    results = provider_for(server).send_batch(variant, recipients, ISSUE)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: 400}
    statuses = [request["status"] for request in server.bodies()]
    assert statuses[0] == 413 and statuses.count(202) >= 2
    assert addresses(server.records()) == Counter({r.email: 1 for r in recipients})


def test_a_400_naming_one_personalization_rejects_only_that_recipient(
    fake_sendgrid, provider_for, variant, make_recipients
):
    recipients = make_recipients(3)
    bad = recipients[1].__class__(**{**recipients[1].__dict__, "email": "jürgen@example.org"})  # SendGrid: ASCII only
    results = provider_for(fake_sendgrid).send_batch(variant, [recipients[0], bad, recipients[2]], ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert "personalizations.1.to.0.email: Does not contain a valid address." in results[1].reason
    assert set(addresses(fake_sendgrid.records())) == {recipients[0].email, recipients[2].email}


def test_server_errors_are_retried_with_backoff_then_left_retryable(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    recovering = start_fake_sendgrid(fail_first=2)
    results = provider_for(recovering, sendgrid_max_tries=3).send_batch(variant, make_recipients(2), ISSUE)
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert [request["status"] for request in recovering.bodies()] == [503, 503, 202]

    down = start_fake_sendgrid(fail_first=10)
    results = provider_for(down, sendgrid_max_tries=3).send_batch(variant, make_recipients(2), ISSUE)
    assert {r.status for r in results} == {Status.RETRYABLE}
    assert "503" in results[0].reason and down.stats()["requests"] == 3 and down.records() == []


def test_no_connection_at_all_is_retryable(start_fake_sendgrid, provider_for, variant, make_recipients):
    server = start_fake_sendgrid()
    provider = provider_for(server, sendgrid_max_tries=2)
    server.stop()  # nothing listens on the port any more
    results = provider.send_batch(variant, make_recipients(2), ISSUE)
    assert {r.status for r in results} == {Status.RETRYABLE}
    assert "cannot reach SendGrid" in results[0].reason and provider.requests == 2


def test_a_429_waits_for_the_reset_and_sends_the_same_request_again(
    start_fake_sendgrid, provider_for, variant, make_recipients
):
    server = start_fake_sendgrid(rate_limit=1)
    provider = provider_for(server)
    results = [r for start in (0, 10, 20) for r in provider.send_batch(variant, make_recipients(10, start), ISSUE)]
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert server.stats()["faults"]["rate_limited"] >= 1
    assert len(server.records()) == 30


def test_the_provider_needs_an_api_key(settings_for):
    with pytest.raises(SettingsError, match="sendgrid_api_key"):
        SendGridProvider(settings_for(provider="sendgrid"))


def test_every_personalization_carries_the_list_headers_of_the_eml(fake_sendgrid, provider_for, variant, make_recipients):
    """List-Id, List-Unsubscribe and List-Unsubscribe-Post, as in the
    message the outbox and SMTP build (RFC 2919, RFC 2369, RFC 8058)."""
    recipients = make_recipients(4, names=["Doe, Jane", "Zoë", "", "Ann"])
    provider = provider_for(fake_sendgrid, site_name="The Allotment Gazette", site_url="https://gazette.example.org/")
    assert [r.status for r in provider.send_batch(variant, recipients, ISSUE)] == [Status.ACCEPTED] * 4
    (request,) = fake_sendgrid.bodies()
    personalizations = request["body"]["personalizations"]
    assert len(personalizations) == 4
    for personalization, recipient in zip(personalizations, recipients, strict=True):
        expected = list_headers(recipient, provider.settings)
        assert expected["List-Id"] == "The Allotment Gazette <main.gazette.example.org>"
        assert {name: personalization["headers"][name] for name in expected} == expected
        assert set(expected) == {"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"}


def test_a_reply_to_with_a_display_name_reaches_sendgrid_as_name_and_email(fake_sendgrid, provider_for, variant, make_recipients):
    provider = provider_for(fake_sendgrid, reply_to='"Desk, News" <desk@gazette.example.org>')
    assert [r.status for r in provider.send_batch(variant, make_recipients(1), ISSUE)] == [Status.ACCEPTED]
    (request,) = fake_sendgrid.bodies()
    assert request["body"]["reply_to"] == {"email": "desk@gazette.example.org", "name": "Desk, News"}


def helper_body(provider: SendGridProvider, rendered, batch, issue_key: str) -> dict:
    """The body as the official client's ``Mail`` helper builds it (how the
    provider built it before it wrote plain dicts)."""
    from sendgrid.helpers.mail import (
        Asm,
        Category,
        CustomArg,
        From,
        GroupId,
        Header,
        HtmlContent,
        Mail,
        Personalization,
        PlainTextContent,
        ReplyTo,
        Substitution,
        To,
    )

    from digest.personalization import substitutions
    from digest.providers.sendgrid import _display_name

    settings = provider.settings
    mail = Mail(from_email=From(str(settings.sender_email), settings.sender_name or None), subject=rendered.subject,
                plain_text_content=PlainTextContent(rendered.text), html_content=HtmlContent(rendered.html))
    if settings.reply_to_parts:
        name, email = settings.reply_to_parts
        mail.reply_to = ReplyTo(email, name or None)
    mail.add_custom_arg(CustomArg("issue_key", str(issue_key)))
    mail.add_custom_arg(CustomArg("variant_key", str(rendered.variant_key)))
    for category in reversed(settings.sendgrid_categories):  # the helper inserts at the front
        mail.add_category(Category(category))
    if settings.asm_group_id is not None:
        mail.asm = Asm(GroupId(settings.asm_group_id))
    for index, recipient in enumerate(batch):
        personalization = Personalization()
        personalization.add_to(To(recipient.email, _display_name(recipient.name)))
        for key, value in substitutions(recipient, rendered.nonce).items():
            personalization.add_substitution(Substitution(key, value))
        for name, value in list_headers(recipient, settings).items():
            personalization.add_header(Header(name, value))
        personalization.add_custom_arg(CustomArg("subscriber_id", str(recipient.subscriber_id)))
        mail.add_personalization(personalization, index=index)
    return mail.get()


@pytest.mark.parametrize("overrides", [
    {},
    {"sendgrid_categories": ["digest", "weekly"], "asm_group_id": 42, "reply_to": "The Desk <editor@example.org>", "sender_name": "The Gazette"},
    {"sendgrid_categories": [], "sender_name": ""},
])
def test_the_plain_dict_body_is_what_the_official_helper_builds(fake_sendgrid, provider_for, variant, make_recipients, overrides):
    recipients = make_recipients(5, names=["Zoë Ünal", "", "Doe, Jane", "Ann <ann>", "  spaced  out "])
    provider = provider_for(fake_sendgrid, **overrides)
    assert provider._body(variant, recipients, ISSUE) == helper_body(provider, variant, recipients, ISSUE)


def test_the_request_is_compact_json(start_fake_sendgrid, provider_for, variant, make_recipients):
    recipients = make_recipients(20)
    probe = provider_for(start_fake_sendgrid())
    body = probe._body(variant, recipients, ISSUE)
    compact = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    spaced = len(json.dumps(body).encode("utf-8"))
    assert compact < spaced
    # A stand-in that refuses (413) anything larger than the compact body.
    server = start_fake_sendgrid(max_body_bytes=compact)
    results = provider_for(server).send_batch(variant, recipients, ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED] * 20
    (request,) = server.bodies()
    assert request["body"] == body
