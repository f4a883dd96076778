"""Secrets read from the environment and KEY=VALUE files: template secrets, webhook secrets."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrion.errors import ConfigurationError

if TYPE_CHECKING:
    from orchestrion.settings import Settings

SECRET_ENV_PREFIX = "ORCHESTRION_SECRET_"
WEBHOOK_SECRET_PREFIX = "ORCHESTRION_WEBHOOK_SECRET_"


@lru_cache(maxsize=8)
def _read_secrets_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read secrets file {path}: {exc.strerror}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"secrets file {path}, line {number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def load_secrets(settings: Settings) -> dict[str, str]:
    """Secrets for templates: ``ORCHESTRION_SECRET_<NAME>`` variables, then the secrets file.

    Only prefixed variables are exposed, so a workflow cannot read arbitrary process
    environment (a database password, say) through ``{{ secrets.X }}``.
    """
    secrets = {
        key[len(SECRET_ENV_PREFIX) :]: value
        for key, value in os.environ.items()
        if key.startswith(SECRET_ENV_PREFIX) and len(key) > len(SECRET_ENV_PREFIX)
    }
    if settings.secrets_file is not None:
        for key, value in _read_secrets_file(str(settings.secrets_file)).items():
            secrets.setdefault(key, value)
    return secrets


def webhook_secret(settings: Settings, name: str) -> str | None:
    """The inbound webhook secret ``name``: ``ORCHESTRION_WEBHOOK_SECRET_<name>``, else the
    webhook secrets file; None when neither has it. Only these are webhook secrets, so a
    definition naming one can never make a server credential (``{{ secrets.X }}``, an LLM
    key) the key of its webhook."""
    value = os.environ.get(WEBHOOK_SECRET_PREFIX + name)
    if value:
        return value
    if settings.webhook_secrets_file is not None:
        return _read_secrets_file(str(settings.webhook_secrets_file)).get(name) or None
    return None
