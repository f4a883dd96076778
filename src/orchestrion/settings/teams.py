"""Teams: who routing rules and error handling name, from ``ORCHESTRION_TEAMS`` and a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

_TEAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_MAX_TEAMS_FILE = 1024 * 1024


class Team(BaseModel):
    """A team routing rules name: the API key names of its members (who may approve for it)
    and the addresses its notices go to (``mailto:``, ``https://``, a channel name...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")], ...] = ()
    notify: tuple[
        Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")], ...
    ] = ()
    description: str | None = Field(default=None, max_length=500)


def read_teams_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_TEAMS_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read teams file {path}: {exc.strerror}") from exc
    if len(raw) > _MAX_TEAMS_FILE:
        raise ValueError(f"teams file {path} is larger than {_MAX_TEAMS_FILE} bytes")
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"teams file {path} is not YAML or JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("teams"), dict):
        data = data["teams"]
    if not isinstance(data, dict):
        raise ValueError(f"teams file {path} must map team names to teams")
    return data


def parse_teams(value: Any) -> Any:
    """Teams given as JSON text, or already a mapping: the names checked, the teams left to
    the model."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"expected a JSON object of teams: {exc}") from exc
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str) or not re.match(_TEAM_NAME, name):
                raise ValueError(f"{name!r} is not a team name (letters, digits, . _ -)")
    return value
