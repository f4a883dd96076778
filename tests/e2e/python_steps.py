"""A python module of node functions written by a test, and the governance policy that lets
only that module run: what a process the test starts (a server, a CLI, a cluster) needs."""

from __future__ import annotations

from pathlib import Path

__all__ = ["allow_steps", "steps_env"]


def allow_steps(folder: Path, module: str, source: str) -> Path:
    """Write ``module``.py holding ``source`` into ``folder``, and ``governance.yaml`` allowing
    only that module; the policy's path."""
    (folder / f"{module}.py").write_text(source)
    policy = folder / "governance.yaml"
    policy.write_text(f"version: 1\npython:\n  allowed_modules: [{module}]\n")
    return policy


def steps_env(folder: Path) -> dict[str, str]:
    """The environment a process needs to run the functions ``allow_steps`` wrote: the
    policy, and the folder as its PYTHONPATH."""
    return {
        "ORCHESTRION_GOVERNANCE_FILE": str(folder / "governance.yaml"),
        "PYTHONPATH": str(folder),
    }
