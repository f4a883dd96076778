"""Where secrets and provider credentials may flow, as validation sees a definition.

A template that reads ``secrets`` anywhere but the headers, json or body of an http node is
refused, whatever it does with the value; in a request field each secret must be named and
sent where the policy allows; an llm node never pairs a credential with its own endpoint.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from orchestrion.errors import ConfigurationError, DefinitionError
from orchestrion.execution import enforce
from orchestrion.governance.policy import load_policy
from orchestrion.governance.runtime import Governance
from orchestrion.governance.secret_routes import Destination
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.handlers.loading import load_definition

POLICY = """\
version: 1
llm:
  providers:
    local:
      base_url: http://127.0.0.1:8899/v1
      api_key_env: LOCAL_LLM_API_KEY
secrets:
  TOKEN:
    hosts: [127.0.0.1, "*.example.com", "https://api.example.org:8443"]
  SEARCH_KEY:
    providers: [local]
"""

TRANSFORMS = [
    "{{ secrets.TOKEN }}",
    "x{{ secrets.TOKEN }}y",
    "{{ secrets.TOKEN | reverse }}",
    "{{ secrets.TOKEN | lower }}",
    "{{ secrets.TOKEN | upper }}",
    "{{ secrets.TOKEN | list }}",
    "{{ secrets.TOKEN | join('-') }}",
    "{{ secrets.TOKEN | replace('a', 'b') }}",
    "{{ secrets.TOKEN[::-1] }}",
    "{{ secrets.TOKEN[1:] }}",
    "{{ secrets.TOKEN | urlencode }}",
    "{{ secrets.TOKEN | e | center(40) }}",
    "{{ '%s' % secrets.TOKEN }}",
    "{{ secrets.TOKEN.encode('utf-8').hex() }}",
    "{{ 'a' ~ secrets.TOKEN ~ 'b' }}",
    "{% set s = secrets.TOKEN %}{{ s }}",
    "{% set s = secrets %}{{ s.TOKEN }}",
    "{{ secrets.TOKEN | tojson }}",
    "{{ secrets.TOKEN | string }}",
    "{{ secrets['TOKEN'] }}",
    "{{ secrets | attr('TOKEN') }}",
    "{% for c in secrets.TOKEN %}{{ c }}{% endfor %}",
    "{% for k in secrets %}{{ k }}{% endfor %}",
    "{{ (secrets.TOKEN | list | sort | join) if input.x else '' }}",
]


def _node(node_id: str, handler: str, **rest: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": handler, "dependencies": ["input"], **rest}


def _places(t: str) -> list[tuple[dict[str, Any], str]]:
    """(node, field) for every place a secret must not be read."""
    loopback = "http://127.0.0.1:1/"
    return [
        (_node("noop", "noop", config={"value": t}), "config.value"),
        (_node("py", "python", config={"function": "json:dumps", "params": {"obj": t}}),
         "config.params.obj"),
        (_node("out", "output", config={"value": t}), "config.value"),
        (_node("url", "http", config={"url": f"http://127.0.0.1:1/{t}"}), "config.url"),
        (_node("query", "http", config={"url": loopback, "query": {"k": t}}), "config.query.k"),
        (_node("params", "http", config={"url": loopback, "params": {"k": t}}),
         "config.params.k"),
        (_node("prompt", "llm", config={"prompt": t}), "config.prompt"),
        (_node("system", "llm", config={"prompt": "hi", "system": t}), "config.system"),
        (_node("messages", "llm", config={"messages": [{"role": "user", "content": t}]}),
         "config.messages[0].content"),
        (_node("when", "noop", when=t), "when"),
        (_node("approve", "approval", config={"message": t}), "config.message"),
        (_node("child", "workflow", config={"workflow": "w", "inputs": {"a": t}}),
         "config.inputs.a"),
        (_node("each", "map", config={"items": "{{ input.xs }}", "handler": "http",
                                      "config": {"url": loopback, "headers": {"A": t}}}),
         "config.config.headers.A"),
        (_node("items", "map", config={"items": t, "handler": "noop"}), "config.items"),
        (_node("undo", "noop", compensate={"handler": "noop", "config": {"value": t}}),
         "compensate.config.value"),
        (_node("undo_http", "noop", compensate={
            "handler": "http", "config": {"url": loopback, "query": {"k": t}}}),
         "compensate.config.query.k"),
    ]  # fmt: skip


def _issues(definition: dict[str, Any], context: Any = None) -> list[tuple[Any, ...]]:
    try:
        load_definition(definition, context=context)
    except DefinitionError as exc:
        return [(i.node, i.field, i.code, i.message) for i in exc.issues]
    return []


def _flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "secrets", "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


@pytest.fixture
def untrusted(tmp_path: Path) -> Any:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    return enforce.validation_context(Governance.load(policy, trusted=False, environ={}))


@pytest.fixture
def trusted(tmp_path: Path) -> Any:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    return enforce.validation_context(Governance.load(policy, trusted=True, environ={}))


@pytest.mark.parametrize("template", TRANSFORMS)
@pytest.mark.parametrize("trust", ["trusted", "untrusted"])
def test_a_secret_outside_a_request_field_is_refused(
    template: str, trust: str, request: pytest.FixtureRequest
) -> None:
    context = request.getfixturevalue(trust)
    for node, field in _places(template):
        found = {(n, f) for n, f, *_ in _issues(_flow(node), context)}
        assert (node["id"], field) in found, (template, node)


def test_a_condition_case_may_not_read_secrets() -> None:
    cases = [
        {"when": "secrets.TOKEN | reverse == 'x'", "then": ["a"]},
        {"when": "{{ secrets['TOKEN'][1:] }}", "then": ["a"]},
    ]
    nodes = [
        _node("choose", "condition", config={"cases": cases}),
        {"id": "a", "handler": "noop", "dependencies": ["choose"]},
    ]
    found = _issues(_flow(*nodes))
    assert {(n, f) for n, f, *_ in found} == {
        ("choose", "config.cases[0].when"),
        ("choose", "config.cases[1].when"),
    }
    assert "headers, json or body of an http node" in found[0][3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("headers", {"Authorization": "Bearer {{ secrets.TOKEN }}"}),
        ("headers", {"X-Sig": "{{ secrets.TOKEN }}:x"}),
        ("json", {"client_secret": "{{ secrets.TOKEN }}", "nested": ["{{ secrets['TOKEN'] }}"]}),
        ("body", "grant_type=client_credentials&secret={{ secrets.TOKEN }}"),
    ],
)
def test_request_fields_of_an_http_node_may_carry_a_secret(
    field: str, value: Any, trusted: Any, untrusted: Any
) -> None:
    node = _node("call", "http", config={"url": "http://127.0.0.1:1/x", "method": "POST"})
    node["config"][field] = value
    undo = {"handler": "http", "config": {"url": "https://a.example.com/undo", field: value}}
    node["compensate"] = undo
    for context in (None, trusted, untrusted):
        assert _issues(_flow(node), context) == []


def test_in_a_request_field_a_secret_must_be_named() -> None:
    for template in ("{{ secrets | attr('TOKEN') }}", "{% set s = secrets %}{{ s.TOKEN }}",
                     "{{ secrets[input.which] }}"):  # fmt: skip
        node = _node("call", "http", config={"url": "http://h/", "headers": {"A": template}})
        found = _issues(_flow(node))
        assert [(n, f, c) for n, f, c, _ in found] == [("call", "config.headers.A", "secret_field")]
        assert "secrets.NAME" in found[0][3]


@pytest.mark.parametrize(
    ("url", "secret", "allowed"),
    [
        ("http://127.0.0.1:1/x", "TOKEN", True),
        ("https://api.example.com/x", "TOKEN", True),
        ("https://deep.api.example.com/x", "TOKEN", True),
        ("https://example.com/x", "TOKEN", False),  # *.example.com: subdomains only
        ("https://api.example.org:8443/x", "TOKEN", True),
        ("https://api.example.org/x", "TOKEN", False),  # another port
        ("http://api.example.org:8443/x", "TOKEN", False),  # another scheme
        ("https://evil.test/x", "TOKEN", False),
        ("https://api.example.com.evil.test/x", "TOKEN", False),
        ("http://127.0.0.1:8899/v1", "SEARCH_KEY", True),  # the local provider's origin
        ("http://127.0.0.1:8898/v1", "SEARCH_KEY", False),
        ("http://127.0.0.1:1/x", "UNLISTED", False),  # untrusted: nowhere
    ],
)
def test_a_secret_goes_only_where_the_policy_allows(
    url: str, secret: str, allowed: bool, untrusted: Any
) -> None:
    node = _node(
        "call", "http", config={"url": url, "headers": {"A": f"{{{{ secrets.{secret} }}}}"}}
    )
    found = _issues(_flow(node), untrusted)
    if allowed:
        assert found == []
    else:
        assert [(n, f, c) for n, f, c, _ in found] == [
            ("call", "config.headers.A", "policy_violation")
        ]
        assert f"secret '{secret}'" in found[0][3]


def test_trusted_contexts_restrict_only_the_secrets_the_policy_lists(trusted: Any) -> None:
    listed = _node(
        "a", "http", config={"url": "https://evil.test/", "headers": {"A": "{{ secrets.TOKEN }}"}}
    )
    free = _node(
        "b", "http", config={"url": "https://evil.test/", "headers": {"A": "{{ secrets.MINE }}"}}
    )
    assert [(n, c) for n, _, c, _ in _issues(_flow(listed, free), trusted)] == [
        ("a", "policy_violation")
    ]


def test_a_templated_url_is_checked_when_the_node_runs(untrusted: Any) -> None:
    node = _node(
        "call", "http", config={"url": "{{ input.url }}", "headers": {"A": "{{ secrets.TOKEN }}"}}
    )
    assert _issues(_flow(node), untrusted) == []
    unlisted = _node(
        "other", "http", config={"url": "{{ input.url }}", "headers": {"A": "{{ secrets.NOPE }}"}}
    )
    assert [(n, f) for n, f, *_ in _issues(_flow(unlisted), untrusted)] == [
        ("other", "config.headers.A")
    ]


# ----------------------------------------------------------------------- llm credentials


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        ({"base_url": "https://attacker.test/v1"}, ["config.base_url"]),
        ({"api_key_env": "GITHUB_TOKEN"}, ["config.api_key_env"]),
        ({"base_url": "https://attacker.test/v1", "api_key_env": "OPENAI_API_KEY"},
         ["config.base_url", "config.api_key_env"]),
        ({"base_url": "http://127.0.0.1:8899/v1"}, ["config.base_url"]),  # even the provider's
        ({"base_url": "{{ input.where }}"}, ["config.base_url"]),
        ({"provider": "anthropic"}, ["config.provider"]),
    ],
)  # fmt: skip
def test_untrusted_llm_nodes_choose_a_provider_by_name_only(
    config: dict[str, Any], fields: list[str], untrusted: Any
) -> None:
    node = _node("ask", "llm", config={"prompt": "hi", **config})
    found = _issues(_flow(node), untrusted)
    assert [(n, f) for n, f, *_ in found] == [("ask", f) for f in fields]
    for llm_node in (
        _node(
            "each",
            "map",
            config={"items": [1], "handler": "llm", "config": {"prompt": "x", **config}},
        ),
        _node("undo", "noop", compensate={"handler": "llm", "config": {"prompt": "x", **config}}),
    ):
        prefix = "config.config" if llm_node["id"] == "each" else "compensate.config"
        found = _issues(_flow(llm_node), untrusted)
        assert [f for _, f, *_ in found] == [f.replace("config", prefix, 1) for f in fields]


def test_untrusted_llm_nodes_may_use_configured_providers(untrusted: Any) -> None:
    nodes = [
        _node(name, "llm", config={"prompt": "hi", "provider": name})
        for name in ("local", "openai", "offline", "auto")
    ]
    assert _issues(_flow(*nodes), untrusted) == []


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        ({"base_url": "http://localhost:11434/v1"}, True),  # keyless: nothing is sent with it
        ({"base_url": "http://127.0.0.1:8899/v1/other", "api_key_env": "LOCAL_LLM_API_KEY"}, True),
        ({"base_url": "https://attacker.test/v1", "api_key_env": "LOCAL_LLM_API_KEY"}, False),
        ({"base_url": "http://127.0.0.1:8899/v1", "api_key_env": "GITHUB_TOKEN"}, False),
        ({"base_url": "https://attacker.test/v1", "api_key_env": "OPENAI_API_KEY"}, False),
        ({"api_key_env": "OPENAI_API_KEY"}, True),  # the implicit openai provider's own key
        ({"provider": "local", "api_key_env": "OPENAI_API_KEY"}, False),
    ],
)
def test_trusted_llm_nodes_send_a_key_only_to_its_provider(
    config: dict[str, Any], ok: bool, trusted: Any
) -> None:
    node = _node("ask", "llm", config={"prompt": "hi", **config})
    found = _issues(_flow(node), trusted)
    if ok:
        assert found == []
    else:
        assert [(n, f, c) for n, f, c, _ in found] == [
            ("ask", "config.api_key_env", "policy_violation")
        ]


# ----------------------------------------------------------------------- the policy file


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("secrets: {T: {hosts: ['ftp://x']}}", "scheme must be http or https"),
        ("secrets: {T: {hosts: ['a b']}}", "is not a host"),
        ("secrets: {T: {hosts: ['h:99999']}}", "invalid port"),
        ("secrets: {T: {providers: [nope]}}", "unknown llm provider 'nope'"),
        ("secrets: {T: {where: [x]}}", "secrets.T.where"),
        ("llm: {providers: {offline: {base_url: 'http://x/'}}}", "built in"),
        ("llm: {providers: {p: {base_url: 'file:///etc'}}}", "absolute http"),
        ("llm: {providers: {p: {base_url: 'http://x/', api_key_env: 'A-B'}}}", "environment"),
        ("llm: {providers: {p: {base_url: 'http://x/', token: 'x'}}}", "llm.providers.p.token"),
    ],
)
def test_bad_policy_sections_are_refused(text: str, fragment: str, tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\n" + text + "\n")
    with pytest.raises(ConfigurationError) as info:
        load_policy(policy)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("entry", "url_parts", "matches"),
    [
        ("api.example.com", ("https", "api.example.com", 443), True),
        ("API.example.com", ("http", "api.example.com", 8080), True),
        ("api.example.com:443", ("https", "api.example.com", 8443), False),
        ("*.example.com", ("https", "example.com", 443), False),
        ("*.example.com", ("https", "a.b.example.com", 443), True),
        ("https://api.example.com", ("http", "api.example.com", 80), False),
        ("[::1]:8080", ("http", "::1", 8080), True),
    ],
)
def test_destination_entries(entry: str, url_parts: tuple[str, str, int], matches: bool) -> None:
    assert Destination.parse(entry).matches(*url_parts) is matches


def test_the_backstop_scrubs_common_transforms() -> None:
    value = "Sup3r-Secret/Value+1"
    scrub = Scrubber([value, "abc"])
    raw = value.encode()
    transformed = [
        value,
        value.lower(),
        value.upper(),
        value[::-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "Sup3r-Secret%2FValue%2B1",
        raw.hex(),
    ]
    for text in transformed:
        assert scrub.text(f"<{text}>") == "<***>", text
    assert scrub.text("abc stays: too short to scrub") == "abc stays: too short to scrub"
    data = {"k": [value, {"inner": value[::-1]}], value: 1}
    assert scrub.value(data) == {"k": ["***", {"inner": "***"}], "***": 1}
    untouched = {"a": ["b"]}
    assert scrub.value(untouched) is untouched


def test_log_records_are_scrubbed_whoever_makes_them(caplog: pytest.LogCaptureFixture) -> None:
    from orchestrion.governance.log_masking import current_log_masker, set_log_masker
    from orchestrion.governance.masking import Masker
    from orchestrion.governance.secret_logs import hide_in_logs, scrub_logs

    value = "log-Secret-Value-31"
    previous = current_log_masker()
    # With the log masker in force too: it renders tracebacks, before or after this factory.
    set_log_masker(Masker(["email"], {}))
    try:
        hide_in_logs([value])
        scrub_logs()  # the process-wide factory: the CLI's and the server's, or on request
        logger = logging.getLogger("httpcore.http11")
        with caplog.at_level(logging.DEBUG, logger="httpcore.http11"):
            logger.debug("headers=%r", [(b"X-Echo", f"Bearer {value}".encode())])
            logger.debug("reversed %s", value[::-1])
            try:
                raise ValueError(value.upper())
            except ValueError:
                logger.exception("failed")
    finally:
        set_log_masker(previous)
    text = caplog.text
    assert "***" in text
    for variant in (value, value[::-1], value.upper()):
        assert variant not in text


def test_trust_is_one_flag_of_the_routing(untrusted: Any) -> None:
    from orchestrion.governance.secret_routes import ROUTING_KEY

    routing = untrusted[ROUTING_KEY]
    assert not routing.trusted and routing.with_trust(True).trusted
    assert routing.with_trust(False) is routing
    assert routing.problem("UNLISTED", "https://x.test/") is not None
    assert routing.with_trust(True).problem("UNLISTED", "https://x.test/") is None


def _definition_places(t: str) -> list[tuple[dict[str, Any], str]]:
    """(sections, field) for every templated place of a definition outside its nodes."""
    rule = {"condition": "input.output", "action": "alert", "recipients": ["ops"]}
    hook = {"type": "webhook", "name": "h", "secret": "HOOK"}
    return [
        ({"routing": [{**rule, "message": t}]}, "routing[0].message"),
        ({"routing": [{**rule, "condition": t}]}, "routing[0].condition"),
        ({"success_criteria": [{"condition": t}]}, "success_criteria[0].condition"),
        ({"triggers": [{"type": "event", "event_type": "e", "filter": t}]}, "triggers[0].filter"),
        ({"triggers": [{"type": "event", "event_type": "e", "inputs": {"a": [t]}}]},
         "triggers[0].inputs.a[0]"),
        ({"triggers": [{**hook, "filter": t}]}, "triggers[0].filter"),
        ({"triggers": [{**hook, "inputs": {"a": t}}]}, "triggers[0].inputs.a"),
    ]  # fmt: skip


@pytest.mark.parametrize("template", TRANSFORMS)
def test_a_secret_in_a_definition_field_outside_the_nodes_is_refused(template: str) -> None:
    for sections, field in _definition_places(template):
        found = _issues({**_flow(), **sections})
        assert any(f == field for _, f, *_ in found), (template, field, found)
