"""Every API call as data, with no I/O: the request to send and how to read its answer.

``Client`` and ``AsyncClient`` only send a ``Call``'s request and hand the response to
``Call.handle``; so both speak the same API, and the mapping (paths, query parameters,
headers, bodies, status codes, parsing) is written once. The calls of some resources have a
module of their own built on ``Call`` (``log_calls.py``, ``dead_letter_calls.py``,
``versions.py``, ``schedules.py``, ``sinks.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx

from orchestrion.client.emit_models import EmittedEvent
from orchestrion.client.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    InvalidRequest,
    error_from_response,
)
from orchestrion.client.inputs_models import RenderedInputs
from orchestrion.client.models import (
    Accepted,
    Definition,
    DefinitionSummary,
    EventPage,
    Execution,
    ExecutionPage,
    ExecutionResults,
    Health,
    Submission,
)
from orchestrion.core.idempotency import caller_key_problem
from orchestrion.core.states import ExecutionStatus
from orchestrion.core.verbs import ControlVerb, decision_verb

if TYPE_CHECKING:
    from orchestrion.definition.model import WorkflowSpec

__all__ = [
    "STREAM_READ_TIMEOUT",
    "Call",
    "DefinitionSource",
    "StatusFilter",
    "TimeFilter",
    "base_url",
    "cancel",
    "control",
    "default_headers",
    "emit",
    "encode_definition",
    "events",
    "get_definition",
    "health",
    "list_definitions",
    "list_executions",
    "metrics",
    "node_inputs",
    "quote_segment",
    "read_json",
    "results",
    "start_definition",
    "status",
    "status_values",
    "stream",
    "stream_headers",
    "submit",
    "transport_error",
    "trigger",
]

T = TypeVar("T")

DefinitionSource: TypeAlias = "Mapping[str, Any] | str | bytes | Path | WorkflowSpec"
"""A dict, YAML/JSON text, a path to a YAML/JSON file, or a ``WorkflowSpec``."""
StatusFilter = str | ExecutionStatus | Iterable[str | ExecutionStatus] | None
TimeFilter = datetime | float | str | None

STREAM_READ_TIMEOUT = 60.0
"""Seconds an event stream may stay silent (the server sends a keep-alive every 15 s)."""

_JSON = "application/json"
_YAML = "application/yaml"
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def base_url(url: str) -> str:
    """The server's root URL; ``localhost:8000`` means ``http://localhost:8000``."""
    url = url.strip().rstrip("/")
    if not url:
        raise ValueError("the server URL is empty")
    return url if "://" in url else f"http://{url}"


def default_headers(
    api_key: str | None, headers: Mapping[str, str] | None, version: str
) -> dict[str, str]:
    """The headers every request carries: JSON, a user agent, the API key, the caller's own."""
    merged = {"Accept": _JSON, "User-Agent": f"orchestrion-client/{version}"}
    if api_key:
        if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
            raise ValueError("the API key must be printable ASCII without spaces")
        merged["Authorization"] = f"Bearer {api_key}"
    for name, value in (headers or {}).items():
        if not (name + value).isascii() or not (name + value).isprintable():
            raise ValueError(f"header {name!r}: names and values must be printable ASCII")
        merged[name] = value
    return merged


