"""The proxy variables read as httpx reads them, through public APIs only."""

from __future__ import annotations

import pytest

from orchestrion.handlers.proxy_env import environment_proxies

CASES = [
    {},
    {"HTTP_PROXY": "http://proxy:3128"},
    {"HTTPS_PROXY": "proxy:3128", "ALL_PROXY": "socks5://s:1080"},
    {"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost,127.0.0.1,::1,.example.com,corp"},
    {"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8, http://direct.test ,"},
    {"HTTP_PROXY": "http://p:1", "NO_PROXY": "a.test,*"},
]

_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.mark.parametrize("env", CASES)
def test_environment_proxies_match_httpx(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx's own reading is the oracle here (a test may look at a private helper).
    from httpx._utils import get_environment_proxies

    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert environment_proxies() == get_environment_proxies()
