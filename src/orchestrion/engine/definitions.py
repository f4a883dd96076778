"""Definitions the engine takes in: validation, storage, the compile cache, code policy.

A definition is checked (schema, graph, limits, the python allowlist) before it is stored, and
compiled once per process; trigger-time overrides are checked against the same rules. Large
definitions are hashed and compiled off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from orchestrion.definition.limits import DefinitionLimits, check_stored, truncated
from orchestrion.definition.model import WorkflowSpec
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.engine.gc_tuning import LARGE_DEFINITION_NODES, freeze_large
from orchestrion.engine.ids import new_record_id
from orchestrion.engine.trigger_checks import (
    INPUTS,
    OVERRIDES,
    input_issues,
    override_problems,
)
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.execution import enforce
from orchestrion.governance.policy import definition_limits
from orchestrion.governance.trust import Trust, process_trust
from orchestrion.store.base import DefinitionRecord

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.governance.policy import LoadedPolicy

__all__ = ["Definitions"]

_POLICY = "governance policy"


class Definitions:
    """The engine's definitions: ``submit`` stores one, ``compiled_for`` gives it compiled.

    Reads the engine's governance, registry and store when used, so a later
    ``use_governance`` is followed (``clear`` then forgets what was compiled under the old).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.compiled: dict[str, CompiledWorkflow] = {}
        self._records: dict[str, DefinitionRecord] = {}
        self._limits: tuple[LoadedPolicy, bool, DefinitionLimits] | None = None
        self._within: dict[str, tuple[DefinitionRecord, LoadedPolicy, bool]] = {}
        self._passed: dict[tuple[str, int], tuple[Any, ...]] = {}

    def clear(self) -> None:
        """Compile again, under the definition limits now in force."""
        self.compiled.clear()

    async def submit(
        self, source: Any, *, fmt: str | None = None, created_by: str | None = None
    ) -> DefinitionRecord:
        """See ``Engine.submit``."""
        return (await self.store(source, fmt=fmt, created_by=created_by))[0]

    async def store(
        self, source: Any, *, fmt: str | None = None, created_by: str | None = None
    ) -> tuple[DefinitionRecord, bool]:
        """``submit``, and whether this call stored the version (False: it was stored
        already, with the same content)."""
        from orchestrion.definition.loader import LoadedDefinition, load_definition

        engine = self._engine
        if isinstance(source, LoadedDefinition):
            loaded = source  # checked by whoever loaded it (the API: under the same policy)
        elif isinstance(source, WorkflowSpec):
            loaded = await asyncio.to_thread(
                load_definition,
                source.model_dump(mode="json", exclude_defaults=True),
                registry=engine.registry,
                context=enforce.validation_context(engine.governance),
                limits=self.limits,
            )
            loaded.source_format = "python"
        else:
            # Off the event loop: a large definition takes a while to parse and check.
            loaded = await asyncio.to_thread(
                load_definition,
                source,
                fmt=fmt,
                registry=engine.registry,
                context=enforce.validation_context(engine.governance),
                limits=self.limits,
            )
        self.check_code_policy(loaded.spec)
        self.check_teams(loaded.spec)
        spec = loaded.spec
        freeze = engine.settings.gc_freeze
        content_hash = loaded.content_hash
        if content_hash is None:  # a definition checked once is hashed once (the API's)
            content_hash = await _off_loop(spec, freeze, _content_hash, spec)
            loaded.content_hash = content_hash
        version = spec.version
        store = engine.store
        if version is None:
            existing = await store.find_definition_by_hash(spec.name, content_hash)
            if existing is not None:
                return existing, False
            version = await store.next_version(spec.name)
            spec = spec.model_copy(update={"version": version})
        dumped = await _off_loop(spec, freeze, spec.model_dump, mode="json")
        record = DefinitionRecord(
            id=new_record_id(),
            name=spec.name,
            version=version,
            spec=dumped,
            content_hash=content_hash,
            source_format=loaded.source_format,
            dialect=loaded.dialect,
            created_at=time.time(),
            source=loaded.source_text,
            trust=process_trust(engine.governance),
            created_by=created_by or _local_user(engine),
        )
        stored = await store.put_definition(record)
        new = stored.id == record.id
        if new:
            compiled = await _off_loop(spec, freeze, CompiledWorkflow.build, stored.id, spec)
            self.compiled[stored.id] = compiled
        self._records[stored.id] = stored
        return stored, new

    @property
    def limits(self) -> DefinitionLimits:
        """The size limits of definitions this engine takes in (``definition_limits``)."""
        governance = self._engine.governance
        loaded, trusted = governance.loaded, governance.trusted
        # Kept while the policy is the same (frozen) object: a submit asks three times, and
        # working them out anew each time was a twentieth of the submit's CPU.
        kept = self._limits
        if kept is None or kept[0] is not loaded or kept[1] != trusted:
            kept = self._limits = (loaded, trusted, definition_limits(loaded, trusted=trusted))
        return kept[2]

    def check_limits(self, record: DefinitionRecord) -> None:
        """Refuse a stored definition over today's limits."""
        # Stored under other limits, perhaps: a re-run or a child run obeys today's.
        governance = self._engine.governance
        trusted = governance.trusted and Trust.of(record.trust).trusted
        kept = self._within.get(record.id)
        # The same record (a stored definition is never changed) under the same policy
        # object passed already: every execution of a workflow asked again, walking its spec.
        if kept is not None and kept[0] is record and kept[1:] == (governance.loaded, trusted):
            return
        limits = definition_limits(governance.loaded, trusted=trusted)
        check_stored(
            record.spec, limits, source=f"stored definition '{record.name}' v{record.version}"
        )
        if len(self._within) >= _WITHIN_KEPT:
            self._within.clear()
        self._within[record.id] = (record, governance.loaded, trusted)

    async def compiled_for(self, definition_id: str) -> CompiledWorkflow:
        """The definition compiled, from the cache or the store."""
        compiled = self.compiled.get(definition_id)
        if compiled is None:
            record = await self.record(definition_id)
            self.check_limits(record)
            compiled = await _off_loop(
                record.spec,
                self._engine.settings.gc_freeze,
                _compile_stored,
                definition_id,
                record.spec,
            )
            self.compiled[definition_id] = compiled
        return compiled

    async def record(self, definition_id: str) -> DefinitionRecord:
        """The stored definition, read once."""
        record = self._records.get(definition_id)
        if record is None:
            record = await self._engine.store.get_definition(definition_id)
            self._records[definition_id] = record
        return record

    def checked_start(
        self,
        compiled: CompiledWorkflow,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]] | None,
        trust: Trust | None = None,
        *,
        code_policy: bool = False,
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A start's inputs (declared defaults filled in) and overrides, once all is well.

        Else one ``DefinitionError`` lists every problem of both, each naming its input or
        node and field, so a caller fixes them all at once: inputs against the declared ones;
        overrides against the nodes and their handlers' config schemas (see
        ``trigger_checks``), then, for the patches found sound, the secret flow
        (``definition/secret_flow.py``) and, with ``code_policy``, the python allowlist.
        """
        checked, issues = input_issues(compiled.plan.spec, inputs)
        sources = [INPUTS] if issues else []
        patches = dict(overrides or {})
        found = self._override_issues(compiled, patches) if patches else []
        named = {issue.node for issue in found}
        # A patch with a problem is not read further; none is when one held unsafe data.
        sound = {} if None in named else {k: v for k, v in patches.items() if k not in named}
        found += self._flow_issues(compiled, sound, trust)
        if found:
            sources.append(OVERRIDES)
            issues += found
        if code_policy:
            refused = self._code_issues(compiled.plan.spec, trust, sound)
            if refused:
                sources.append(_POLICY)
                issues += refused
        if issues:
            # One source, or each named: "execution inputs and node overrides".
            named_by = " and ".join(sources)
            raise DefinitionError(
                truncated(issues, self.limits.max_problems),
                source=named_by,
                sources=tuple(sources),
                request=True,
            )
        return checked, patches

    def _override_issues(
        self, compiled: CompiledWorkflow, overrides: dict[str, dict[str, Any]]
    ) -> list[DefinitionIssue]:
        engine = self._engine
        return override_problems(
            compiled,
            overrides,
            registry=engine.registry,
            context=enforce.validation_context(engine.governance),
        )

    def _flow_issues(
        self,
        compiled: CompiledWorkflow,
        overrides: dict[str, dict[str, Any]],
        trust: Trust | None,
    ) -> list[DefinitionIssue]:
        """Overrides that move a secret out of a request field or pair a credential with a
        node's own endpoint (``definition/secret_flow.py``), naming node and field."""
        if not overrides:
            return []
        from orchestrion.definition.secret_flow import override_issues

        nodes = ((n.id, n.handler, n.config, n.when) for n in compiled.plan.spec.dag.nodes)
        routing = enforce.routing_of(self._engine.governance)
        if trust is not None and not trust.trusted:
            routing = routing.with_trust(False)
        return override_issues(nodes, overrides, routing, self._engine.registry)

    def check_teams(self, spec: WorkflowSpec) -> None:
        """Refuse a definition whose routing or error handling names a team the configuration
        does not define (``ORCHESTRION_TEAMS``, ``ORCHESTRION_TEAMS_FILE``)."""
        from orchestrion.definition.routing import team_references

        known = self._engine.settings.teams
        if self._passed.get(("teams", id(spec))) == (spec, known):
            return  # this very spec passed under these teams (the API's, submitted again)
        issues = [
            DefinitionIssue(
                f"unknown team '{team}' (defined: {', '.join(sorted(known)) or 'none'}; "
                "teams are set in ORCHESTRION_TEAMS or ORCHESTRION_TEAMS_FILE)",
                field=where,
                code="unknown_team",
            )
            for team, where, _path in team_references(spec)
            if team not in known
        ]
        if issues:
            raise DefinitionError(truncated(issues, self.limits.max_problems), source=spec.name)
        self._remember(("teams", id(spec)), (spec, known))

    def check_code_policy(self, spec: WorkflowSpec, trust: Trust | None = None) -> None:
        """Refuse python functions outside the allowlist (untrusted work or process only)."""
        issues = self._code_issues(spec, trust, None)
        if issues:
            raise DefinitionError(truncated(issues, self.limits.max_problems), source=_POLICY)

    def _code_issues(
        self,
        spec: WorkflowSpec,
        trust: Trust | None,
        overrides: dict[str, dict[str, Any]] | None,
    ) -> list[DefinitionIssue]:
        governance = self._engine.governance
        if trust is not None and not trust.trusted:
            governance = governance.untrusted()
        allowlist = governance.python_allowlist
        if allowlist is None:
            return []
        from orchestrion.execution.code_policy import code_issues

        registry = self._engine.registry
        # A spec that passed keeps passing under the same handlers and allowlist: what the
        # API submits again and triggers asks each time (a trigger's overrides: checked).
        under = (spec, registry, registry.changes, allowlist)
        if not overrides and self._passed.get(("code", id(spec))) == under:
            return []
        issues = code_issues(spec, registry, allowlist, overrides)
        if not issues and not overrides:
            self._remember(("code", id(spec)), under)
        return issues

    def _remember(self, key: tuple[str, int], under: tuple[Any, ...]) -> None:
        """Keep a check a spec passed (holding the spec: its id names no other meanwhile)."""
        if len(self._passed) >= _WITHIN_KEPT:
            self._passed.clear()
        self._passed[key] = under


