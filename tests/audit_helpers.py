"""Audit keys and governance for the audit trail tests."""

from __future__ import annotations

import base64
from pathlib import Path

from orchestrion.governance.runtime import Governance

__all__ = ["AUDIT_ENV", "KEY", "OTHER_KEY", "audited", "unaudited"]

KEY = b"K" * 32
OTHER_KEY = b"O" * 32
AUDIT_ENV = {"ORCHESTRION_AUDIT_KEYS": "k1:" + base64.b64encode(KEY).decode()}


def audited(path: str | Path | None = None) -> Governance:
    """The shipped policy (or ``path``) with audit key ``k1``."""
    return Governance.load(path, environ=dict(AUDIT_ENV))


def unaudited() -> Governance:
    return Governance.load(None, environ={})
