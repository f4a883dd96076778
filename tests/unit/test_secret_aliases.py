"""The reference descriptions' ``DB_ENCRYPTION_KEY`` and ``AUDIT_SECRET_KEY`` (one secret of
32 characters or more each) stand in for our key rings when those are not set."""

from __future__ import annotations

import base64

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import decrypt_value, encrypt_value
from orchestrion.governance.runtime import Governance

SECRET = "your-32-byte-audit-signing-key-here-replace-with-actual-key"
OURS = "k1:" + base64.b64encode(b"K" * 32).decode()


def test_each_secret_makes_a_one_key_ring() -> None:
    governance = Governance.load(
        None, environ={"DB_ENCRYPTION_KEY": SECRET, "AUDIT_SECRET_KEY": SECRET + "-audit"}
    )
    assert governance.keyring is not None and governance.audit_keys is not None
    assert governance.keyring.primary.startswith("s") and len(governance.keyring.primary) == 9
    assert governance.keyring.primary != governance.audit_keys.primary  # other secret, other id
    assert governance.missing_keys == ()
    again = Governance.load(None, environ={"DB_ENCRYPTION_KEY": SECRET})
    assert again.keyring == governance.keyring  # the same secret: the same key, every start
    sealed = encrypt_value(governance.keyring, {"ssn": "123"}, "e1:n1")
    assert decrypt_value(again.keyring, sealed, "e1:n1") == {"ssn": "123"}


def test_our_variables_win() -> None:
    governance = Governance.load(
        None,
        environ={
            "DB_ENCRYPTION_KEY": SECRET,
            "ORCHESTRION_ENCRYPTION_KEYS": OURS,
            "AUDIT_SECRET_KEY": SECRET,
            "ORCHESTRION_AUDIT_KEYS": OURS,
        },
    )
    assert governance.keyring is not None and governance.keyring.primary == "k1"
    assert governance.audit_keys is not None and governance.audit_keys.primary == "k1"


@pytest.mark.parametrize("variable", ["DB_ENCRYPTION_KEY", "AUDIT_SECRET_KEY"])
def test_a_short_secret_is_refused_naming_its_variable(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{variable} must be at least 32 characters"):
        Governance.load(None, environ={variable: "too-short"})
