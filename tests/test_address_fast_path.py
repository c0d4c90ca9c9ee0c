"""The fast path for plain ASCII addresses gives email-validator's answers:
the same normalized address for every address it takes, and it takes none
the library refuses. Checked on many generated addresses, near every rule."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from digest.addresses import _plain_ascii, normalize_address
from digest.errors import DigestError

LOCAL_BITS = ["a", "Z", "0", "reader", "Ada", "o'brien", "x+tag", "_", "-", "!", "#", "$", "%", "&", "*", "/", "=", "?", "^", "`", "{", "|", "}", "~",
              ".", "..", " ", '"', "(", ")", ",", ":", ";", "<", ">", "[", "]", "\\", "é", "ß", "\t", "@"]
DOMAIN_BITS = ["example", "Example", "ORG", "org", "com", "co", "uk", "a", "b1", "1", "123", "xn--", "xn--bcher-kva", "ab--c", "-", "--", ".", "..",
               "local", "localhost", "test", "invalid", "onion", "arpa", "münchen", "_", "a" * 63, "a" * 64, "x-y", "0x", "c0m"]


def generated(count: int, seed: int) -> list[str]:
    chance = random.Random(seed)
    addresses = []
    for _ in range(count):
        local = "".join(chance.choice(LOCAL_BITS) for _ in range(chance.randint(1, 4)))
        if chance.random() < 0.05:
            local = "l" * chance.choice([63, 64, 65])
        labels = [chance.choice(DOMAIN_BITS) for _ in range(chance.randint(1, 4))]
        domain = ".".join(labels)
        if chance.random() < 0.05:
            domain = ".".join(["d" * 63] * chance.randint(2, 5)) + ".org"
        addresses.append(f"{local}@{domain}")
    return addresses


def by_the_library(address: str) -> str | None:
    try:
        return validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError:
        return None


def ours(address: str) -> str | None:
    try:
        return normalize_address(address)
    except DigestError:
        return None


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_answers_as_email_validator_on_generated_addresses(seed):
    addresses = generated(5000, seed) + [f"reader{n}@example.org" for n in range(100)]
    fast = 0
    for address in addresses:
        assert ours(address) == by_the_library(address), address
        if _plain_ascii(address.strip()) is not None:
            fast += 1
            assert by_the_library(address) is not None, address  # never takes what the library refuses
    assert fast >= 200  # the fast path does take the plain ones


@pytest.mark.parametrize("address", [
    "Ada.Lovelace@Example.ORG", "x+tag@sub.example.co.uk", "a@b.co-m", "o'brien@example.ie",
    "a@sub.local", "a@localhost", "a@xn--bcher-kva.example", "a@ab--c.com", "a@b.c1", "a@-a.com", "a.@example.org",
    ".a@example.org", "a..b@example.org", "l" * 64 + "@example.org", "l" * 65 + "@example.org", "a@" + "d" * 64 + ".org",
    "a@example", "a@example.test", "a@example.onion", "a@[127.0.0.1]", '"quoted"@example.org', "ü@example.org",
])
def test_edge_addresses_get_the_library_answer(address):
    assert ours(address) == by_the_library(address)
