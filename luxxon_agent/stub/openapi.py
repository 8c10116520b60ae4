"""The stub's OpenAPI document: what each operation returns, as the routes behave.

Routes declare their success model (`response_model=Envelope[Model]`) and the
statuses only their own logic sends (`responses=errors(404, 409)`). What the
framework around them sends is added here, per operation, by looking at the
route: 400 INVALID_INPUT for any operation with parameters or a body
(validation), 413 for any with a body (stub/limits.py), 401 and 403 for any
that authenticates its caller (stub/auth.py), each with the error body
`{code, message, detail}`. FastAPI's default 422 is removed: validation
errors answer 400. The two ways to authenticate are declared as security
schemes (Bearer API key, `lx_session` cookie).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from luxxon_agent.models import Timestamp
from luxxon_agent.stub.auth import AUTHENTICATING, require_wallet_session
from luxxon_agent.wire import SESSION_COOKIE

DataT = TypeVar("DataT")

_DESCRIPTIONS = {
    400: "Invalid input: the message names the field (code INVALID_INPUT or a specific one)",
    401: "Not authenticated, or the key, cookie or signature is not valid",
    403: "Authenticated, but not allowed (scope, workspace or role)",
    404: "No such object (or not visible to the caller)",
    409: "Conflicts with the current state",
    413: "Request body larger than the 64 KiB limit",
    422: "Telemetry captured outside the session or in the future",
    502: "The video service failed",
    503: "No supplier covers the point",
}


class ErrorBody(BaseModel):
    """Every error: a code from the contract, one line for a person, optional detail."""

    code: str
    message: str
    detail: str | None = None


class Envelope(BaseModel, Generic[DataT]):
    """Every success: the payload is in `data`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    status_code: int
    message: str = "OK"
    data: DataT
    timestamp: Timestamp


class LoggedOut(BaseModel):
    logged_out: bool = Field(alias="loggedOut")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses, each with the error body."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            found.add(sub.call)
        found |= _calls(sub)
    return found


def _framework_statuses(route: APIRoute) -> tuple[list[int], list[dict[str, list[str]]]]:
    """Statuses the framework adds to `route`, and its security requirements."""
    dependant = route.dependant
    has_body = dependant.body_params != []
    has_params = has_body or any(
        (dependant.path_params, dependant.query_params, dependant.header_params)
    )
    statuses = []
    if has_params:
        statuses.append(400)
    if has_body:
        statuses.append(413)
    calls = _calls(dependant)
    security: list[dict[str, list[str]]] = []
    if calls & AUTHENTICATING:
        statuses += [401, 403]
        security = [{"walletSession": []}]
        if require_wallet_session not in calls:
            security.insert(0, {"apiKey": []})
    return statuses, security


def install_openapi(app: FastAPI, routers: list[tuple[str, APIRouter]]) -> None:
    """Make `app.openapi()` return the document described above (built once), for the
    routes of `routers`, each mounted at its prefix."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        components["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "lxxn_live_/lxxn_test_"},
            "walletSession": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
        }
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        mounted = [
            (prefix + route.path_format, route)
            for prefix, router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and route.include_in_schema
        ]
        for path, route in mounted:
            statuses, security = _framework_statuses(route)
            for method in route.methods or ():
                operation = document["paths"][path][method.lower()]
                responses = operation.setdefault("responses", {})
                validation = responses.get("422", {}).get("content", {})
                if "HTTPValidationError" in str(validation):
                    del responses["422"]
                for status in statuses:
                    responses.setdefault(
                        str(status),
                        {"description": _DESCRIPTIONS[status], "content": error_content},
                    )
                if security:
                    operation["security"] = security
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
