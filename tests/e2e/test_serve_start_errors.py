"""``orchestrion serve`` that cannot start says why in one line and exits 3, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrion.cli.app", "serve", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(shown: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = shown.stdout + shown.stderr
    assert shown.returncode == 3, output
    assert "cannot start:" in output, output
    for text in expected:
        assert text in output, output
    assert "Traceback" not in output and 'File "' not in output, output


def test_a_missing_postgresql_database_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="no_such_database_for_serve")
    shown = _serve(tmp_path, ORCHESTRION_DATABASE_URL=url.render_as_string(False))
    _check(shown, "no_such_database_for_serve", "does not exist")


def test_an_unreachable_redis_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    shown = _serve(
        tmp_path,
        ORCHESTRION_DATABASE_URL=postgres_url,
        ORCHESTRION_REDIS_URL="redis://127.0.0.1:1/0",
    )
    _check(shown, "127.0.0.1:1")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"REDIS_URL": "redis://:Pa55-w0rd@127.0.0.1:99999/0"},
            "invalid Redis URL 'redis://:***@127.0.0.1:99999/0'",
        ),
        (
            {
                "APP_REDIS_HOST": "127.0.0.1",
                "APP_REDIS_PASSWORD": "Pa55-w0rd",
                "APP_REDIS_PORT": "1",
            },
            "127.0.0.1:1",
        ),
        (
            {"ORCHESTRION_DATABASE_URL": "postgresql://app:Pa55-w0rd@127.0.0.1:99999/x"},
            "port 99999 is not 1 to 65535",
        ),
        (
            {"DATABASE_URL": "postgresql://app:Pa55@w0rd@[::1/x"},
            "invalid PostgreSQL URL 'postgresql://app:***@[::1/x'",
        ),
    ],
)
def test_a_bad_url_is_one_line_that_never_shows_its_password(
    tmp_path: Path, postgres_url: str, variables: dict[str, str], expected: str
) -> None:
    env = {"ORCHESTRION_DATABASE_URL": postgres_url, **variables}
    if "DATABASE_URL" in variables:  # the alias is read only when ours is not set
        env.pop("ORCHESTRION_DATABASE_URL")
    shown = _serve(tmp_path, **env)
    _check(shown, expected)
    assert "w0rd" not in shown.stdout + shown.stderr
