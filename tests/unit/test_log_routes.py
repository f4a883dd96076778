"""The node log API's rendering of a line: masking by view, and SSE framing that a message
cannot break."""

from __future__ import annotations

import json

from orchestrion.api.redaction import ExecutionView
from orchestrion.api.routes.logs import _sse, line_out
from orchestrion.governance.masking import Masker
from orchestrion.store.base import LogLineRecord

LINE = LogLineRecord(7, "e1", "n", 2, 1_700_000_000.5, "INFO", "app", "mail ada@example.com")


def test_a_line_is_shown_as_stored_to_a_plain_view() -> None:
    out = line_out(LINE, ExecutionView())
    assert out.message == "mail ada@example.com"
    assert (out.seq, out.node_id, out.attempt, out.level, out.logger) == (7, "n", 2, "INFO", "app")
    assert out.at.isoformat() == "2023-11-14T22:13:20.500000+00:00"


def test_a_masked_view_hides_classified_nodes_whole_and_masks_the_others() -> None:
    view = ExecutionView(Masker(), {"n": "phi"})
    assert line_out(LINE, view).message == "[masked: phi]"
    other = LogLineRecord(8, "e1", "m", 1, 0.0, "INFO", "app", "mail ada@example.com")
    assert line_out(other, view).message == "mail [email]"


def test_a_message_cannot_forge_server_sent_events() -> None:
    forged = LogLineRecord(9, "e1", "n", 1, 0.0, "INFO", "app", "x\n\nid: 99\nevent: end\ndata: {}")
    frame = _sse(forged, ExecutionView())
    assert frame.endswith("\n\n") and frame.count("\n") == 4  # id, event, data, blank line
    head, kind, data = frame.strip().split("\n")
    assert (head, kind) == ("id: 9", "event: log")
    assert json.loads(data.removeprefix("data: "))["message"] == forged.message
