"""The governance policy file: the shipped default loads, bad files name field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.llm_providers import ProviderSection
from orchestrion.governance.policy import AnchorPolicy, GovernancePolicy, load_policy
from orchestrion.governance.policy_secrets import shown_policy


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


_PROVIDER = "llm:\n  providers:\n    azure:\n      base_url: {url}\n      headers: {headers}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "audit:\n  anchor:\n    webhook: https://user:pass@audit.example.com/cp\n",
            r"audit\.anchor\.webhook \(line 3\).*must not hold credentials.*audit\.key_env",
        ),
        (
            "audit:\n  anchor:\n    webhook: https://audit.example.com/cp?token=SECRET\n",
            r"audit\.anchor\.webhook \(line 3\).*query parameter 'token' looks like a credential",
        ),
        (
            _PROVIDER.format(url="https://u:p@llm.example.com/v1", headers="{}"),
            r"llm\.providers\.azure\.base_url \(line 4\).*must not hold credentials.*api_key_env",
        ),
        (
            _PROVIDER.format(url="https://llm.example.com/v1?api_key=k", headers="{}"),
            r"llm\.providers\.azure\.base_url .*query parameter 'api_key'",
        ),
        (
            _PROVIDER.format(url="https://llm.example.com/v1", headers="{x-api-key: sk-live-1}"),
            r"llm\.providers\.azure\.headers \(line 5\).*header 'x-api-key'.*"
            r"api_key_env.*auth_header: x-api-key",
        ),
        (
            _PROVIDER.format(url="https://llm.example.com/v1", headers="{X-Extra: Bearer abc}"),
            r"header 'X-Extra' looks like it carries a credential",
        ),
    ],
)
def test_credentials_in_the_policy_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_policy(path)
    # What is not a credential is accepted: a version header, a version in the query.
    path.write_text(
        _PROVIDER.format(
            url="https://llm.example.com/v1?api-version=2024-06-01",
            headers="{api-version: '2024-06-01', OpenAI-Organization: org-abc}",
        )
    )
    assert load_policy(path).policy.llm.providers["azure"].headers["api-version"] == "2024-06-01"


def test_the_policy_is_shown_without_what_could_be_a_credential() -> None:
    policy = GovernancePolicy.model_validate(
        {
            "audit": {"anchor": {"webhook": "https://audit.example.com/cp?tenant=7"}},
            "llm": {"providers": {"a": {"base_url": "https://h/v1", "headers": {"v": "1"}}}},
        }
    )
    # Built past the checks (as code could): shown without the user info nor the values.
    anchor = AnchorPolicy.model_construct(webhook="https://user:pw@audit.example.com/cp?k=s")
    audit = policy.audit.model_copy(update={"anchor": anchor})
    provider = ProviderSection.model_construct(
        base_url="https://u:p@h/v1?token=s", headers={"x-api-key": "sk-live"}
    )
    llm = policy.llm.model_copy(update={"providers": {"a": provider}})
    shown = shown_policy(policy.model_copy(update={"audit": audit, "llm": llm}))
    assert shown.audit.anchor.webhook == "https://audit.example.com/cp?k=***"
    assert shown.llm.providers["a"].base_url == "https://h/v1?token=***"
    assert shown.llm.providers["a"].headers == {"x-api-key": "***"}
    assert shown_policy(policy).audit.anchor.webhook == "https://audit.example.com/cp?tenant=***"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read governance policy"):
        load_policy(tmp_path / "nope.yaml")
