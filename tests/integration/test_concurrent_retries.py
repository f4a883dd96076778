"""Retries sent at once: each answer says what happened. A retry whose request found the
execution already running again (another request's retry under way) changed nothing and is
refused (409), so every 202 stands for a retry the journal holds, and no retry is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_api import serving

FLOW = {
    "name": "retried",
    "dag": {
        "nodes": [
            {"id": "first", "handler": "noop"},
            {
                "id": "after",
                "handler": "delay",
                "config": {"seconds": 0.3},
                "dependencies": ["first"],
            },
        ]
    },
}


async def test_every_accepted_retry_is_one_the_journal_holds(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        done = await api.engine.run(FLOW)
        url = f"/v1/workflows/{done.execution_id}/retry"
        answers = await asyncio.gather(
            *(api.client.post(url, params={"from_node": "after"}) for _ in range(8))
        )
        codes = sorted(answer.status_code for answer in answers)
        assert set(codes) <= {202, 409}, [a.text for a in answers]
        refused = [a.json()["detail"] for a in answers if a.status_code == 409]
        assert all("already under way" in d or "wait for it to finish" in d for d in refused)
        await api.engine.wait(done.execution_id, timeout=15)
        events = await api.engine.store.list_events(done.execution_id, types=["execution.retried"])
        assert codes.count(202) == len(events) >= 1, (codes, len(events))
