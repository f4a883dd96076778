"""Who decides on a node waiting for a person, and whether the node lets them.

An approval's ``approvers`` lists who may decide: API key names (``key:role:name`` in
``ORCHESTRION_API_KEYS``), roles (``admin``, ``operator``), key ids (``key:1a2b3c4d``) or
groups (``ORCHESTRION_APPROVER_GROUPS``). Through the API the decider is the authenticated
caller, never a name the request states; a caller the server cannot identify (no keys are
configured) may decide only where no approvers are listed. A decision made on one's own
database (the library, ``orchestrion approve`` without ``--server``) is the owner's act: it
has no API identity to check, and records the name it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrion.errors import DecisionRefused

__all__ = ["Decider", "DecisionRefused", "check_decider"]


@dataclass(frozen=True, slots=True)
class Decider:
    """An authenticated API caller deciding: its key's name (if any), key id and role."""

    key_id: str | None
    role: str | None
    name: str | None = None

    @property
    def label(self) -> str:
        """What the decision and the audit trail record: the key's name, else its id."""
        return self.name or self.key_id or "anonymous"

    def identities(
        self, groups: Mapping[str, Sequence[str]], *, members_only: bool = False
    ) -> set[str]:
        """Every ``approvers`` entry that names this caller (``members_only``: only the
        groups it is a member of, never its own name, key id or role)."""
        found = set() if members_only else {x for x in (self.name, self.key_id, self.role) if x}
        if self.name:
            found.update(g for g, members in groups.items() if self.name in members)
        return found


def check_decider(
    node_id: str,
    approvers: object,
    decider: Decider,
    groups: Mapping[str, Sequence[str]],
    *,
    members_only: bool = False,
) -> None:
    """Raise ``DecisionRefused`` unless ``decider`` may decide on ``node_id``.

    ``members_only`` (a routing rule's ``require_approval``, whose approvers are teams): only a
    member of a listed team decides; a key that merely bears a team's name, or whose role is
    spelled like one, does not."""
    listed = [a for a in approvers if isinstance(a, str)] if isinstance(approvers, list) else []
    if not listed:
        return
    if decider.key_id is None:
        raise DecisionRefused(
            f"node '{node_id}' may be decided only by {', '.join(listed)}; this server has no "
            "API keys to tell who you are (set ORCHESTRION_API_KEYS)",
            unidentified=True,
        )
    if not decider.identities(groups, members_only=members_only) & set(listed):
        raise DecisionRefused(
            f"node '{node_id}' may be decided only by {', '.join(listed)}; "
            f"the API key {decider.label} is not among them"
        )
