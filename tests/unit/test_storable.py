"""The one rule for values an attempt hands the engine: escaped, refused, or cut."""

from __future__ import annotations

import json

import pytest

from orchestrion.core.events import ErrorInfo
from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.execution.storable import bounded_error, check_output, escape_text, escaped


def test_a_lone_surrogate_becomes_its_escape_and_a_valid_pair_stays() -> None:
    assert escape_text("a\ud800b") == "a\\ud800b"
    assert escape_text("\U0001f600 é") == "\U0001f600 é"
    assert escaped({"k\udc80": ["\ud800", 1, None]}) == {"k\\udc80": ["\\ud800", 1, None]}
    for value in (escape_text("\ud800"), escaped({"\udfff": "\ud800"})):
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # encodable everywhere


def test_check_output_escapes_text_and_refuses_what_json_cannot_hold() -> None:
    assert check_output("n", "x\ud800") == "x\\ud800"
    assert check_output("n", {"a": ["\ud800"], "e": "\U0001f600"}) == {
        "a": ["\\ud800"],
        "e": "\U0001f600",
    }
    same = {"a": 1}
    assert check_output("n", same) is same  # nothing to change: no copy
    with pytest.raises(PermanentNodeError, match=r"node 'n'.* at /r/1") as caught:
        check_output("n", {"r": [1.0, float("inf")]})
    assert caught.value.category == ErrorCategory.OUTPUT


def test_an_error_keeps_its_start_and_says_how_much_was_cut() -> None:
    info = ErrorInfo("error", "M" * 1000 + "\ud800", traceback="T" * 50)
    bounded = bounded_error(info, 300)
    assert bounded.message == "M" * 300 + f"… [{1006 - 300} characters cut]"
    assert bounded.traceback == "T" * 50
    small = ErrorInfo("error", "fine")
    assert bounded_error(small, 300) is small


def test_a_database_data_exception_counts_as_a_refused_value() -> None:
    from orchestrion.store.sql.journal import _refused_value

    class DriverError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    class Wrapped(Exception):
        pass

    for state, refused in (("22021", True), ("22P05", True), ("08006", False), ("40001", False)):
        try:
            try:
                raise DriverError(state)
            except DriverError as cause:
                raise Wrapped("store") from cause
        except Wrapped as exc:
            assert _refused_value(exc) is refused, state


def test_a_nul_is_kept_as_its_escape_in_log_text() -> None:
    from orchestrion.execution.storable import log_text

    assert log_text("a\x00b\ud800") == "a\\x00b\\ud800"
    plain = "nothing to do"
    assert log_text(plain) is plain