# Past this many nodes, building or hashing a definition runs in a worker thread, so that the
# event loop (health checks, other requests) is never held for long by one definition.
_THREAD_ABOVE_NODES = LARGE_DEFINITION_NODES
_WITHIN_KEPT = 256  # stored definitions whose check against the limits is remembered


def _node_count(spec: WorkflowSpec | dict[str, Any]) -> int:
    if isinstance(spec, WorkflowSpec):
        return len(spec.dag.nodes)
    dag = spec.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    return len(nodes) if isinstance(nodes, list) else 0


_P = ParamSpec("_P")
_R = TypeVar("_R")


async def _off_loop(
    spec: WorkflowSpec | dict[str, Any],
    freeze: bool,
    work: Callable[_P, _R],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _R:
    """``work(...)`` in a worker thread when ``spec`` is large, else here; ``freeze``: then
    freeze what the collector tracks (the results are kept as long as the engine runs)."""
    nodes = _node_count(spec)
    if nodes <= _THREAD_ABOVE_NODES:
        return work(*args, **kwargs)

    def paused() -> _R:
        # A collection holds the GIL, so the event loop would wait for it as if it ran
        # there: none runs meanwhile, and what was made is frozen before one can (gc_tuning).
        from orchestrion.definition.validate import gc_paused

        with gc_paused():
            result = work(*args, **kwargs)
            freeze_large(nodes, freeze)
            return result

    return await asyncio.to_thread(paused)


def _local_user(engine: Engine) -> str | None:
    """Who submits in a trusted process (one's own files, locally): the operating system user."""
    if not engine.governance.trusted:
        return None
    import getpass

    try:
        return getpass.getuser()[:200]
    except (OSError, KeyError):  # no user name in this environment
        return None


def _content_hash(spec: WorkflowSpec) -> str:
    canonical = spec.model_dump(mode="json", exclude={"version"})
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _compile_stored(definition_id: str, spec: dict[str, Any]) -> CompiledWorkflow:
    return CompiledWorkflow.build(definition_id, WorkflowSpec.model_validate(spec))
