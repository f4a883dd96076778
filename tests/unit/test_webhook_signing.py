"""Webhook signatures, both ways: GitHub's, the timestamped one, Standard Webhooks' (with the
specification's own example), and every way a header can be wrong."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from orchestrion.governance.webhook_signing import (
    SignatureRefused,
    github_signature,
    sign,
    standard_key,
    standard_signature,
    verify_github,
    verify_standard,
    verify_timestamped,
)

KEY = b"secret"
BODY = b'{"ref": "refs/heads/main"}'


def test_github_signatures_verify_and_anything_else_is_refused() -> None:
    header = github_signature(KEY, BODY)
    assert header == "sha256=" + hmac.new(KEY, BODY, hashlib.sha256).hexdigest()
    verify_github(KEY, BODY, header)
    verify_github(KEY, BODY, header.upper().replace("SHA256=", "sha256="))  # hex in capitals
    for bad, why in [
        (None, "no X-Hub-Signature-256"),
        ("sha1=" + "0" * 40, "not 'sha256=<hex>'"),
        ("sha256=xyz", "64 hex digits"),
        ("sha256=" + "0" * 64, "does not match"),
        (github_signature(b"other", BODY), "does not match"),
        ("sha256=" + "a" * 5000, "not 'sha256=<hex>'"),
    ]:
        with pytest.raises(SignatureRefused, match=why):
            verify_github(KEY, BODY, bad)
    with pytest.raises(SignatureRefused):
        verify_github(KEY, BODY + b" ", header)


def test_timestamped_signatures_refuse_stale_and_future_times_only_when_signed() -> None:
    header = sign(KEY, BODY, 1_000)
    assert verify_timestamped(KEY, BODY, header, 1_100, 300) == 1_000
    with pytest.raises(SignatureRefused) as old:
        verify_timestamped(KEY, BODY, header, 2_000, 300)
    assert old.value.stale and "1000 s away" in old.value.reason
    with pytest.raises(SignatureRefused) as future:
        verify_timestamped(KEY, BODY, sign(KEY, BODY, 5_000), 1_000, 300)
    assert future.value.stale
    # a wrong signature with an old time is a bad signature, not a stale one
    forged = sign(b"other", BODY, 1)
    with pytest.raises(SignatureRefused) as bad:
        verify_timestamped(KEY, BODY, forged, 2_000, 300)
    assert not bad.value.stale
    # the time is part of what is signed: moving it breaks the signature
    moved = header.replace("t=1000", "t=1999")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify_timestamped(KEY, BODY, moved, 2_000, 300)


def test_a_rotated_secret_is_accepted_in_either_signature() -> None:
    old, new = sign(b"old", BODY, 10), sign(KEY, BODY, 10)
    both = f"t=10,v1={old.split('v1=')[1]},v1={new.split('v1=')[1]}"
    assert verify_timestamped(KEY, BODY, both, 10, 300) == 10
    assert verify_timestamped(b"old", BODY, both, 10, 300) == 10


@pytest.mark.parametrize(
    "header",
    [None, "", "v1=" + "0" * 64, "t=10", "t=abc,v1=" + "0" * 64, "t=10,v1=zz", "x" * 2000],
)
def test_malformed_timestamped_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureRefused):
        verify_timestamped(KEY, BODY, header, 10, 300)


def test_standard_webhooks_example_of_the_specification() -> None:
    key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    at = verify_standard(
        key, body, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", f"v1,bad {expected}",
        1614265330, 300,
    )  # fmt: skip
    assert at == 1614265330
    with pytest.raises(SignatureRefused, match="does not match"):
        verify_standard(key, body, "msg_other", "1614265330", expected, 1614265330, 300)
    with pytest.raises(SignatureRefused) as stale:
        verify_standard(key, body, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", expected, 0, 300)
    assert stale.value.stale
    with pytest.raises(SignatureRefused, match="no webhook-id"):
        verify_standard(key, body, None, "1614265330", expected, 1614265330, 300)
    assert standard_key("plain-text") == b"plain-text"
    assert standard_key("whsec_not*base64") == b"whsec_not*base64"
