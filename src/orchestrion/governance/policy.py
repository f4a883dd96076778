"""The governance policy file (``governance.yaml``): its schema, its default, and its loading.

``load_policy(path)`` reads YAML (or JSON), validates it against ``GovernancePolicy`` with
unknown keys refused, and raises ``ConfigurationError`` listing every problem with its field
path and line. Without a path the shipped default (``default_governance.yaml`` beside this
module) applies. The loaded policy carries the SHA-256 of its canonical form, which
``/health/governance`` shows so an auditor can tell which policy was in force.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrion import yaml_aliases
from orchestrion.definition.limits import DefinitionLimits
from orchestrion.errors import ConfigurationError
from orchestrion.governance.llm_policy import DEFAULT_INJECTION_PHRASES, LlmPolicy
from orchestrion.governance.llm_providers import ProviderSection, check_provider_names
from orchestrion.governance.masking import MASKING_ORDER, Masker
from orchestrion.governance.policy_secrets import check_url
from orchestrion.governance.secret_routes import SecretRouteSection
from orchestrion.governance.ssrf import DEFAULT_DENY_HOSTS, DEFAULT_DENY_NETWORKS, UrlPolicy
from orchestrion.governance.syslog_target import syslog_address

__all__ = ["DEFAULT_POLICY_FILE", "GovernancePolicy", "LoadedPolicy", "load_policy"]

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_governance.yaml")

Classification = Literal["public", "internal", "pii", "phi"]
_CLASSIFIED: list[Classification] = ["pii", "phi"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_kind(kind: str) -> str:
    if kind not in MASKING_ORDER:
        raise ValueError(f"unknown masking kind {kind!r} (known: {', '.join(MASKING_ORDER)})")
    return kind


def _compiles(expression: str) -> str:
    try:
        re.compile(expression)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return expression


class MaskingPolicy(_Section):
    enabled: bool = True
    # Checked item by item, so an error names the kind or pattern and its line.
    kinds: list[Annotated[str, AfterValidator(_known_kind)]] = Field(
        default_factory=lambda: list(MASKING_ORDER)
    )
    # Factories are lambdas, not list or dict: pydantic reads a factory's signature as the
    # model is built, and a builtin's means parsing its text signature (a few ms per start).
    patterns: dict[str, Annotated[str, AfterValidator(_compiles)]] = Field(
        default_factory=lambda: {}
    )
    classifications: list[Classification] = Field(default_factory=lambda: list(_CLASSIFIED))

    def masker(self) -> Masker:
        return Masker(self.kinds, self.patterns)


class EncryptionPolicy(_Section):
    classifications: list[Classification] = Field(default_factory=lambda: list(_CLASSIFIED))
    key_env: str = "ORCHESTRION_ENCRYPTION_KEYS"
    required: bool = False  # true: a process without the key refuses to start


def _absolute(path: str | None) -> str | None:
    if path is not None and not Path(path).expanduser().is_absolute():
        raise ValueError(f"must be an absolute path (every process reads the same file): {path!r}")
    return None if path is None else str(Path(path).expanduser())


def _syslog_address(address: str | None) -> str | None:
    if address is not None:
        syslog_address(address)  # raises ValueError naming what is wrong
    return address


def _webhook_url(url: str | None) -> str | None:
    if url is not None and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    if url is None:
        return None
    return check_url(
        url,
        "the checkpoints it receives are signed with the audit key (audit.key_env), so the"
        " receiver can check them without one; a receiver that wants a credential can get"
        " it from a proxy you run in front of it",
    )


class AnchorPolicy(_Section):
    """Signed checkpoints of the audit trail's head, kept where the database cannot rewrite
    them (store/audit_anchor.py)."""

    file: Annotated[str | None, AfterValidator(_absolute)] = None
    syslog: Annotated[str | None, AfterValidator(_syslog_address)] = None
    webhook: Annotated[str | None, AfterValidator(_webhook_url)] = None
    interval_seconds: float = Field(default=60.0, gt=0, le=86400)


class AuditPolicy(_Section):
    enabled: bool = True
    key_env: str = "ORCHESTRION_AUDIT_KEYS"
    required: bool = False
    anchor: AnchorPolicy = Field(default_factory=AnchorPolicy)


class LlmSection(_Section):
    allowed_models: list[str] = Field(default_factory=lambda: [])
    max_tokens: int | None = Field(default=None, ge=1)
    injection_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_INJECTION_PHRASES))
    injection_patterns: list[str] = Field(default_factory=lambda: [])
    review_below_confidence: float | None = Field(default=None, ge=0, le=1)
    confidence_field: str | None = Field(default=None, min_length=1)
    # name -> endpoint and credential (governance/llm_providers.py); openai/offline built in
    providers: dict[str, ProviderSection] = Field(default_factory=lambda: {})

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderSection]) -> dict[str, ProviderSection]:
        check_provider_names(value)
        return value

    def policy(self) -> LlmPolicy:
        return LlmPolicy(
            tuple(self.allowed_models),
            self.max_tokens,
            tuple(self.injection_phrases),
            tuple(self.injection_patterns),
            review_below_confidence=self.review_below_confidence,
            confidence_field=self.confidence_field,
        )


class HttpSection(_Section):
    deny_networks: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY_NETWORKS))
    allow_networks: list[str] = Field(default_factory=lambda: [])
    deny_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY_HOSTS))
    allow_hosts: list[str] = Field(default_factory=lambda: [])
    deny_private: bool = False
    deny_loopback: bool = False
    deny_reserved: bool = True

    def policy(self) -> UrlPolicy:
        return UrlPolicy(
            deny_networks=tuple(self.deny_networks),
            allow_networks=tuple(self.allow_networks),
            deny_hosts=tuple(self.deny_hosts),
            allow_hosts=tuple(self.allow_hosts),
            deny_private=self.deny_private,
            deny_loopback=self.deny_loopback,
            deny_reserved=self.deny_reserved,
        )


class PythonSection(_Section):
    allowed_modules: list[str] = Field(default_factory=lambda: [])


class TemplateSection(_Section):
    timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    max_output_bytes: int = Field(default=1_000_000, ge=1024)


class DefinitionSection(_Section):
    """Size limits of workflow definitions (``orchestrion.definition.limits``)."""

    max_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_nodes: int = Field(default=10_000, ge=1)
    max_dependencies_per_node: int = Field(default=1_000, ge=1)
    max_nesting_depth: int = Field(default=64, ge=4, le=1_000)
    max_problems: int = Field(default=100, ge=1, le=10_000)

    def limits(self) -> DefinitionLimits:
        return DefinitionLimits(**self.model_dump())


def definition_limits(loaded: LoadedPolicy, *, trusted: bool) -> DefinitionLimits:
    """The size limits of a definition of work at this trust level under ``loaded``.

    Untrusted work (anything that came in through the service) is always bounded by the
    policy. Trusted work, one's own file in one's own process, which may run any code anyway,
    is bounded by a policy file the operator named; under the shipped default only its
    nesting depth and problem count are, since the default sizes exist to protect the service
    and would refuse the very large definitions people build and run locally.
    """
    limits = loaded.policy.definitions.limits()
    return limits if loaded.named or not trusted else limits.for_own_files()


class RetentionSection(_Section):
    days: int | None = Field(default=None, ge=1)


class GovernancePolicy(_Section):
    """Every control of PRODUCT.md section 7, with the defaults of the shipped policy."""

    version: Literal[1] = 1
    masking: MaskingPolicy = Field(default_factory=MaskingPolicy)
    encryption: EncryptionPolicy = Field(default_factory=EncryptionPolicy)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    llm: LlmSection = Field(default_factory=LlmSection)
    http: HttpSection = Field(default_factory=HttpSection)
    python: PythonSection = Field(default_factory=PythonSection)
    templates: TemplateSection = Field(default_factory=TemplateSection)
    definitions: DefinitionSection = Field(default_factory=DefinitionSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    required_headers: list[str] = Field(default_factory=lambda: [])
    # secret name -> where it may be sent (governance/secret_routes.py)
    secrets: dict[str, SecretRouteSection] = Field(default_factory=lambda: {})

    @field_validator("masking")
    @classmethod
    def _patterns_compile(cls, value: MaskingPolicy) -> MaskingPolicy:
        value.masker()  # raises ValueError naming the bad kind or pattern
        return value

    @field_validator("llm")
    @classmethod
    def _llm_compiles(cls, value: LlmSection) -> LlmSection:
        value.policy()
        return value

    @field_validator("http")
    @classmethod
    def _networks_parse(cls, value: HttpSection) -> HttpSection:
        value.policy()
        return value

    @model_validator(mode="after")
    def _secret_providers_exist(self) -> GovernancePolicy:
        known = {"openai", *self.llm.providers}
        for name, route in self.secrets.items():
            for provider in route.providers:
                if provider not in known:
                    raise ValueError(
                        f"secrets.{name}.providers: unknown llm provider {provider!r} "
                        f"(known: {', '.join(sorted(known))})"
                    )
        return self


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy, where it came from and the hash of its canonical form."""

    policy: GovernancePolicy
    source: str
    sha256: str
    named: bool = True
    """False for the shipped default, which applies when no policy file is named."""


