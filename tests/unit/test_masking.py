"""Pattern-based masking: each kind found in free text, look-alikes left alone (issue #6)."""

from __future__ import annotations

import pytest

from orchestrion.governance.masking import Masker, luhn_valid


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail ada@example.com now", "mail [email] now"),
        ("a.b+tag@sub.example.co.uk", "[email]"),
        ("card 4111 1111 1111 1111 ok", "card [card] ok"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("amex 378282246310005.", "amex [card]."),
        ("ssn 123-45-6789", "ssn [ssn]"),
        ("call +44 20 7946 0958 today", "call [phone] today"),
        ("call (555) 123-4567", "call [phone]"),
        ("call 555-123-4567", "call [phone]"),
        ("iban DE89 3704 0044 0532 0130 00", "iban [iban]"),
        ("iban GB82WEST12345698765432", "iban [iban]"),
        # Written as people write them, too.
        ("call 020 7946 0958 today", "call [phone] today"),
        ("mobile 07700 900123", "mobile [phone]"),
        ("office 0161 496 0000", "office [phone]"),
        ("ssn 123 45 6789", "ssn [ssn]"),
        ("iban gb82 west 1234 5698 7654 32", "iban [iban]"),
        ("iban de89370400440532013000", "iban [iban]"),
        ("card 4111.1111.1111.1111", "card [card]"),
        ("to josé@exämple.com", "to [email]"),
        ("to first_last@example.com", "to [email]"),
    ],
)
def test_personal_data_is_masked(text: str, masked: str) -> None:
    assert Masker().mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112",  # fails the Luhn check: not a card
        "took 1700000000123 ms",  # a timestamp
        "version 1.2.3, port 8000, 42 items",
        "execution 3f2a9c1e-5b7d-4e8a-9c0f-1a2b3c4d5e6f",
        "at 1765123456.123456, 2026-12-07 21:41:00, ip 10.0.0.1 port 8080",
        "order 0123 4567 8901, ticket 123-45-67890",
        "iban de89 3704 0044 0532 0130 01",  # lower case without a valid checksum
        "code ab12 this that here",
        "card 4111.1111.1111.1112",  # fails the Luhn check
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert Masker().mask_text(text) == text


# Ids whose hex digits hold a Luhn-valid run of 13+ digits, or an IBAN-like group: each was
# cut into "...[card]" or "...[iban]" before (about one execution id in a thousand).
LOOK_ALIKE_IDS = [
    "01a25256-ebbd-7f8c-b934-8840846350dc",  # execution and definition ids: UUID v7
    "01a25256-ec00-76aa-a621-600687906269",
    "01A25256-A553-7DBF-94AB-FD6004E0581D",  # upper case
    "18a2b3c4d5f3aec7e0c8026650591164",  # event ids: 32 hex digits
    "18a2b3c4d5ec32b1672814349036b7d0",
]


@pytest.mark.parametrize("identifier", LOOK_ALIKE_IDS)
def test_ids_are_left_whole(identifier: str) -> None:
    masker = Masker()
    assert masker.mask_text(identifier) == identifier
    line = f"execution {identifier} node.started (attempt 1)"
    assert masker.mask_text(line) == line
    notice = {"execution_id": identifier, "ids": [identifier]}
    assert masker.mask_value(notice) == notice


def test_personal_data_next_to_an_id_is_still_masked() -> None:
    identifier = LOOK_ALIKE_IDS[0]
    masker = Masker()
    text = f"{identifier}: card 4111 1111 1111 1111, mail ada@example.com, ssn 123-45-6789"
    assert masker.mask_text(text) == f"{identifier}: card [card], mail [email], ssn [ssn]"
    # An id glued to an address is part of the address: masked with it.
    assert masker.mask_text(f"to {identifier}@example.com") == "to [email]"
    # A configured pattern sees ids too: one written for 32-hex tokens keeps masking them.
    tokens = Masker(extra={"token": r"\b[0-9a-f]{32}\b"})
    assert tokens.mask_text(f"key {LOOK_ALIKE_IDS[3]}") == "key [token]"


def test_values_are_walked_and_keys_kept() -> None:
    value = {"user": {"email": "ada@example.com", "phones": ["+1 202 555 0143"]}, "n": 3}
    assert Masker().mask_value(value) == {
        "user": {"email": "[email]", "phones": ["[phone]"]},
        "n": 3,
    }


def test_keys_are_masked_too_and_none_overwrites_another() -> None:
    contacts = {"ada@example.com": "vip", "+44 20 7946 0958": "m", "123-45-6789": "ssn"}
    assert Masker().mask_value({"contacts": contacts, 7: "x"}) == {
        "contacts": {"[email]": "vip", "[phone]": "m", "[ssn]": "ssn"},
        7: "x",
    }
    # Two keys that mask alike are both kept, numbered; so is one written as a placeholder.
    same = {"ada@example.com": 1, "[email]": 2, "bob@example.com": 3, "[email]#2": 4}
    assert Masker().mask_value(same) == {
        "[email]#3": 1,
        "[email]": 2,
        "[email]#4": 3,
        "[email]#2": 4,
    }
    plain = {"id": "x", "count": 3}
    assert Masker().mask_value(plain) == plain


def test_kinds_can_be_chosen_and_patterns_added() -> None:
    masker = Masker(kinds=["email"], extra={"employee_id": r"\bEMP-\d{6}\b"})
    assert masker.mask_text("EMP-123456 ada@x.io 123-45-6789") == (
        "[employee_id] [email] 123-45-6789"
    )


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="unknown masking kind"):
        Masker(kinds=["email", "dna"])
    with pytest.raises(ValueError, match="'broken' is not a valid regex"):
        Masker(extra={"broken": "(unclosed"})


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_the_quick_skip_misses_nothing() -> None:
    # Digits one space apart still form a card: the cheap pre-check must let them through.
    assert Masker().mask_text("c 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 x") == "c [card] x"
    assert Masker().mask_text("no digits, no at-sign here") == "no digits, no at-sign here"
    # Configured patterns have no pre-check: they run on every text.
    assert Masker(extra={"code": r"\bXK[A-Z]+\b"}).mask_text("a XKCD b") == "a [code] b"
