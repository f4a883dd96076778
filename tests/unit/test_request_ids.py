"""The ids the API gives requests that bring none of their own."""

from __future__ import annotations

import uuid

from orchestrion.api.middleware import new_request_id


def test_a_request_id_is_a_random_uuid4_in_hex() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for each in ids:
        parsed = uuid.UUID(hex=each)
        assert parsed.hex == each and len(each) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