def load_policy(path: str | Path | None = None) -> LoadedPolicy:
    """The policy in ``path`` (the shipped default when None); see the module docstring.

    Every engine loads it; a file that has not changed (same size and modification time) is
    parsed once per process."""
    if path is None:
        # The shipped file holds the schema's defaults (a unit test keeps them equal): no
        # YAML to import and parse for the common case.
        return _default()
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise ConfigurationError(f"cannot read governance policy {file}: {exc.strerror}") from exc
    return _load(str(file), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=1)
def _default() -> LoadedPolicy:
    return _loaded(GovernancePolicy(), DEFAULT_POLICY_FILE, named=False)


def _loaded(policy: GovernancePolicy, file: Path, *, named: bool = True) -> LoadedPolicy:
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return LoadedPolicy(policy, str(file), digest, named)


_POLICY_ALIAS_BYTES = 1024 * 1024
_POLICY_ALIAS_GROWTH = 10


@lru_cache(maxsize=16)
def _load(name: str, mtime_ns: int, size: int) -> LoadedPolicy:
    import yaml  # here: the default policy needs none

    file = Path(name)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read governance policy {file}: {exc.strerror}") from exc
    try:
        # Recursive aliases, or aliases expanding far past the file, are refused unbuilt.
        budget = _POLICY_ALIAS_BYTES + _POLICY_ALIAS_GROWTH * len(text)
        data = yaml_aliases.safe_load(text, budget, "the policy") or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"governance policy {file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"governance policy {file} must be a mapping at the top")
    try:
        policy = GovernancePolicy.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)  # only an error needs the lines
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            where = ".".join(loc) or "(top)"
            line = _nearest_line(lines, loc)
            at = f" (line {line})" if line else ""
            problems.append(f"{where}{at}: {err['msg']}")
        raise ConfigurationError(
            f"invalid governance policy {file}: " + "; ".join(problems)
        ) from exc
    return _loaded(policy, file)


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Field path -> 1-based line, from the YAML node tree."""
    import yaml

    index: dict[tuple[str, ...], int] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                index[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


def _nearest_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
