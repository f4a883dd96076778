"""The policy in force in a process: keys from the environment, trusted or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance


def test_default_policy_without_keys_turns_key_controls_off_and_says_which() -> None:
    gov = Governance.load(environ={})
    assert gov.keyring is None and gov.audit_keys is None
    assert gov.missing_keys == ("ORCHESTRION_ENCRYPTION_KEYS", "ORCHESTRION_AUDIT_KEYS")
    assert not gov.encrypts("pii")
    assert gov.masks("pii") and not gov.masks("public")
    assert gov.python_allowlist is None  # trusted by default


def test_keys_from_the_environment_enable_encryption_and_signing() -> None:
    env = {
        "ORCHESTRION_ENCRYPTION_KEYS": f"k1:{KeyRing.generate_key()}",
        "ORCHESTRION_AUDIT_KEYS": f"a1:{KeyRing.generate_key()}",
    }
    gov = Governance.load(environ=env)
    assert gov.keyring is not None and gov.keyring.primary == "k1"
    assert gov.audit_keys is not None and gov.audit_keys.primary == "a1"
    assert gov.encrypts("phi") and not gov.encrypts("internal")
    assert gov.missing_keys == ()


def test_a_bad_key_names_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRION_ENCRYPTION_KEYS"):
        Governance.load(environ={"ORCHESTRION_ENCRYPTION_KEYS": "k1:short"})


def test_required_encryption_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nencryption:\n  required: true\n")
    with pytest.raises(ConfigurationError, match="requires encryption"):
        Governance.load(policy, environ={})


def test_the_service_applies_the_python_allowlist() -> None:
    gov = Governance.load(environ={}).untrusted()
    assert gov.python_allowlist == ()
    assert gov.untrusted() is gov


def test_keys_may_come_from_dotenv_like_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.settings import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRION_ENCRYPTION_KEYS", raising=False)
    (tmp_path / ".env").write_text(f"ORCHESTRION_ENCRYPTION_KEYS=dot:{KeyRing.generate_key()}\n")
    gov = Governance.from_settings(load_settings())
    assert gov.keyring is not None and gov.keyring.primary == "dot"
    monkeypatch.setenv("ORCHESTRION_ENCRYPTION_KEYS", f"env:{KeyRing.generate_key()}")
    gov = Governance.from_settings(load_settings())
    assert gov.keyring is not None and gov.keyring.primary == "env"  # the environment wins
