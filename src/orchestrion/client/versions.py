"""What the client sends about the versions of a definition (``/v1/definitions/{name}/
versions``): list them, activate one, deprecate one. Calls as data, like ``calls.py``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from orchestrion.client.calls import Call
from orchestrion.client.definition_models import DefinitionSummary

__all__ = ["VERSION_VERBS", "list_versions", "version_action"]

VERSION_VERBS = ("activate", "deprecate")


def _path(name: str) -> str:
    return f"/v1/definitions/{quote(name, safe='')}/versions"


def _versions(response: httpx.Response) -> list[DefinitionSummary]:
    data: Any = response.json()
    return [DefinitionSummary.from_api(item) for item in data["items"]]


def _version(response: httpx.Response) -> DefinitionSummary:
    return DefinitionSummary.from_api(response.json())


def list_versions(name: str) -> Call[list[DefinitionSummary]]:
    return Call("GET", _path(name), _versions)


def version_action(name: str, version: str, verb: str) -> Call[DefinitionSummary]:
    if verb not in VERSION_VERBS:
        raise ValueError(f"unknown version verb {verb!r}: use activate or deprecate")
    return Call("POST", f"{_path(name)}/{quote(version, safe='')}/{verb}", _version)
