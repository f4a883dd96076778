"""NodeLogged on the wire: its lines survive the JSON round trip, malformed lines are refused
by name, and a classified attempt's lines cross sealed in one envelope bound to the attempt."""

from __future__ import annotations

import json

import pytest

from orchestrion.cluster.on_wire import open_event, seal_event
from orchestrion.cluster.wire import decode_event, encode_event, loads
from orchestrion.core.events import NodeLogged
from orchestrion.errors import ConfigurationError, WireError
from orchestrion.governance.encryption import DecryptionError, KeyRing

LINES = (
    {"at": 1.5, "level": "INFO", "logger": "app", "message": "héllo\\nworld"},
    {"at": 2.0, "level": "ERROR", "logger": "app.db", "message": "card 4111"},
)


def ring() -> KeyRing:
    return KeyRing.from_env(f"k1:{KeyRing.generate_key()}")


def test_lines_survive_the_round_trip() -> None:
    event = NodeLogged("n", 3, 10.0, LINES)
    execution_id, back = decode_event(loads(encode_event("e1", event)))
    assert execution_id == "e1" and back == event
    assert isinstance(back, NodeLogged) and isinstance(back.lines, tuple)


@pytest.mark.parametrize("lines", ["text", [1, 2], {"a": 1}, [["x"]]])
def test_malformed_lines_are_refused_by_name(lines: object) -> None:
    body = json.loads(encode_event("e1", NodeLogged("n", 1, 1.0, LINES)))
    body["event"]["lines"] = lines
    with pytest.raises(WireError, match="NodeLogged has lines"):
        decode_event(body)


def test_sealed_lines_cross_in_one_envelope_bound_to_their_attempt() -> None:
    keys = ring()
    event = NodeLogged("n", 2, 1.0, LINES)
    sealed = seal_event(keys, "e1", event)
    assert isinstance(sealed, NodeLogged) and len(sealed.lines) == 1
    text = encode_event("e1", sealed)
    assert "héllo" not in text and "4111" not in text
    _, read = decode_event(loads(text))
    assert open_event(keys, "e1", read) == event
    assert seal_event(keys, "e1", sealed) is sealed  # sealed once
    moved = NodeLogged("n", 3, 1.0, sealed.lines)  # another attempt's envelope
    with pytest.raises(DecryptionError):
        open_event(keys, "e1", moved)
    with pytest.raises(ConfigurationError, match="no encryption key"):
        open_event(None, "e1", sealed)
