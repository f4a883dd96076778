"""Encryption at rest: round trips, key ids and rotation, tampering and misplaced ciphertexts."""

from __future__ import annotations

import base64
import json

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import (
    DecryptionError,
    KeyRing,
    decrypt_value,
    encrypt_value,
    is_encrypted,
    reencrypt_value,
)

OLD, NEW = KeyRing.generate_key(), KeyRing.generate_key()
VALUE = {"patient": "Ada Lovelace", "dob": "1815-12-10", "scores": [1, 2.5, None]}


def test_a_value_round_trips_and_the_plaintext_is_not_in_the_envelope() -> None:
    ring = KeyRing.from_env(f"k1:{OLD}")
    sealed = encrypt_value(ring, VALUE, "exec-1/node-a")
    assert is_encrypted(sealed) and sealed["kid"] == "k1"
    assert "Ada" not in json.dumps(sealed)
    assert decrypt_value(ring, sealed, "exec-1/node-a") == VALUE
    assert decrypt_value(ring, "plain", "exec-1/node-a") == "plain"


def test_rotation_reencrypts_with_the_new_primary_and_old_values_still_read() -> None:
    old_ring = KeyRing.from_env(f"k1:{OLD}")
    sealed = encrypt_value(old_ring, VALUE, "ctx")
    ring = KeyRing.from_env(f"k2:{NEW},k1:{OLD}")
    assert decrypt_value(ring, sealed, "ctx") == VALUE
    rotated = reencrypt_value(ring, sealed, "ctx")
    assert rotated["kid"] == "k2" and rotated != sealed
    assert reencrypt_value(ring, rotated, "ctx") is rotated
    assert decrypt_value(KeyRing.from_env(f"k2:{NEW}"), rotated, "ctx") == VALUE


def test_tampering_another_row_and_unknown_keys_are_refused() -> None:
    ring = KeyRing.from_env(f"k1:{OLD}")
    sealed = encrypt_value(ring, VALUE, "exec-1/node-a")
    with pytest.raises(DecryptionError, match="another row"):
        decrypt_value(ring, sealed, "exec-2/node-a")
    flipped = dict(sealed)
    raw = bytearray(base64.b64decode(sealed["ct"]))
    raw[0] ^= 1
    flipped["ct"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionError, match="tampered"):
        decrypt_value(ring, flipped, "exec-1/node-a")
    with pytest.raises(DecryptionError, match="no key 'k1'"):
        decrypt_value(KeyRing.from_env(f"k2:{NEW}"), sealed, "exec-1/node-a")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no encryption key"),
        ("nokey", "id:base64key"),
        ("k1:c2hvcnQ=", "must be 32 bytes"),
        (f"k1:{OLD},k1:{NEW}", "listed twice"),
    ],
    # The keys are random: ids of their own keep parallel workers' collections equal.
    ids=["empty", "no-colon", "short-key", "twice"],
)
def test_bad_key_rings_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KeyRing.from_env(text)
