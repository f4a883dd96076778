"""``Governance``: the policy in force in one process, with its keys, ready for use.

Built once per process from settings (``ORCHESTRION_GOVERNANCE_FILE``, the shipped default
otherwise) and the key variables the policy names. Every part that enforces a control takes
what it needs from here: the store its key ring (``protect`` in ``store/encrypted.py``), the
logs and the API their masker, the http
and llm handlers their guards, the service its python allowlist.

``trusted`` is the process's own level: True for ``orchestrion run``, ``retry``, ``resume`` and
the Python API, False for the service and the scale-out processes. It is a ceiling, not the
level of the work: each definition and execution stores its own (``governance/trust.py``),
what the process creates is no more trusted than the process, and each node attempt runs with
the stricter of its execution's level and this one.

A key variable that is not set turns its control off and says so (``missing_keys``), unless
the policy marks the control ``required``, in which case building ``Governance`` fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.llm_policy import LlmPolicy
from orchestrion.governance.masking import Masker
from orchestrion.governance.policy import GovernancePolicy, LoadedPolicy, load_policy
from orchestrion.governance.ssrf import UrlPolicy

if TYPE_CHECKING:
    from orchestrion.settings import Settings

__all__ = ["ClassifyingStore", "Governance", "WireKeys"]

logger = logging.getLogger(__name__)


@runtime_checkable
class ClassifyingStore(Protocol):
    """A store that seals the values of classified executions (``store/encrypted.py``), as
    far as the policy's other controls need to know it."""

    def classified(self, execution_id: str) -> bool:
        """Whether the execution's values are sealed (True while not known: the safe side)."""


@dataclass(frozen=True, slots=True)
class WireKeys:
    """What sealing values on the queue needs from the policy: the key ring, and whether an
    execution's values are classified (the encrypting store knows; True while unknown)."""

    ring: KeyRing
    classified: Callable[[str], bool]


@dataclass(frozen=True)
class Governance:
    """The loaded policy plus everything derived from it; see the module docstring."""

    loaded: LoadedPolicy
    trusted: bool = True
    keyring: KeyRing | None = None
    audit_keys: KeyRing | None = None
    masker: Masker | None = None
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)
    llm: LlmPolicy = field(default_factory=LlmPolicy)
    missing_keys: tuple[str, ...] = ()

    @property
    def policy(self) -> GovernancePolicy:
        return self.loaded.policy

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        trusted: bool = True,
        environ: dict[str, str] | None = None,
    ) -> Governance:
        """The policy in ``path`` (shipped default when None) with keys from ``environ``."""
        env = os.environ if environ is None else environ
        loaded = load_policy(path)
        policy = loaded.policy
        missing: list[str] = []

        def ring(variable: str, required: bool, what: str) -> KeyRing | None:
            text = env.get(variable, "").strip()
            alias = _SECRET_ALIASES.get(variable, "")
            if not text and env.get(alias, "").strip():
                return KeyRing.from_secret(env[alias], alias)
            if not text:
                if required:
                    raise ConfigurationError(
                        f"{variable} is not set, and the governance policy requires {what}"
                    )
                missing.append(variable)
                return None
            try:
                return KeyRing.from_env(text)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{variable}: {exc}") from exc

        keyring = ring(policy.encryption.key_env, policy.encryption.required, "encryption")
        audit_keys = (
            ring(policy.audit.key_env, policy.audit.required, "a signed audit trail")
            if policy.audit.enabled
            else None
        )
        return cls(
            loaded=loaded,
            trusted=trusted,
            keyring=keyring,
            audit_keys=audit_keys,
            masker=policy.masking.masker() if policy.masking.enabled else None,
            url_policy=policy.http.policy(),
            llm=policy.llm.policy(),
            missing_keys=tuple(missing),
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, trusted: bool = True) -> Governance:
        """The policy of ``settings``, with keys from the environment or, as every other
        setting, from ``.env`` (the environment wins)."""
        return cls.load(settings.governance_file, trusted=trusted, environ=_environment())

    def encrypts(self, classification: str) -> bool:
        """True when values of this classification are encrypted at rest."""
        return self.keyring is not None and classification in self.policy.encryption.classifications

    def wire_keys(self, store: object) -> WireKeys | None:
        """What an orchestrator seals values on the queue with (``cluster/on_wire.py`` builds
        its sealer from it); None without keys, or when ``store`` encrypts nothing (it is not
        a ``ClassifyingStore``, as ``store/encrypted.py``'s is)."""
        if self.keyring is None or not isinstance(store, ClassifyingStore):
            return None
        return WireKeys(self.keyring, store.classified)

    def masks(self, classification: str) -> bool:
        """True when values of this classification are hidden from callers without admin."""
        return self.masker is not None and classification in self.policy.masking.classifications

    @property
    def python_allowlist(self) -> tuple[str, ...] | None:
        """Modules the python handler may import from; None (anything) when trusted."""
        return None if self.trusted else tuple(self.policy.python.allowed_modules)

    def untrusted(self) -> Governance:
        """The same policy and keys, for a process that serves others (the service)."""
        return self if not self.trusted else replace(self, trusted=False)

    def warn_missing_keys(self) -> None:
        """Log, once at start, each control a missing key turns off.

        A process that serves others (the service, the scale-out processes) warns: its
        operator chose the policy and must know a control is off. A local run (the CLI, the
        Python API) of a policy that does not require the key says it at INFO only, so that
        ``orchestrion list`` or ``orchestrion.run()`` are not noisy about an optional control.
        """
        level = logging.INFO if self.trusted else logging.WARNING
        for variable in self.missing_keys:
            logger.log(
                level,
                "%s is not set: the governance control that needs it is off "
                "(see GET /health/compliance)",
                variable,
            )


# The reference descriptions' single secrets, read when our key ring variable is not set.
_SECRET_ALIASES = {
    "ORCHESTRION_ENCRYPTION_KEYS": "DB_ENCRYPTION_KEY",
    "ORCHESTRION_AUDIT_KEYS": "AUDIT_SECRET_KEY",
}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    dotenv = Path(".env")
    if dotenv.is_file():
        from dotenv import dotenv_values

        for name, value in dotenv_values(dotenv).items():
            env.setdefault(name, value or "")
    return env
