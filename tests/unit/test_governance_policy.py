"""The governance policy file: the shipped default loads, bad files name field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.policy import GovernancePolicy, load_policy


def test_the_shipped_default_is_the_schema_default() -> None:
    """Without a path the default policy is built from the schema, not parsed: the shipped
    file, which documents it, must say exactly the same."""
    from orchestrion.governance.policy import DEFAULT_POLICY_FILE

    loaded = load_policy()
    parsed = load_policy(DEFAULT_POLICY_FILE)
    assert loaded.policy == GovernancePolicy() == parsed.policy
    assert len(loaded.sha256) == 64 and loaded.sha256 == parsed.sha256
    assert loaded.source == parsed.source and loaded.source.endswith("default_governance.yaml")


def test_a_policy_is_read_and_its_hash_changes_with_it(tmp_path: Path) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text("llm:\n  allowed_models: [gpt-4o-mini]\n  max_tokens: 2000\n")
    loaded = load_policy(path)
    assert loaded.policy.llm.allowed_models == ["gpt-4o-mini"]
    assert loaded.sha256 != load_policy().sha256
    assert loaded.policy.http.policy().deny_networks  # sections not given keep defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("llm:\n  max_tokens: 0\n", r"llm\.max_tokens \(line 2\)"),
        ("llm:\n  allowed_model: [x]\n", r"llm\.allowed_model \(line 2\): Extra inputs"),
        (
            "masking:\n  kinds: [email, dna]\n",
            r"masking\.kinds\.1 \(line 2\).*unknown masking kind 'dna'",
        ),
        ("masking:\n  kinds:\n    - email\n    - dna\n", r"masking\.kinds\.1 \(line 4\)"),
        (
            "masking:\n  patterns: {x: '('}\n",
            r"masking\.patterns\.x \(line 2\).*not a valid regular",
        ),
        ("http:\n  deny_networks: [ten]\n", r"not a network: 'ten'"),
        ("version: 2\n", r"version \(line 1\)"),
        ("- a list\n", "must be a mapping"),
        ("llm: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_policies_name_the_field_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_policy(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read governance policy"):
        load_policy(tmp_path / "nope.yaml")
