"""What a caller without admin sees of one execution's data (``api/redaction.py``)."""

from __future__ import annotations

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
