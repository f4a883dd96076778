"""Where settings come from besides our own variables: the reference descriptions' names.

``env`` gives a field its ``ORCHESTRION_`` variable and the reference names of the same
setting; ``ComposedUrls`` builds ``redis_url`` and ``database_url`` from their host, port,
user and password variables.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
)

from orchestrion.errors import ConfigurationError


def env(name: str, *references: str) -> AliasChoices:
    """Our variable, then the names the reference descriptions give the same setting: the
    first one set is read, so ours wins when both are (README.md, Configuration)."""
    return AliasChoices(f"ORCHESTRION_{name.upper()}", *references)


# Reference variables that make up a URL of ours together: (host, port, db, password) for
# Redis, read only when neither ORCHESTRION_REDIS_URL nor REDIS_URL is set; likewise the
# PostgreSQL ones for the database URL.
_REDIS_PARTS = (
    ("REDIS_HOST", "REDIS_PORT", None, None),
    ("APP_REDIS_HOST", "APP_REDIS_PORT", "APP_REDIS_DB", "APP_REDIS_PASSWORD"),
)
_POSTGRES = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD")
_URL_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")  # a name, IPv4, or [IPv6]


class ComposedUrls(PydanticBaseSettingsSource):
    """``redis_url`` and ``database_url`` made of the reference descriptions' host, port,
    user and password variables (environment, then ``.env``). Below the environment and
    ``.env`` sources: a URL given whole, ours or its alias, always wins."""

    def __init__(
        self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, str | None] = {}
        for source in reversed(sources):  # the environment over .env
            if isinstance(source, EnvSettingsSource | DotEnvSettingsSource):
                self._values.update({k.upper(): v for k, v in source.env_vars.items()})

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is answered by __call__

    def _get(self, name: str | None) -> str | None:
        value = self._values.get(name) if name else None
        return value.strip() or None if value is not None else None

    def _host(self, name: str) -> str | None:
        text = self._get(name)
        if text is not None and not _URL_HOST.fullmatch(text):
            raise ConfigurationError(f"invalid configuration: {name}: not a host name: {text!r}")
        return text

    def _number(self, name: str | None, default: int, what: str = "port", top: int = 65535) -> int:
        text = self._get(name)
        if text is None or name is None:
            return default
        if not text.isdigit() or not 0 < int(text) <= top:
            raise ConfigurationError(f"invalid configuration: {name}: not a {what}: {text!r}")
        return int(text)

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        given = {"redis_url": ("ORCHESTRION_REDIS_URL", "REDIS_URL")}
        given["database_url"] = ("ORCHESTRION_DATABASE_URL", "DATABASE_URL")
        whole = {field for field, names in given.items() if any(map(self._get, names))}
        for host_var, port_var, db_var, password_var in _REDIS_PARTS:
            host = self._host(host_var)
            if host is not None and "redis_url" not in whole:
                password = self._get(password_var)
                auth = f":{quote(password, safe='')}@" if password else ""
                port, db = self._number(port_var, 6379), self._number(db_var, 0, "database", 10**6)
                found["redis_url"] = f"redis://{auth}{host}:{port}/{db}"
                break
        host = self._host(_POSTGRES[0])
        if host is not None and "database_url" not in whole:
            user = quote(self._get(_POSTGRES[2]) or "postgres", safe="")
            password = self._get(_POSTGRES[3])
            secret = f":{quote(password, safe='')}" if password else ""
            database = quote(self._get("POSTGRES_DATABASE") or "workflow_engine", safe="")
            port = self._number(_POSTGRES[1], 5432)
            found["database_url"] = f"postgresql://{user}{secret}@{host}:{port}/{database}"
        return found