def transport_error(exc: httpx.TransportError, url: str, what: str) -> ApiConnectionError:
    """The client error for a network failure: ``ApiTimeout`` or ``ApiConnectionError``."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ApiTimeout(f"the Orchestrion server at {url} did not answer {what}: {reason}")
    return ApiConnectionError(f"cannot reach the Orchestrion server at {url} ({what}): {reason}")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the parser of its successful answer.

    ``ok`` lists the non-2xx statuses that still carry an answer (health's 503).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = ()
    source: str | None = None

    def handle(self, response: httpx.Response) -> T:
        """The parsed answer, or the ``ApiError`` the response stands for."""
        if response.is_error and response.status_code not in self.ok:
            error = error_from_response(response)
            if self.source is not None and hasattr(error, "issues"):
                error.source = self.source  # type: ignore[attr-defined]
            raise error
        try:
            return self.parse(response)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                f"unexpected answer from {response.request.method} {response.request.url}: "
                f"{type(exc).__name__}: {exc}",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from exc


def read_json(model: Callable[[dict[str, Any]], T]) -> Callable[[httpx.Response], T]:
    """A response handler: the JSON object of the body, read by ``model``."""

    def parse(response: httpx.Response) -> T:
        data = response.json()
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return model(data)

    return parse


def _text(response: httpx.Response) -> str:
    return response.text


def _body(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def _key(idempotency_key: str | None) -> dict[str, str]:
    """The Idempotency-Key header. A key no header can carry as given (white space at either
    end, which HTTP drops; a control character; not ASCII), or one of the engine's own, is
    refused here, as the server would refuse it, instead of failing as a connection would."""
    if not idempotency_key:
        return {}
    problem = caller_key_problem(idempotency_key)
    if idempotency_key != idempotency_key.strip() or not idempotency_key.isascii():
        problem = "an Idempotency-Key is ASCII text without white space at either end"
    elif any(ord(c) < 32 or ord(c) == 127 for c in idempotency_key):
        problem = "an Idempotency-Key may not hold a control character (a line break, a tab)"
    if problem is not None:
        item = {"code": "invalid_idempotency_key", "field": "Idempotency-Key", "message": problem}
        raise InvalidRequest(f"idempotency key {idempotency_key!r}: {problem}", errors=[item])
    return {"Idempotency-Key": idempotency_key}


def quote_segment(segment: str) -> str:
    """One path segment, every reserved character escaped (a '/' in an id stays in it)."""
    return quote(str(segment), safe="")


def _looks_like_path(text: str) -> bool:
    stripped = text.strip()
    return "\n" not in stripped and stripped.lower().endswith(_FILE_SUFFIXES)


def encode_definition(definition: DefinitionSource) -> tuple[bytes, str, str | None]:
    """``(body, content type, source name)`` for a definition: JSON for dicts, else as written.

    A ``Path`` (or a one-line string ending in .yaml/.yml/.json) is read from disk: a missing
    file raises ``FileNotFoundError`` rather than being posted as YAML text.
    """
    if isinstance(definition, Mapping):
        return _body(definition), _JSON, None
    if isinstance(definition, Path) or (
        isinstance(definition, str) and _looks_like_path(definition)
    ):
        path = Path(definition)
        kind = _JSON if path.suffix.lower() == ".json" else _YAML
        return path.read_bytes(), kind, str(path)
    if isinstance(definition, bytes | str):
        try:
            text = definition.decode() if isinstance(definition, bytes) else definition
            body = text.encode()
        except UnicodeError as exc:  # invalid bytes, or lone surrogates in the text
            raise ValueError(f"the definition is not UTF-8 text ({exc})") from None
        kind = _JSON if text.lstrip().startswith("{") else _YAML
        return body, kind, None
    dump = getattr(definition, "model_dump", None)  # a WorkflowSpec
    if dump is None:
        raise TypeError(f"cannot submit a {type(definition).__name__} as a workflow definition")
    return _body(dump(mode="json", exclude_defaults=True)), _JSON, None


def submit(definition: DefinitionSource, idempotency_key: str | None) -> Call[Submission]:
    body, kind, source = encode_definition(definition)
    return Call(
        "POST",
        "/v1/workflow",
        read_json(Submission.from_api),
        content=body,
        headers={"Content-Type": kind, **_key(idempotency_key)},
        source=source,
    )


def _start_body(
    input_params: Mapping[str, Any] | None, node_overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if input_params is not None:
        body["input_params"] = dict(input_params)
    if node_overrides is not None:
        body["node_overrides"] = dict(node_overrides)
    return body


def trigger(
    execution_id: str,
    input_params: Mapping[str, Any] | None,
    node_overrides: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Accepted]:
    return Call(
        "POST",
        f"/v1/workflow/trigger/{quote_segment(execution_id)}",
        read_json(Accepted.from_api),
        content=_body(_start_body(input_params, node_overrides)),
        headers={"Content-Type": _JSON, **_key(idempotency_key)},
    )


def status(execution_id: str, include_outputs: bool) -> Call[Execution]:
    params = [] if include_outputs else [("include_outputs", "false")]
    path = f"/v1/workflows/{quote_segment(execution_id)}"
    return Call("GET", path, read_json(Execution.from_api), params=params)


def results(execution_id: str) -> Call[ExecutionResults]:
    path = f"/v1/workflows/{quote_segment(execution_id)}/results"
    return Call("GET", path, read_json(ExecutionResults.from_api))


def cancel(execution_id: str, force: bool = False) -> Call[Accepted]:
    path = f"/v1/workflows/{quote_segment(execution_id)}"
    params = [("force", "true")] if force else []
    return Call("DELETE", path, read_json(Accepted.from_api), params=params)


_EXECUTION_VERBS = frozenset({ControlVerb.RETRY, ControlVerb.PAUSE, ControlVerb.RESUME})


def control(execution_id: str, verb: str, from_node: str | None = None) -> Call[Accepted]:
    """``retry`` (from the failed nodes, or ``from_node`` and its downstream), ``pause`` or
    ``resume``."""
    if verb not in _EXECUTION_VERBS:
        raise ValueError(f"unknown control verb {verb!r}")
    path = f"/v1/workflows/{quote_segment(execution_id)}/{verb}"
    params = [("from_node", from_node)] if from_node else []
    return Call("POST", path, read_json(Accepted.from_api), params=params)


def decide(
    execution_id: str, node_id: str, *, approved: bool, by: str | None, comment: str | None
) -> Call[Accepted]:
    """Approve or reject a node waiting for approval."""
    verb = decision_verb(approved)
    path = f"/v1/workflows/{quote_segment(execution_id)}/nodes/{quote_segment(node_id)}/{verb}"
    body = json.dumps({"by": by, "comment": comment}).encode()
    return Call(
        "POST",
        path,
        read_json(Accepted.from_api),
        content=body,
        headers={"Content-Type": "application/json"},
    )


def emit(
    event_type: str, payload: Mapping[str, Any] | None, event_id: str | None
) -> Call[EmittedEvent]:
    """Send an event; ``event_id`` travels as the body's ``id``. Without one, the payload's
    own ``id`` is the event's, or a new one: made here, so a request sent again (after a 429,
    say) is the same event and starts nothing twice."""
    body = dict(payload or {})
    if event_id is not None:
        body["id"] = event_id
    elif "id" not in body:
        body["id"] = str(uuid.uuid4())
    return Call(
        "POST",
        f"/v1/events/{quote_segment(event_type)}",
        read_json(EmittedEvent.from_api),
        content=_body(body),
        headers={"Content-Type": "application/json"},
    )


def _iso(value: datetime | float | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(value, UTC)
    return moment.isoformat()


def status_values(value: StatusFilter) -> list[str]:
    """A status filter as the API's UPPERCASE values."""
    if value is None:
        return []
    items = [value] if isinstance(value, str | ExecutionStatus) else list(value)
    return [ExecutionStatus(str(item).lower()).value.upper() for item in items]


