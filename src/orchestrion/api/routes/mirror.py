"""``mirror``: a /v1 route served at another path too, by the very same endpoint.

The compatibility surfaces are the /v1 routes under the paths other descriptions give them:
the endpoint, its dependencies (roles, required headers), its status code, response model and
documented errors are the /v1 route's, so no verb is implemented twice and the audit trail
names the same action (``api.<endpoint name>``) whichever path it came by.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute

__all__ = ["mirror", "v1_route"]


def v1_route(source: APIRouter, method: str, path: str) -> APIRoute:
    """The route of ``source`` answering ``method path`` (``path`` with its /v1 prefix)."""
    for route in source.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no route {method} {path}")  # a programming error, found at import


def mirror(target: APIRouter, source: APIRouter, method: str, v1_path: str, path: str) -> None:
    """Serve ``source``'s ``method v1_path`` route at ``path`` on ``target`` as well."""
    route = v1_route(source, method, v1_path)
    target.add_api_route(
        path,
        route.endpoint,
        methods=[method],
        status_code=route.status_code,
        response_model=route.response_model,
        dependencies=route.dependencies,
        responses=route.responses,
        openapi_extra=route.openapi_extra,
        summary=route.summary,
        name=route.name,
    )
