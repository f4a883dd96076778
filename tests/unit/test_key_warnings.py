"""The service warns at start about an open API and about each guessable key, never
printing a key."""

from __future__ import annotations

import logging

import pytest

from orchestrion.api.auth import api_key_id, warn_if_open
from orchestrion.settings import load_settings


def test_each_short_key_is_named_by_its_id_never_by_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_key = "x" * 32
    settings = load_settings(api_keys=f"k1:admin,{long_key}:viewer,short-op-key:operator")
    with caplog.at_level(logging.WARNING, logger="orchestrion.api.auth"):
        warn_if_open(settings)
    text = caplog.text
    assert api_key_id("k1") in text and api_key_id("short-op-key") in text
    assert api_key_id(long_key) not in text
    assert "k1 " not in text and "short-op-key" not in text  # ids only
    assert "NO API KEYS" not in text


def test_an_open_api_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrion.api.auth"):
        warn_if_open(load_settings(api_keys=""))
    assert "NO API KEYS CONFIGURED" in caplog.text
