"""An example third-party handler: ``greet`` says hello to someone, in a chosen language.

Install the package next to Orchestrion (``pip install ./examples/plugin-handler``) and the
handler is available by name in every workflow; its config is checked against ``GreetConfig``
when a definition is validated, before anything runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrion.handlers import HandlerSpec, NodeContext

__all__ = ["SPEC", "GreetConfig"]

_GREETINGS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "es": "Hola"}


class GreetConfig(BaseModel):
    """Who to greet and in which language."""

    model_config = ConfigDict(extra="forbid")

    name: str
    language: Literal["en", "fr", "de", "es"] = "en"


async def greet(ctx: NodeContext, config: GreetConfig) -> dict[str, str]:
    return {"greeting": f"{_GREETINGS[config.language]}, {config.name}!", "node": ctx.node_id}


SPEC = HandlerSpec(
    name="greet",
    run=greet,
    config_model=GreetConfig,
    aliases=("say_hello",),
    description="greet someone (example third-party handler)",
)
