"""Every ``orchestrion`` command, by the module that holds it, loaded when it is first used.

A command line runs one command: building all of them (typer reads every function's
signature and makes its options) and importing every command module costs more than a quick
command does itself. The root group lists the names below, in the order ``orchestrion
--help`` shows them, and imports a command's module and builds it only when it is looked up:
to be run, or to be listed by ``--help``, which still shows every command with its help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer import _click

__all__ = ["COMMANDS", "LazyGroup"]

# (command, module under orchestrion.cli, attribute): a function is a command, a typer app a
# group of subcommands.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "running", "run"),
    ("validate", "definitions", "validate"),
    ("graph", "definitions", "graph"),
    ("status", "inspection", "status"),
    ("events", "inspection", "events"),
    ("logs", "logs", "logs"),
    ("list", "inspection", "list_"),
    ("cancel", "control", "cancel"),
    ("pause", "control", "pause"),
    ("retry", "control", "retry"),
    ("resume", "control", "resume"),
    ("serve", "serve", "serve"),
    ("approve", "control", "approve"),
    ("reject", "control", "reject"),
    ("emit", "emitting", "emit"),
    ("version", "root", "version"),
    ("purge", "purge", "purge"),
    ("examples", "authoring", "examples"),
    ("schema", "authoring", "schema"),
    ("orchestrator", "processes", "orchestrator"),
    ("worker", "processes", "worker"),
    ("reaper", "processes", "reaper"),
    ("migrate", "processes", "migrate"),
    ("up", "topology", "up"),
    ("audit", "audit", "audit_app"),
    ("dlq", "dlq", "dlq_app"),
    ("keys", "keys", "keys_app"),
    ("schedule", "schedules", "schedule_app"),
    ("sinks", "sinks", "sinks_app"),
    ("versions", "versions", "versions_app"),
)
_WHERE = {name: (module, attribute) for name, module, attribute in COMMANDS}
# Each command registered once per process, as the root app's own registrations would be.
_registered = typer.Typer()


def _build(name: str) -> _click.Command:
    """The click command of ``name``, made by typer as for a command registered on the root."""
    from orchestrion.cli.root import app

    module, attribute = _WHERE[name]
    target = getattr(importlib.import_module(f"orchestrion.cli.{module}"), attribute)
    settings: dict[str, Any] = {
        "pretty_exceptions_short": app.pretty_exceptions_short,
        "rich_markup_mode": app.rich_markup_mode,
    }
    if isinstance(target, typer.Typer):
        info = next((g for g in _registered.registered_groups if g.typer_instance is target), None)
        if info is None:
            _registered.add_typer(target)
            info = _registered.registered_groups[-1]
        settings["suggest_commands"] = app.suggest_commands
        return typer.main.get_group_from_info(info, **settings)
    found = next((c for c in _registered.registered_commands if c.name == name), None)
    if found is None:
        _registered.command(name=name)(target)
        found = _registered.registered_commands[-1]
    return typer.main.get_command_from_info(found, **settings)


class _Commands(MutableMapping[str, "_click.Command"]):
    """A group's commands by name: every name known, each command built on first lookup."""

    def __init__(self, built: MutableMapping[str, _click.Command]) -> None:
        self._built = dict(built)
        self._names = list(dict.fromkeys([*_WHERE, *built]))

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self._built:
            if name not in _WHERE:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class LazyGroup(TyperGroup):
    """The root ``orchestrion`` group, its commands built on first lookup."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)  # the names alone: typer's would build every command
