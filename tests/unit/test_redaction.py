"""What a caller without admin sees of one execution's data (``api/redaction.py``)."""

from __future__ import annotations

from orchestrion.api.declared import declared
from orchestrion.api.redaction import ExecutionView
from orchestrion.governance.masking import Masker

EMAIL = "ada@example.com"


def view(*outputs: str, **classified: str) -> ExecutionView:
    outputs = outputs or ("out",)
    return ExecutionView(
        Masker(), dict(classified), frozenset({"in", *outputs}), classified.get("in"), outputs
    )


def test_a_classified_output_is_hidden_whole_and_nothing_is_invented() -> None:
    shown = view(card="pii")
    assert shown.output("card", {"email": EMAIL}) == {"masked": "pii"}
    assert shown.output("card", None) is None  # not run yet, or skipped
    # Any other node of the execution may echo its inputs: pattern-masked, not hidden.
    assert shown.output("public", {"email": EMAIL, "n": 3}) == {"email": "[email]", "n": 3}
    assert shown.output("out", {"card": 1, "public": EMAIL}) == {
        "card": {"masked": "pii"},
        "public": "[email]",
    }


def test_results_and_inputs() -> None:
    assert view(out="phi").result({"x": EMAIL}) == {"masked": "phi"}
    assert view(out="phi").result(None) is None
    several = view("a", "b", a="pii")
    assert several.result({"a": EMAIL, "b": f"to {EMAIL}"}) == {
        "a": {"masked": "pii"},
        "b": "to [email]",
    }
    assert view(card="pii").inputs({"email": EMAIL}) == {"email": "[email]"}
    assert view(**{"in": "pii"}).inputs({"email": EMAIL}) == {"masked": "pii"}


def test_without_classified_nodes_data_is_shown_and_text_still_masked() -> None:
    shown = view()
    assert shown.inputs({"email": EMAIL}) == {"email": EMAIL}
    assert shown.result({"x": EMAIL}) == {"x": EMAIL}
    assert shown.output("any", {"x": EMAIL}) == {"x": EMAIL}
    assert shown.text({"message": f"no user {EMAIL}"}) == {"message": "no user [email]"}


def test_the_default_view_shows_everything() -> None:
    plain = ExecutionView()
    assert plain.output("card", EMAIL) == EMAIL
    assert plain.text(EMAIL) == EMAIL
    assert plain.result({"x": EMAIL}) == {"x": EMAIL}


def test_a_classified_nodes_error_keeps_its_kind_and_hides_its_text() -> None:
    shown = view(card="pii")
    error = {"category": "error", "type": "ValueError", "transient": False, "message": "Ada"}
    hidden = {"category": "error", "type": "ValueError", "transient": False}
    assert shown.error("card", error) == {**hidden, "message": "[masked: pii]"}
    assert shown.error("other", {"message": f"to {EMAIL}"}) == {"message": "to [email]"}
    # The execution's error quotes its first failed node's.
    failed = {"category": "node_failed", "nodes": ["card", "other"], "message": "card: Ada"}
    assert shown.execution_error(failed) == {
        "category": "node_failed",
        "nodes": ["card", "other"],
        "message": "[masked: pii]",
    }
    assert shown.execution_error({**failed, "nodes": ["other"]})["message"] == "card: Ada"
    assert ExecutionView().error("card", error) == error


def test_a_classified_nodes_event_data_keeps_what_the_engine_says() -> None:
    shown = view(ok="phi")
    waiting = {"reason": "approval", "message": "Release Ada", "approvers": ["ops"]}
    assert shown.event_data("ok", waiting) == {"reason": "approval", "masked": "phi"}
    assert shown.event_data("other", {"message": f"to {EMAIL}"}) == {"message": "to [email]"}
    # An execution's event about a node (a notice, a decision) follows that node.
    notice = {"kind": "halted", "node": "ok", "message": "node 'ok' failed: Ada"}
    assert shown.event_data(None, notice) == {"kind": "halted", "node": "ok", "masked": "phi"}
    assert shown.notice("ok", "node 'ok' failed: Ada") == "[masked: phi]"
    assert shown.notice(None, f"to {EMAIL}") == "to [email]"


def test_an_execution_classified_whole_hides_every_value() -> None:
    shown = ExecutionView(Masker(), {}, frozenset({"in", "out"}), None, ("out",), whole="phi")
    assert shown.inputs({"note": "Ada"}) == {"masked": "phi"}
    assert shown.output("any", "Ada") == shown.result("Ada") == {"masked": "phi"}
    assert shown.output("any", None) is None
    assert shown.error("any", {"category": "error", "message": "Ada"}) == {
        "category": "error",
        "message": "[masked: phi]",
    }
    assert shown.event_data("any", {"reason": "child", "x": 1}) == {
        "reason": "child",
        "masked": "phi",
    }
    assert shown.text("criterion value Ada") == "[masked: phi]"


def test_a_definitions_literals_are_masked_by_its_classification() -> None:
    spec = {
        "name": "lit",
        "inputs": {"who": {"type": "string", "default": "Ada"}},
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input", "data_classification": "pii"},
                {
                    "id": "rec",
                    "handler": "noop",
                    "data_classification": "pii",
                    "config": {"value": {"name": "Ada", "tags": ["x", 1], "none": None}},
                },
                {"id": "mail", "handler": "noop", "config": {"value": EMAIL}},
            ]
        },
    }
    masks = {"pii", "phi"}.__contains__
    shown, source = declared(spec, "name: lit ... Ada", Masker(), masks)
    nodes = {n["id"]: n for n in shown["dag"]["nodes"]}
    assert nodes["rec"]["config"] == {
        "value": {"name": "[masked: pii]", "tags": ["[masked: pii]"] * 2, "none": None}
    }
    assert nodes["mail"]["config"] == {"value": "[email]"}
    assert shown["inputs"] == {"who": {"type": "string", "default": "[masked: pii]"}}
    assert source == "[masked: pii]"
    assert spec["dag"]["nodes"][1]["config"]["value"]["name"] == "Ada"  # not changed in place
    public = {"dag": {"nodes": [{"id": "a", "config": {"value": EMAIL}}]}}
    assert declared(public, "src", Masker(), masks) == (public, "src")
