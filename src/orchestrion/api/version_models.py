"""The bodies of ``/v1/definitions/{name}/versions``: a name's versions and their life."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.api.convert import definition_summary
from orchestrion.api.models import DefinitionSummary
from orchestrion.store.base import DefinitionRecord

__all__ = ["VersionList", "VersionView", "version_list", "version_view"]


class VersionView(DefinitionSummary):
    """One version of a definition, and whether it is the active one now."""

    active: bool = Field(
        default=False,
        description="the version triggered and scheduled runs start, and starts that name no "
        "version (the one activated, else the newest available one)",
    )


class VersionList(BaseModel):
    """Every version of a definition name, oldest first."""

    model_config = ConfigDict(extra="forbid")

    name: str
    active_version: str | None = Field(
        default=None, description="the active version; null when every version is deprecated"
    )
    items: list[VersionView]


def version_view(record: DefinitionRecord, active_id: str | None) -> VersionView:
    summary = definition_summary(record).model_dump()
    return VersionView(**summary, active=record.id == active_id)


def version_list(name: str, records: list[DefinitionRecord], active_id: str | None) -> VersionList:
    items = [version_view(record, active_id) for record in records]
    active = next((item.version for item in items if item.active), None)
    return VersionList(name=name, active_version=active, items=items)
