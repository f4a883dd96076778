"""``DirectRoute``: the API's hottest routes answer their plain requests without FastAPI's
generic parameter solving, with the same checks and the same answer.

For every request FastAPI walks the route's dependency tree and looks each declared parameter
up through generic machinery (the query string and the cookies parsed, every value validated
by pydantic, a sub-response made for the dependencies): for an execution's status, a submit
or a trigger that was about a sixth of the server's CPU per request. A route marked ``direct``
(on a router whose ``route_class`` is ``DirectRoute``) answers a request of the plain shape
itself, in FastAPI's order and with FastAPI's own pieces:

1. the body, for a route that takes one, only when its content type is exactly
   ``application/json``: read and parsed as FastAPI reads it, before any check (a body that
   does not parse is FastAPI's to report);
2. the route's one dependency, its access check (``auth.Access``), as FastAPI runs it;
3. parameters: no query string and none of the route's header parameters sent, so each takes
   the default FastAPI would give it; path parameters are plain text, taken as matched; the
   body validated by FastAPI's own body validation;
4. the endpoint, and its answer serialized as FastAPI serializes it (the response model's
   validation, then its JSON) with the route's status code.

Every other request (a query string, an ``Idempotency-Key``, another content type, a body that
does not parse or validate, FastAPI's telemetry on, dependency overrides) goes to FastAPI's own
handler, which answers it as it always has: the access check runs again there, and it has no
effect of its own. A marked route whose declaration does not fit (another dependency, a
parameter that is not plain, a cookie) is refused when the application is built.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from fastapi.utils import is_body_allowed_for_status_code
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

# FastAPI's own pieces, some of them private: a FastAPI release without them (the installed
# one is pinned in constraints.txt) gets every route answered by FastAPI itself, as before.
try:
    from fastapi._body_limit import get_body_limit_error
    from fastapi.dependencies.utils import request_body_to_args
    from fastapi.routing import (
        _effective_route_context_var,
        _extract_endpoint_context,
        serialize_response,
    )
    from fastapi.telemetry import get_telemetry_data
    from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
except ImportError:  # pragma: no cover - only with another FastAPI than the pinned one
    _PIECES = False
else:
    _PIECES = True

from orchestrion.api.auth import Access

__all__ = ["DirectRoute", "direct"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__orchestrion_direct__"
_JSON = b"application/json"
_PLAIN_DEFAULTS = (type(None), bool, int, float, str)


def direct(endpoint: F) -> F:
    """Mark an endpoint whose plain requests its ``DirectRoute`` answers (see the module doc)."""
    setattr(endpoint, _MARK, True)
    return endpoint


class DirectRoute(APIRoute):
    """An ``APIRoute`` that answers the plain requests of a ``direct`` endpoint itself; any
    other route of its router is a plain ``APIRoute``."""

    def get_route_handler(self) -> Handler:
        full = super().get_route_handler()
        if not _PIECES or not getattr(self.endpoint, _MARK, False):
            return full
        # Included in another router, a route is served through its effective context (its
        # full path, the including routers' dependencies): plan from that, as FastAPI does.
        effective = _effective_route_context_var.get()
        route: Any = self
        if effective is not None and effective.original_route is self:
            route = effective
        return _Plan(route).handler(full)


class _Plan:
    """What a direct answer needs of one route, checked once."""

    def __init__(self, route: Any) -> None:
        dependant = route.dependant
        name = f"{sorted(route.methods or ())} {route.path}"
        if len(dependant.dependencies) != 1 or not isinstance(
            dependant.dependencies[0].call, Access
        ):
            raise TypeError(f"{name}: a direct route has exactly one dependency, its Access")
        access = dependant.dependencies[0]
        if (
            access.dependencies
            or access.path_params
            or access.query_params
            or access.header_params
            or access.cookie_params
            or access.body_params
        ):
            raise TypeError(f"{name}: its Access takes the request and nothing else")
        if (
            dependant.cookie_params
            or dependant.http_connection_param_name
            or dependant.background_tasks_param_name
            or dependant.response_param_name
            or dependant.security_scopes_param_name
            or dependant.websocket_param_name
        ):
            raise TypeError(f"{name}: a direct route takes no cookie, response or tasks")
        for field in dependant.path_params:
            if field.field_info.annotation is not str or field.field_info.metadata:
                raise TypeError(f"{name}: path parameter {field.name} is not plain text")
        if not inspect.iscoroutinefunction(dependant.call) or not inspect.iscoroutinefunction(
            type(access.call).__call__
        ):
            raise TypeError(f"{name}: a direct route and its Access are coroutines")
        self.defaults: dict[str, Any] = {}
        self.headers: frozenset[bytes] = frozenset()
        names: set[bytes] = set()
        for field in (*dependant.query_params, *dependant.header_params):
            info = field.field_info
            if info.is_required() or info.validate_default:
                raise TypeError(f"{name}: parameter {field.name} has no plain default")
            if type(field.default) not in _PLAIN_DEFAULTS:
                raise TypeError(f"{name}: parameter {field.name} has no plain default")
            self.defaults[field.name] = field.default
            if isinstance(info, params.Header):
                # Every spelling FastAPI may look the header up by: sent at all, it is
                # FastAPI's to read and validate.
                for spelling in (field.name, field.alias, str(info.alias or "")):
                    for each in (spelling, spelling.replace("_", "-")):
                        if each:
                            names.add(each.lower().encode("latin-1"))
        self.headers = frozenset(names)
        if len(dependant.body_params) > 1 or (
            dependant.body_params and isinstance(dependant.body_params[0].field_info, params.Form)
        ):
            raise TypeError(f"{name}: a direct route takes at most one JSON body")
        self.body_params = list(dependant.body_params)
        self.embed_body_fields: bool = route._embed_body_fields
        self.dependant = dependant
        self.access: Access = access.call
        self.path_params = list(dependant.path_params)
        self.request_name: str | None = dependant.request_param_name
        self.call = dependant.call
        self.status_code: int | None = route.status_code
        self.response_field = route.response_field
        self.response_class = route.response_class
        self.dump_json = self.response_field is not None and isinstance(
            route.response_class, DefaultPlaceholder
        )
        self.serialize: dict[str, Any] = {
            "include": route.response_model_include,
            "exclude": route.response_model_exclude,
            "by_alias": route.response_model_by_alias,
            "exclude_unset": route.response_model_exclude_unset,
            "exclude_defaults": route.response_model_exclude_defaults,
            "exclude_none": route.response_model_exclude_none,
        }
        self.overrides = route.dependency_overrides_provider

    def plain(self, request: Request) -> bool:
        """Whether FastAPI would give every query and header parameter its default."""
        scope = request.scope
        if scope.get("query_string"):
            return False
        if self.headers and any(name.lower() in self.headers for name, _ in scope["headers"]):
            return False
        if self.overrides is not None and getattr(self.overrides, "dependency_overrides", None):
            return False
        return get_telemetry_data() is None

    def handler(self, full: Handler) -> Handler:
        async def app(request: Request) -> Response:
            if not self.plain(request):
                return await full(request)
            body: Any = PydanticUndefined
            if self.body_params:
                found = await self.body(request)
                if found is None:
                    return await full(request)
                body = found[0]
            await self.access(request)
            values: dict[str, Any] = dict(self.defaults)
            path_params = request.path_params
            for field in self.path_params:
                value, errors = field.validate(
                    path_params.get(field.alias), values, loc=("path", field.alias)
                )
                if errors:
                    return await full(request)
                values[field.name] = value
            if self.body_params:
                solved, errors = await request_body_to_args(
                    body_fields=self.body_params,
                    received_body=body,
                    embed_body_fields=self.embed_body_fields,
                )
                if errors:
                    return await full(request)
                values.update(solved)
            if self.request_name is not None:
                values[self.request_name] = request
            answer = await self.call(**values)
            return await self.respond(request, answer)

        return app

    @staticmethod
    async def body(request: Request) -> tuple[Any] | None:
        """The body as FastAPI reads it for a JSON route, in a 1-tuple (``PydanticUndefined``
        when there is none); None when FastAPI should read it instead: a content type
        other than exactly ``application/json``, or a body that does not parse."""
        content_type = [v for k, v in request.scope["headers"] if k.lower() == b"content-type"]
        if content_type not in ([], [_JSON]):
            return None
        try:
            raw = await request.body()
        except HTTPException:
            raise
        except Exception as exc:  # as FastAPI reports a body that cannot be read
            if MAX_BODY_SIZE_SCOPE_KEY in request.scope and (error := get_body_limit_error(exc)):
                raise error from exc
            raise HTTPException(400, "There was an error parsing the body") from exc
        if not raw:
            return (PydanticUndefined,)
        if not content_type:
            return None  # a body without a content type: FastAPI's to parse or not
        try:
            return (await request.json(),)
        except json.JSONDecodeError:
            return None  # the body is kept: FastAPI reports the error its own way

    async def respond(self, request: Request, answer: Any) -> Response:
        """The response FastAPI makes of an endpoint's ``answer`` (get_request_handler)."""
        if isinstance(answer, Response):
            return answer
        args: dict[str, Any] = {"background": None}
        if self.status_code:
            args["status_code"] = self.status_code
        context = _extract_endpoint_context(self.call)
        if self.dependant.path:
            mount_path = request.scope.get("root_path", "").rstrip("/")
            context = {**context, "path": f"{request.method} {mount_path}{self.dependant.path}"}
        content = await serialize_response(
            field=self.response_field,
            response_content=answer,
            is_coroutine=True,
            endpoint_ctx=context,
            dump_json=self.dump_json,
            **self.serialize,
        )
        response: Response
        if self.dump_json:
            response = Response(content=content, media_type="application/json", **args)
        else:
            response_class = self.response_class
            if isinstance(response_class, DefaultPlaceholder):
                response_class = response_class.value
            response = response_class(content, **args)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        return response
