"""A node's inputs as rendered: each attempt's config after its templates were rendered.

They are read from the journal (each ``node.started`` record keeps its attempt's, see
``execution/rendered_inputs.py``) and shown as the node's output is: masked for a classified
node unless the caller's role may see its data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from orchestrion.api.models import RenderedInputsOut, RenderedInputsPage
from orchestrion.api.problems import error_responses
from orchestrion.api.redaction import Disclosure, disclosure
from orchestrion.api.routes import VIEW, Ctx
from orchestrion.core.record_types import RecordType
from orchestrion.core.rendered import INPUTS_KEY

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workflows"])

Caller = Annotated[Disclosure, Depends(disclosure)]
NodeId = Annotated[str, Path(min_length=1, max_length=128)]

_PAGE = 1000
_STARTED = [RecordType.NODE_STARTED.value]


@router.get(
    "/workflows/{execution_id}/nodes/{node_id}/inputs",
    response_model=RenderedInputsPage,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="A node's config as each of its attempts rendered it, oldest first",
)
async def node_inputs(
    execution_id: str, node_id: NodeId, ctx: Ctx, caller: Caller
) -> RenderedInputsPage:
    reads = ctx.engine.reads
    record = await reads.execution(execution_id)  # 404 for an unknown id
    view = await caller.execution(record)
    items: list[RenderedInputsOut] = []
    after = 0
    while True:  # node.started records only: one per attempt start of each node
        page = await reads.events(execution_id, after, _PAGE, _STARTED)
        for event in page:
            if event.node_id != node_id:
                continue
            inputs = (event.data or {}).get(INPUTS_KEY)
            items.append(
                RenderedInputsOut(
                    attempt=event.attempt or 0,
                    started_at=datetime.fromtimestamp(event.at, UTC),
                    inputs=view.output(node_id, inputs),
                )
            )
        if len(page) < _PAGE:
            break
        after = page[-1].seq
    if not items:  # not started yet, or no such node (404)?
        await reads.check_node(record, node_id)
    return RenderedInputsPage(node_id=node_id, items=items)
