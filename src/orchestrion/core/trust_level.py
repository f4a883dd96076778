"""The trust level stored with each definition and execution: trusted or untrusted.

Only the level itself lives here, so that results and records below governance can carry
it; what each level allows, and how a process decides it, is ``governance/trust.py``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Trust"]


class Trust(StrEnum):
    """How far the author of a piece of work is trusted; see ``governance/trust.py``."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"

    @classmethod
    def of(cls, value: object) -> Trust:
        """Read a stored or received level: anything but exactly ``trusted`` is untrusted."""
        if isinstance(value, Trust):
            return value
        # A member is the str of its value: compared as one, without the slow ``value``.
        return cls.TRUSTED if value == str.__str__(cls.TRUSTED) else cls.UNTRUSTED

    @property
    def trusted(self) -> bool:
        return self is Trust.TRUSTED