def list_executions(
    status: StatusFilter,
    workflow: str | None,
    limit: int,
    cursor: str | None,
    definition_id: str | None = None,
    created_after: TimeFilter = None,
    created_before: TimeFilter = None,
    id_prefix: str | None = None,
    id_suffix: str | None = None,
) -> Call[ExecutionPage]:
    params = [("status", s) for s in status_values(status)]
    params.append(("limit", str(limit)))
    optional = {
        "workflow": workflow,
        "definition_id": definition_id,
        "created_after": None if created_after is None else _iso(created_after),
        "created_before": None if created_before is None else _iso(created_before),
        "cursor": cursor,
        "id_prefix": id_prefix,
        "id_suffix": id_suffix,
    }
    params += [(name, value) for name, value in optional.items() if value is not None]
    return Call("GET", "/v1/workflows", read_json(ExecutionPage.from_api), params=params)


def _definition_list(response: httpx.Response) -> list[DefinitionSummary]:
    data = response.json()
    items = data["items"] if isinstance(data, dict) else data
    return [DefinitionSummary.from_api(item) for item in items]


def list_definitions(
    name: str | None, limit: int | None, offset: int | None
) -> Call[list[DefinitionSummary]]:
    optional = {"name": name, "limit": limit, "offset": offset}
    params = [(key, str(value)) for key, value in optional.items() if value is not None]
    return Call("GET", "/v1/definitions", _definition_list, params=params)


def get_definition(name: str, version: str | None) -> Call[Definition]:
    params = [] if version is None else [("version", str(version))]
    path = f"/v1/definitions/{quote_segment(name)}"
    return Call("GET", path, read_json(Definition.from_api), params=params)


def start_definition(
    name: str,
    version: str | None,
    input_params: Mapping[str, Any] | None,
    node_overrides: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Accepted]:
    body = _start_body(input_params or {}, node_overrides or {})
    if version is not None:
        body["version"] = str(version)
    return Call(
        "POST",
        f"/v1/definitions/{quote_segment(name)}/executions",
        read_json(Accepted.from_api),
        content=_body(body),
        headers={"Content-Type": _JSON, **_key(idempotency_key)},
    )


def events(
    execution_id: str | None, after: int, limit: int | None, types: Iterable[str] | None
) -> Call[EventPage]:
    path = (
        "/v1/events"
        if execution_id is None
        else f"/v1/workflows/{quote_segment(execution_id)}/events"
    )
    params = [("after", str(after))]
    if limit is not None:
        params.append(("limit", str(limit)))
    params += [("type", t) for t in types or ()]
    return Call("GET", path, read_json(EventPage.from_api), params=params)


def stream(execution_id: str | None, last_event_id: str | int | None) -> tuple[str, dict[str, str]]:
    """The path and headers of an event stream, resumed after ``last_event_id``."""
    path = (
        "/v1/events/stream"
        if execution_id is None
        else f"/v1/workflows/{quote_segment(execution_id)}/events/stream"
    )
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return path, headers


def node_inputs(execution_id: str, node_id: str) -> Call[list[RenderedInputs]]:
    """A node's config as each of its attempts rendered it, oldest first."""
    path = f"/v1/workflows/{quote_segment(execution_id)}/nodes/{quote_segment(node_id)}/inputs"
    return Call("GET", path, read_json(RenderedInputs.page))


def stream_headers(last_event_id: str | int | None) -> dict[str, str]:
    """The headers of a Server-Sent Events request, resumed after ``last_event_id``."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return headers


def _health(response: httpx.Response) -> Health:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_error and not (isinstance(data, dict) and "checks" in data):
        raise error_from_response(response)  # a 503 that is not a health report
    return Health.from_api(data)


def health() -> Call[Health]:
    return Call("GET", "/health", _health, ok=(503,))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", _text, headers={"Accept": "text/plain"})
