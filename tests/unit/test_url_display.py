"""Connection URLs in messages: the password hidden wherever it is written."""

from __future__ import annotations

import pytest

from orchestrion.store.url_display import redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db/prod", "postgresql://app:***@db/prod"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://:p@ss/w?rd#x@127.0.0.1:99999/0", "redis://:***@127.0.0.1:99999/0"),
        ("rediss://user:pw@[::1/x", "rediss://user:***@[::1/x"),
        ("redis://cache:6379/0?password=s3cret&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("postgresql://u:pw@h/db?sslpassword=s&x=1", "postgresql://u:***@h/db?sslpassword=***&x=1"),
        ("postgresql://app@db/prod", "postgresql://app@db/prod"),
        ("sqlite:///srv/a@b.db", "sqlite:///srv/a@b.db"),
        ("memory://", "memory://"),
    ],
)
def test_the_password_is_hidden_and_the_rest_kept(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
