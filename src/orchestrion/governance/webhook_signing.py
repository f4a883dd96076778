"""Signatures of webhook requests: HMAC-SHA256 with a shared secret, both ways.

Two schemes, the same for requests Orchestrion receives and those it sends:

- ``github``: header ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw body
  (GitHub's, also used by Gitea, Forgejo and many others). It signs no time, so a replay is
  stopped by the delivery id alone (``X-GitHub-Delivery``).
- ``orchestrion`` (the default): header ``X-Orchestrion-Signature: t=<unix seconds>,v1=<hex>``,
  the HMAC-SHA256 of ``"<t>." + body`` (the layout Stripe made common). The time is signed,
  so a request older or newer than the tolerance (300 s by default) is refused, and a replay
  inside the window is stopped by the delivery id. Several ``v1=`` values may be given (one per
  secret while a secret is rotated); one match is enough.

- ``standard`` (the Standard Webhooks specification, used by Svix and others): headers
  ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64>``, the
  HMAC-SHA256 of ``"<id>.<timestamp>." + body`` keyed with the secret (a ``whsec_`` secret is
  the base64 of the key). The time is checked as above, and ``webhook-id`` is the delivery id.

Comparisons are constant-time (``hmac.compare_digest``). The signature is checked before the
time, so only a holder of the secret learns that a request was refused for its age.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = [
    "GITHUB_HEADER",
    "SIGNATURE_HEADER",
    "STANDARD_HEADERS",
    "SignatureRefused",
    "github_signature",
    "sign",
    "standard_key",
    "standard_signature",
    "verify_github",
    "verify_standard",
    "verify_timestamped",
]

GITHUB_HEADER = "X-Hub-Signature-256"
SIGNATURE_HEADER = "X-Orchestrion-Signature"
_MAX_HEADER = 1024
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class SignatureRefused(ValueError):
    """A request whose signature does not verify; ``reason`` is for the log, not the caller."""

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stale = stale  # signed right, but outside the time window


def _mac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def github_signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + _mac(secret, body)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Orchestrion-Signature`` value of ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, str(timestamp).encode() + b'.' + body)}"


def verify_github(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise ``SignatureRefused`` unless ``header`` is ``sha256=<hex>`` of ``body``."""
    if not header:
        raise SignatureRefused(f"no {GITHUB_HEADER} header")
    if len(header) > _MAX_HEADER or not header.startswith("sha256="):
        raise SignatureRefused(f"{GITHUB_HEADER} is not 'sha256=<hex>'")
    given = header[len("sha256=") :]
    if not _HEX.match(given):
        raise SignatureRefused(f"{GITHUB_HEADER} is not 'sha256=<64 hex digits>'")
    if not hmac.compare_digest(_mac(secret, body), given.lower()):
        raise SignatureRefused("the signature does not match the body")


@dataclass(frozen=True, slots=True)
class _Parsed:
    timestamp: int
    signatures: tuple[str, ...]


def _parse(header: str) -> _Parsed:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and _HEX.match(value):
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureRefused(f"{SIGNATURE_HEADER} is not 't=<unix seconds>,v1=<hex>'")
    return _Parsed(timestamp, tuple(signatures[:8]))


def verify_timestamped(
    secret: bytes, body: bytes, header: str | None, now: float, tolerance: float
) -> int:
    """Raise ``SignatureRefused`` unless ``header`` signs ``body`` at a time within
    ``tolerance`` seconds of ``now``; the signed time."""
    if not header:
        raise SignatureRefused(f"no {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER:
        raise SignatureRefused(f"{SIGNATURE_HEADER} is too long")
    parsed = _parse(header)
    expected = _mac(secret, str(parsed.timestamp).encode() + b"." + body)
    # Every candidate is compared, matched or not, so the time taken says nothing.
    matched = False
    for candidate in parsed.signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRefused("the signature does not match the body and timestamp")
    if abs(now - parsed.timestamp) > tolerance:
        raise SignatureRefused(
            f"the signed timestamp is {abs(now - parsed.timestamp):.0f} s away from now"
            f" (at most {tolerance:g} s allowed)",
            stale=True,
        )
    return parsed.timestamp


STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_STANDARD_ID = re.compile(r"^[\x21-\x7e]{1,256}$")


def standard_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret: the base64 after ``whsec_``, else the text."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (one ``v1,`` signature)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_standard(
    key: bytes,
    body: bytes,
    message_id: str | None,
    timestamp: str | None,
    header: str | None,
    now: float,
    tolerance: float,
) -> int:
    """Raise ``SignatureRefused`` unless the Standard Webhooks headers sign ``body`` at a
    time within ``tolerance`` seconds of ``now``; the signed time."""
    if not message_id or not timestamp or not header:
        raise SignatureRefused("no webhook-id, webhook-timestamp or webhook-signature header")
    if len(header) > _MAX_HEADER or not _STANDARD_ID.match(message_id):
        raise SignatureRefused("webhook-id or webhook-signature is malformed")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureRefused("webhook-timestamp is not unix seconds")
    at = int(timestamp)
    expected = standard_signature(key, message_id, at, body)[len("v1,") :]
    matched = False
    for part in header.split(" ")[:8]:
        version, _, value = part.partition(",")
        if version == "v1":
            matched |= hmac.compare_digest(expected, value)
    if not matched:
        raise SignatureRefused("the signature does not match the id, timestamp and body")
    if abs(now - at) > tolerance:
        raise SignatureRefused(
            f"the signed timestamp is {abs(now - at):.0f} s away from now"
            f" (at most {tolerance:g} s allowed)",
            stale=True,
        )
    return at
