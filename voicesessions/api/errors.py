"""One JSON error shape for every API failure.

    {"error": "<code>", "detail": "<sentence>", "fields": {"<field>": ["<why>"]}}

`fields` is present when specific input fields are at fault, so the caller
always learns which field to fix.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..models import IllegalTransition
from ..providers import RoomProviderError
from ..rooms import RoomNotFound
from ..sessions import RoomNotReady
from .apierror import ApiError, field_error, too_large  # noqa: F401 - re-exported for the views

_PROVIDER_STATUS = {"rate_limited": 429, "auth": 502, "invalid": 502, "not_found": 502,
                    "unavailable": 503, "config": 503}


def _translate(exc: Exception) -> Exception:
    """Domain exceptions become ApiErrors with the right status."""
    if isinstance(exc, Http404):  # get_object_or_404: the same code as every other 404 here
        return ApiError("not_found", "Not found.", status_code=404)
    if isinstance(exc, OperationalError):  # database restarting or out of connections: retry, not a 500
        return ApiError("database_unavailable", "The database is unavailable; try again shortly.",
                        status_code=503, headers={"Retry-After": "2"})
    if isinstance(exc, RequestDataTooBig):
        return too_large()
    if isinstance(exc, IllegalTransition):
        return ApiError("illegal_transition", str(exc), status_code=409)
    if isinstance(exc, RoomNotFound):
        return field_error("room_url", "No such voice room for this user.", code="not_found", status_code=404)
    if isinstance(exc, RoomNotReady):
        return ApiError("room_not_ready",
                        "The room is torn down or expired; get it again with POST /api/voice/room.",
                        status_code=409, fields={"room_url": ["room is not live"]})
    if isinstance(exc, RoomProviderError):
        headers = {"Retry-After": str(int(exc.retry_after or 1))} if exc.kind == "rate_limited" else None
        return ApiError(f"provider_{exc.kind}", f"The room provider failed: {exc}",
                        status_code=_PROVIDER_STATUS.get(exc.kind, 503), headers=headers)
    return exc


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    """The JSON body for an API error (also used by the non-DRF WebRTC view)."""
    if isinstance(exc, ApiError):
        body: dict[str, Any] = {"error": exc.error_code, "detail": str(exc.detail)}
        if exc.fields:
            body["fields"] = exc.fields
        return body
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        first = next(iter(detail), "non_field_errors")
        return {"error": "invalid", "detail": f"Invalid input in '{first}'.", "fields": detail}
    return {"error": getattr(exc, "default_code", "error"), "detail": str(getattr(exc, "detail", exc))}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _translate(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        for name, value in exc.extra_headers.items():
            response[name] = value
    response.data = error_body(exc)
    return response


def not_found_view(request, exception=None):
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": "No such API endpoint."}, status=404)
    return page_not_found(request, exception)


def bad_request_view(request, exception=None):
    """Django's 400 (a body over the size limit, a bad Host): the JSON error shape for API clients."""
    from django.http import JsonResponse
    from django.views.defaults import bad_request

    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            exc = too_large()
            return JsonResponse(error_body(exc), status=exc.status_code)
        return JsonResponse({"error": "bad_request", "detail": "The request was refused."}, status=400)
    return bad_request(request, exception)


def server_error_view(request):
    from django.http import JsonResponse
    from django.views.defaults import server_error

    if request.path.startswith("/api/"):
        return JsonResponse({"error": "server_error", "detail": "Internal error; it has been logged."}, status=500)
    return server_error(request)
