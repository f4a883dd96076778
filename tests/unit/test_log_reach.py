"""Lines nobody writes are not built: ``reaches_a_handler`` as a process configures logging."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from orchestrion.logcontext import reaches_a_handler
from orchestrion.observability.logging_setup import configure_logging


@pytest.fixture
def isolated_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_a_process_printing_warnings_builds_no_info_line(isolated_root: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("json", "WARNING", stream=stream)
    access = logging.getLogger("orchestrion.api.access")
    # The root logger stays at INFO so node attempts' INFO lines are captured...
    assert access.isEnabledFor(logging.INFO)
    # ...but no handler writes an INFO line, so none is made.
    assert not reaches_a_handler(access, logging.INFO)
    assert reaches_a_handler(access, logging.WARNING)


def test_a_process_printing_info_writes_info_lines(isolated_root: logging.Logger) -> None:
    configure_logging("json", "INFO", stream=io.StringIO())
    assert reaches_a_handler(logging.getLogger("orchestrion.api.access"), logging.INFO)


def test_a_handler_of_the_logger_or_an_ancestor_counts(isolated_root: logging.Logger) -> None:
    for handler in list(isolated_root.handlers):
        isolated_root.removeHandler(handler)
    isolated_root.setLevel(logging.DEBUG)
    parent = logging.getLogger("reach-test")
    child = logging.getLogger("reach-test.child")
    mine = logging.StreamHandler(io.StringIO())
    mine.setLevel(logging.INFO)
    parent.addHandler(mine)
    try:
        assert reaches_a_handler(child, logging.INFO)
        assert not reaches_a_handler(child, logging.DEBUG)  # only the last resort: WARNING
        child.propagate = False
        assert not reaches_a_handler(child, logging.ERROR)  # no handler of its own
    finally:
        child.propagate = True
        parent.removeHandler(mine)


def test_without_any_handler_only_what_the_last_resort_prints(
    isolated_root: logging.Logger,
) -> None:
    for handler in list(isolated_root.handlers):
        isolated_root.removeHandler(handler)
    isolated_root.setLevel(logging.DEBUG)
    logger = logging.getLogger("reach-test.bare")
    assert not reaches_a_handler(logger, logging.INFO)
    assert reaches_a_handler(logger, logging.WARNING)


def test_a_test_capturing_logs_sees_every_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert reaches_a_handler(logging.getLogger("orchestrion.api.transitions"), logging.INFO)
