"""``include_flat``: a router's routes added to the application's own route list.

FastAPI keeps an included router whole: each request the application's router asks it
whether it has a route for the path (looking through its routes, with its bookkeeping of
the inclusion in the request's scope), then asks it again to handle the request, which
looks through them a second time. For the routes clients call most (submit, trigger, an
execution's status) that was about a fifth of the Python calls of a status read. The
routes of ``api/routes/workflows.py`` are instead declared again on the application's own
router, each with every setting it was declared with, in the same place of the route list:
each request matches them once, and they are the same routes (the same checks, parameters,
answers and OpenAPI document) that ``include_router`` would have made of them.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute

__all__ = ["include_flat"]


def include_flat(app: FastAPI, router: APIRouter) -> None:
    """Add the routes of ``router`` to ``app`` as its own (see the module doc).

    Only what ``include_router`` would add unchanged: API routes of a router without
    dependencies, callbacks, default response class or lifespan of its own.
    """
    if (
        router.dependencies
        or router.callbacks
        or router.on_startup
        or router.on_shutdown
        or not isinstance(router.default_response_class, DefaultPlaceholder)
    ):
        raise TypeError("include_flat takes routers without dependencies, events or classes")
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"include_flat takes API routes only, not {route!r}")
        app.router.add_api_route(
            route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=list(route.dependencies),
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=dict(route.responses),
            deprecated=route.deprecated,
            methods=set(route.methods),
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            route_class_override=type(route),
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
            strict_content_type=route.strict_content_type,
            max_body_size=route.max_body_size,
            form_limits=route.form_limits,
        )
