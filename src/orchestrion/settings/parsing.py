"""The text forms of the settings that hold more than one value: API keys and their names,
approver groups, trusted proxies, per-handler idle timeouts, required headers.

Each parser takes what pydantic was given (text from the environment, or the value itself
from Python) and returns what the field's type validates, or raises ``ValueError`` naming
the bad entry.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ROLES: tuple[str, ...] = ("admin", "operator", "viewer")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 9110 token


def _items(text: str) -> list[str]:
    """The comma-separated entries of ``text``, stripped; empty ones are skipped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def split_key_names(data: Any) -> Any:
    """``key:role:name`` entries of api_keys: the name goes to ``api_key_names``."""
    if not isinstance(data, dict) or not isinstance(data.get("api_keys"), str):
        return data
    entries: list[str] = []
    names: dict[str, str] = {}
    for item in data["api_keys"].split(","):
        item = item.strip()
        parts = item.split(":")
        if (
            len(parts) >= 3
            and parts[-2].strip().lower() in ROLES
            and parts[-1].strip().lower() not in ROLES
        ):
            name = parts[-1].strip()
            if not KEY_NAME.fullmatch(name):
                raise ValueError(f"api key name {name!r}: use letters, digits, '.', '_' or '-'")
            key = ":".join(parts[:-2]).strip()
            if name in names.values():
                raise ValueError(f"api key name {name!r} is given twice")
            names[key] = name
            item = ":".join(parts[:-1])
        entries.append(item)
    return {**data, "api_keys": ",".join(entries), "api_key_names": names}


def parse_groups(value: Any) -> Any:
    """``group=name1+name2,...``: approver groups and their members' key names."""
    if not isinstance(value, str):
        return value
    groups: dict[str, tuple[str, ...]] = {}
    for item in _items(value):
        group, sep, members = item.partition("=")
        group = group.strip()
        listed = tuple(m.strip() for m in members.split("+") if m.strip())
        if not sep or not KEY_NAME.fullmatch(group) or not listed:
            raise ValueError('expected groups as "group=name1+name2", separated by commas')
        groups[group] = listed
    return groups


def parse_api_keys(value: Any) -> Any:
    """``key:role,...``: each API key and its role."""
    if not isinstance(value, str):
        return value
    keys: dict[str, str] = {}
    for item in _items(value):
        key, sep, role = item.rpartition(":")
        key, role = key.strip(), role.strip().lower()
        if not sep or not key:
            raise ValueError("expected key:role pairs separated by commas")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use admin, operator or viewer")
        if not _TOKEN.match(key):
            # A key travels in an HTTP header: other characters could never match.
            raise ValueError("an API key must be printable ASCII without spaces")
        if key in keys:
            raise ValueError("a key is listed twice")
        keys[key] = role
    return keys


def parse_proxies(value: Any) -> Any:
    """``10.0.0.0/8,192.0.2.7``: the proxies whose X-Forwarded-For is believed."""
    if isinstance(value, str):
        value = _items(value)
    if isinstance(value, list | tuple):
        for item in value:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return value


_HOST = re.compile(r"^(\*|(\*\.)?[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+)$")


def parse_hosts(value: Any) -> Any:
    """``orchestrion.example.com,*.internal``: host names (no port) the API answers to."""
    if isinstance(value, str):
        value = _items(value)
    if isinstance(value, list | tuple):
        for item in value:
            if not _HOST.match(str(item)):
                raise ValueError(f"{item!r} is not a host name (no scheme, port or path)")
        value = tuple(str(item).lower() for item in value)
    return value


def parse_handler_idle(value: Any) -> Any:
    """``http:60,llm:600``: per-handler idle timeouts in seconds."""
    if not isinstance(value, str):
        return value
    idle: dict[str, float] = {}
    for item in _items(value):
        handler, sep, seconds = item.partition(":")
        try:
            idle[handler.strip()] = float(seconds)
        except ValueError:
            sep = ""
        if not sep or not handler.strip() or idle.get(handler.strip(), 0) <= 0:
            raise ValueError(f"expected handler:seconds pairs, got {item.strip()!r}")
    return idle


def parse_headers(value: Any) -> Any:
    """``X-A,X-B``: headers every mutating call must carry."""
    if isinstance(value, str):
        value = _items(value)
    if isinstance(value, list | tuple):
        for name in value:
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
    return value
