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
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert Masker().mask_text(text) == text


def test_values_are_walked_and_keys_kept() -> None:
    value = {"user": {"email": "ada@example.com", "phones": ["+1 202 555 0143"]}, "n": 3}
    assert Masker().mask_value(value) == {
        "user": {"email": "[email]", "phones": ["[phone]"]},
        "n": 3,
    }


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
