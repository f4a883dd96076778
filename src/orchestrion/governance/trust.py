"""Trust: a property of each execution and definition, stored with it, never of a process.

Work is ``trusted`` when the person who runs it wrote it: a definition file given to
``orchestrion run``, a spec or function passed to the Python API. Work is ``untrusted`` when
it came in through the service, where definitions and inputs are written by others. The level
is stored with each definition and execution (the ``trust`` column) and decided once, when
the work is created:

- a definition stored by an untrusted process (the service) is untrusted, and stays so;
- an execution is untrusted when its process is, when it runs a stored untrusted definition
  (by name or id), or when its parent execution is (a ``workflow`` node's child); a trusted
  process that is handed the definition's content itself runs it trusted;
- a pending execution triggered by an untrusted process becomes untrusted (its inputs and
  overrides are the caller's).

Everything that runs the work later (retry, re-run from a node, resume, the engine's recovery
on start, another engine taking over, scale-out orchestrators and workers) reads the stored
level; nothing raises it. Each node attempt carries it (``TaskMessage.trust``), and the
process that runs the attempt applies the stricter of the attempt's and its own
(``attempt_resources`` in ``execution/enforce.py``): untrusted work is never run trusted, and
an untrusted process runs nothing trusted. Only the exact word ``trusted`` is trusted: a
missing, unknown or malformed value (a row written before the column existed, a task from an
older orchestrator, a field changed on the wire) reads as untrusted.

What differs between the two levels is the python allowlist (``python.allowed_modules``):
untrusted work may call only registered functions and functions of the allowed modules,
checked when each node, compensation and ``map`` item runs; and the routing of credentials
and secrets (``governance/secret_routes.py``): untrusted work may not give an llm node its
own endpoint or key, nor send a secret the policy does not list. The SSRF guard, the LLM
policy and the template limits apply to both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrion.core.trust_level import Trust

if TYPE_CHECKING:
    from orchestrion.governance.runtime import Governance

__all__ = ["Trust", "process_trust", "stricter"]


def stricter(*levels: object) -> Trust:
    """The least trusted of ``levels`` (each read with ``Trust.of``): trusted only if all are."""
    return Trust.TRUSTED if all(Trust.of(level).trusted for level in levels) else Trust.UNTRUSTED


def process_trust(governance: Governance) -> Trust:
    """The highest level a process with ``governance`` may give the work it creates or runs."""
    return Trust.TRUSTED if governance.trusted else Trust.UNTRUSTED
