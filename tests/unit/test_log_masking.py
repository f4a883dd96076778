"""Log lines masked process-wide: message, arguments, exception, stack and extra fields."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from orchestrion.governance.log_masking import current_log_masker, set_log_masker
from orchestrion.governance.masking import Masker
from orchestrion.observability.logging_setup import configure_logging

EMAIL = "ada@example.com"
CARD = "4111 1111 1111 1111"
log = logging.getLogger("orchestrion.test.masking")


@pytest.fixture
def masking() -> Iterator[None]:
    previous = current_log_masker()
    set_log_masker(Masker())
    try:
        yield
    finally:
        set_log_masker(previous)


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False


def test_messages_and_arguments_are_masked_before_any_handler(
    masking: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        log.debug("user %s paid with %s", EMAIL, CARD)
        log.info(f"inline {EMAIL}")
        log.info({"email": EMAIL})  # not a string: rendered, then masked
    assert EMAIL not in caplog.text and CARD not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "user [email] paid with [card]"
    assert messages[1] == "inline [email]"
    assert EMAIL not in messages[2]
    # The arguments keep their shape when masking them one by one is enough.
    assert caplog.records[0].args == ("[email]", "[card]")


def test_a_line_without_personal_data_is_left_as_it_is(
    masking: None, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn's access formatter unpacks the arguments: they must stay a 5-tuple.
    args = ("127.0.0.1:5000", "GET", "/v1/workflows", "1.1", 200)
    with caplog.at_level(logging.INFO):
        log.info('%s - "%s %s HTTP/%s" %d', *args)
    assert caplog.records[0].args == args


def test_exceptions_and_tracebacks_are_masked(
    masking: None, caplog: pytest.LogCaptureFixture, root_stream: io.StringIO
) -> None:
    configure_logging("json", "DEBUG", stream=root_stream)
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced it
    with caplog.at_level(logging.DEBUG):
        try:
            raise ValueError(f"cannot charge {CARD} for {EMAIL}")
        except ValueError:
            log.exception("charge failed")
        log.warning("here", stack_info=True, extra={"who": EMAIL})
    assert CARD not in caplog.text and EMAIL not in caplog.text
    assert "ValueError: cannot charge [card] for [email]" in caplog.text
    lines = [json.loads(line) for line in root_stream.getvalue().splitlines()]
    assert "ValueError: cannot charge [card] for [email]" in lines[0]["exception"]
    assert lines[1]["who"] == "[email]"
    assert EMAIL not in root_stream.getvalue() and CARD not in root_stream.getvalue()


def test_extra_fields_are_masked_by_the_handlers_filter(
    masking: None, root_stream: io.StringIO
) -> None:
    configure_logging("console", "INFO", stream=root_stream)
    extra = {
        "error": f"no user {EMAIL}",
        "detail": {"cards": [CARD], "by": {EMAIL: "vip"}},
        "no": 4111111111111111,
    }
    log.info("node failed", extra=extra)
    text = root_stream.getvalue()
    assert "error=no user [email]" in text and "[card]" in text
    assert EMAIL not in text and "4111111111111111" not in text and CARD not in text


def test_configure_logging_puts_the_policy_masker_in_force(root_stream: io.StringIO) -> None:
    previous = current_log_masker()
    try:
        set_log_masker(None)
        configure_logging("json", "INFO", stream=root_stream, masker=Masker(kinds=["email"]))
        log.info("to %s, ssn 123-45-6789", EMAIL)
    finally:
        set_log_masker(previous)
    line = json.loads(root_stream.getvalue())
    assert line["message"] == "to [email], ssn 123-45-6789"  # only the kinds the policy names


def test_masking_off_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    previous = current_log_masker()
    try:
        set_log_masker(None)
        with caplog.at_level(logging.INFO):
            log.info("to %s", EMAIL)
    finally:
        set_log_masker(previous)
    assert caplog.records[0].getMessage() == f"to {EMAIL}"


def test_a_broken_format_string_does_not_break_logging(
    masking: None, root_stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("console", "INFO", stream=root_stream)
    log.info("two %s %s", EMAIL)  # one argument short: logging reports it on stderr
    assert EMAIL not in capsys.readouterr().err


def test_uncaught_exceptions_are_reported_masked() -> None:
    script = (
        "import threading\n"
        "from orchestrion.governance.log_masking import mask_uncaught_exceptions, set_log_masker\n"
        "from orchestrion.governance.masking import Masker\n"
        "set_log_masker(Masker())\n"
        "mask_uncaught_exceptions()\n"
        "def boom():\n"
        f"    raise KeyError('{EMAIL} in a thread')\n"
        "thread = threading.Thread(target=boom, name='worker-1')\n"
        "thread.start()\n"
        "thread.join()\n"
        f"raise ValueError('cannot charge {CARD}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "ValueError: cannot charge [card]" in done.stderr
    assert "Exception in thread worker-1" in done.stderr and "[email] in a thread" in done.stderr
    assert EMAIL not in done.stderr and CARD not in done.stderr


def test_configured_patterns_see_short_numbers_too(root_stream: io.StringIO) -> None:
    previous = current_log_masker()
    try:
        configure_logging(
            "console", "INFO", stream=root_stream, masker=Masker(extra={"pin": r"^\d{4}$"})
        )
        log.info("login", extra={"pin": 1234, "attempt": 2})
    finally:
        set_log_masker(previous)
    assert "pin=[pin]" in root_stream.getvalue() and "attempt=2" in root_stream.getvalue()


def test_transition_lines_keep_an_execution_id_that_looks_like_a_card(
    masking: None, root_stream: io.StringIO
) -> None:
    # The server's JSON log, as `orchestrion serve` writes it: a run's lines are found by its
    # id, which the masker once cut into "...[card]" about one execution in a thousand.
    from orchestrion.core.events import Record
    from orchestrion.core.record_types import RecordType
    from orchestrion.core.states import ExecutionStatus, NodeState
    from orchestrion.observability.feed import ExecutionInfo
    from orchestrion.observability.logging_setup import log_transitions

    execution_id = "01a25256-ebbd-7f8c-b934-8840846350dc"
    configure_logging("json", "INFO", stream=root_stream, masker=Masker())
    info = ExecutionInfo(execution_id, "corr-1", "flow", {"a": "noop"})
    log_transitions(
        info,
        [
            Record(RecordType.EXECUTION_STARTED, 0.0, status=ExecutionStatus.RUNNING),
            Record(RecordType.NODE_COMPLETED, 0.0, node="a", attempt=1, state=NodeState.COMPLETED),
        ],
    )
    lines = [json.loads(line) for line in root_stream.getvalue().splitlines()]
    assert [line["execution_id"] for line in lines] == [execution_id, execution_id]
    assert lines[0]["message"].startswith(f"execution {execution_id} ")
    assert lines[1]["node_id"] == "a"
