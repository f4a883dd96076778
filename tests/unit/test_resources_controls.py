"""What handlers are given: every control of the policy present, or no process at all."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrion.execution.executor import NodeExecutor
from orchestrion.handlers.base import Controls, Resources
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry


def test_resources_without_controls_refuse_to_be_built() -> None:
    with pytest.raises(TypeError):
        Resources()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Controls"):
        Resources(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "missing", ["url_guard", "llm_policy", "llm_guard", "routing", "template_limits"]
)
def test_a_control_that_is_not_there_refuses_to_start(missing: str) -> None:
    with pytest.raises(TypeError, match=missing):
        replace(Controls.unrestricted(), **{missing: None})


def test_an_executor_needs_resources() -> None:
    with pytest.raises(TypeError):
        NodeExecutor(HandlerRegistry(builtin_specs()), None)  # type: ignore[arg-type]


def test_untrusted_work_gets_its_controls_once() -> None:
    controls = replace(Controls.unrestricted(), untrusted_python_allowlist=("json",))
    untrusted = controls.for_untrusted_work()
    assert untrusted.python_allowlist == ("json",)
    assert not untrusted.routing.trusted
    assert controls.for_untrusted_work() is untrusted
    assert untrusted.for_untrusted_work() is untrusted
