"""Encryption at rest of classified values: AES-256-GCM with key ids, and key rotation.

``KeyRing.from_env(text)`` reads ``"id1:base64key,id2:base64key"`` (32-byte keys, standard or
URL-safe base64); the first key encrypts, every key decrypts. ``encrypt_value`` turns any JSON
value into an envelope ``{"$enc": "aes-256-gcm", "kid": ..., "nonce": ..., "ct": ...}`` whose
associated data binds it to where it is stored (``context``: execution and node), so a
ciphertext copied to another row does not decrypt. ``decrypt_value`` returns plain values
unchanged, so a store can hold both while a rotation (``reencrypt_value``) is under way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from orchestrion.errors import ConfigurationError, DecryptionError

__all__ = [
    "ALGORITHM",
    "DecryptionError",
    "KeyRing",
    "decrypt_value",
    "encrypt_value",
    "is_encrypted",
    "reencrypt_value",
]

ALGORITHM = "aes-256-gcm"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def _key(text: str, key_id: str) -> bytes:
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise ConfigurationError(f"encryption key {key_id!r} must be 32 bytes in base64")


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; ``primary`` is the one that encrypts."""

    keys: dict[str, bytes]
    primary: str

    @classmethod
    def from_env(cls, text: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in text.split(","):
            if not item.strip():
                continue
            key_id, sep, value = item.strip().partition(":")
            if not sep or not key_id:
                raise ConfigurationError("encryption keys: expected id:base64key pairs")
            if key_id in keys:
                raise ConfigurationError(f"encryption key id {key_id!r} is listed twice")
            keys[key_id] = _key(value, key_id)
            order.append(key_id)
        if not order:
            raise ConfigurationError("no encryption key given")
        return cls(keys, order[0])

    @classmethod
    def from_secret(cls, secret: str, variable: str) -> KeyRing:
        """One key derived from a secret of 32 characters or more (what the reference
        descriptions' ``DB_ENCRYPTION_KEY`` and ``AUDIT_SECRET_KEY`` hold): its SHA-256,
        under an id made of the key's own digest, so another secret is another key id."""
        if len(secret.strip()) < 32:
            raise ConfigurationError(f"{variable} must be at least 32 characters long")
        key = hashlib.sha256(b"orchestrion secret key\0" + secret.strip().encode()).digest()
        return cls({(key_id := "s" + hashlib.sha256(key).hexdigest()[:8]): key}, key_id)

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64 (for ``orchestrion`` users setting up a key ring)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$enc") == ALGORITHM


@functools.lru_cache(maxsize=32)
def _cipher(key: bytes) -> Any:
    """The AES-GCM object of ``key``, made once: in a classified execution every stored
    value is sealed, and making it is a third of the cost of sealing a small value."""
    # cryptography is imported where a value is sealed: a run without keys never loads it.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt_value(ring: KeyRing, value: Any, context: str) -> dict[str, str]:
    nonce = os.urandom(12)
    sealed = _cipher(ring.keys[ring.primary]).encrypt(
        nonce, _dumps(value).encode(), context.encode()
    )
    return {
        "$enc": ALGORITHM,
        "kid": ring.primary,
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(sealed).decode(),
    }


def decrypt_value(ring: KeyRing, value: Any, context: str) -> Any:
    if not is_encrypted(value):
        return value
    from cryptography.exceptions import InvalidTag

    key = ring.keys.get(str(value.get("kid")))
    if key is None:
        raise DecryptionError(f"no key {value.get('kid')!r} in the key ring to decrypt with")
    try:
        nonce = base64.b64decode(value["nonce"])
        plain = _cipher(key).decrypt(nonce, base64.b64decode(value["ct"]), context.encode())
    except (InvalidTag, KeyError, ValueError, binascii.Error) as exc:
        raise DecryptionError(
            "a stored value does not decrypt: tampered, or stored for another row"
        ) from exc
    return json.loads(plain)


def reencrypt_value(ring: KeyRing, value: Any, context: str) -> Any:
    """``value`` encrypted with the primary key (rotation); plain values are encrypted too."""
    if is_encrypted(value) and value.get("kid") == ring.primary:
        return value
    return encrypt_value(ring, decrypt_value(ring, value, context), context)
