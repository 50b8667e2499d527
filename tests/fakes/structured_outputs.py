"""OpenAI's structured outputs and log-probabilities, as the fake OpenAI API checks and answers them.

From OpenAI's API reference (``response_format``, ``logprobs``, ``top_logprobs``) and its
structured-outputs guide:

- ``response_format`` is ``{"type": "text"}``, ``{"type": "json_object"}`` (the messages
  must then say "json" somewhere, or 400) or ``{"type": "json_schema", "json_schema":
  {"name", "description"?, "schema"?, "strict"?}}`` with a name of ``^[a-zA-Z0-9_-]{1,64}$``.
- With ``strict: true`` the schema's root is an object, and every object in it has
  ``additionalProperties: false`` and lists every one of its properties in ``required``
  (an optional member is a ``null`` type instead); otherwise 400 "Invalid schema for
  response_format '<name>': In context=(...), ...".
- ``top_logprobs`` is an integer from 0 to 20 and needs ``logprobs: true``. The answer's
  ``choices[].logprobs.content`` lists each token with its ``logprob``, ``bytes`` and its
  ``top_logprobs`` alternatives.
- OpenAI's reasoning models (o1, o3, gpt-5...) refuse ``logprobs``, ``top_logprobs`` and
  any ``temperature`` but 1 (the reasoning guide's unsupported parameters).

Simplified (not OpenAI's exact wording): the message of a schema refusal names the first
rule broken only; the fake's tokens are words, punctuation runs and spaces, not BPE pieces.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .api_error import ApiError

SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FORMAT_TYPES = ("text", "json_object", "json_schema")
_TOKEN = re.compile(r"\w+|[^\w\s]+|\s+")


def check_response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's strict JSON schema if it asks for one; raises ApiError for a malformed format."""
    form = body.get("response_format")
    if form is None:
        return None
    if not isinstance(form, dict) or form.get("type") not in FORMAT_TYPES:
        kind = form.get("type") if isinstance(form, dict) else form
        raise ApiError(400, f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and "
                       "'json_schema'.", param="response_format.type", code="invalid_value")
    if form["type"] == "json_object":
        if not any("json" in json.dumps(m.get("content", "")).lower() for m in body.get("messages") or []):
            raise ApiError(400, "'messages' must contain the word 'json' in some form, to use 'response_format' "
                           "of type 'json_object'.", param="messages")
        return None
    if form["type"] == "text":
        return None
    spec = form.get("json_schema")
    if not isinstance(spec, dict):
        raise ApiError(400, "Missing required parameter: 'response_format.json_schema'.",
                       param="response_format.json_schema", code="missing_required_parameter")
    extra = sorted(set(spec) - {"name", "description", "schema", "strict"})
    if extra:
        raise ApiError(400, f"Unknown parameter: 'response_format.json_schema.{extra[0]}'.",
                       param=f"response_format.json_schema.{extra[0]}", code="unknown_parameter")
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        raise ApiError(400, "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a "
                       "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                       param="response_format.json_schema.name", code="invalid_value")
    schema = spec.get("schema", {})
    if not spec.get("strict"):
        return None
    problem = strict_problem(schema)
    if problem:
        raise ApiError(400, f"Invalid schema for response_format '{name}': {problem}",
                       param="response_format", code="invalid_json_schema")
    return schema


def strict_problem(schema: Any, context: tuple[str, ...] = ()) -> str | None:
    """What breaks strict mode's rules in `schema`, or None."""
    if not isinstance(schema, dict):
        return f"In context={context}, schema must be a JSON Schema object."
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if not context and kinds != ["object"]:
        return "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"" + str(schema.get("type")) + "\"'."
    if "object" in kinds:
        if schema.get("additionalProperties") is not False:
            return f"In context={context}, 'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        missing = [key for key in properties if key not in (schema.get("required") or [])]
        if missing:
            return (f"In context={context}, 'required' is required to be supplied and to be an array including "
                    f"every key in properties. Missing '{missing[0]}'.")
        for key, member in properties.items():
            problem = strict_problem(member, (*context, "properties", key))
            if problem:
                return problem
    return None


def default_instance(schema: dict[str, Any]) -> Any:
    """What a model says when it has nothing to add: the least value of each member (null where allowed)."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "null" in kinds and "object" not in kinds:
        return None
    if "object" in kinds:
        return {key: default_instance(member) for key, member in (schema.get("properties") or {}).items()}
    return {"boolean": False, "integer": 0, "number": 0, "string": "", "array": []}.get(kinds[0])


def check_sampling(body: dict[str, Any], reasoning: bool) -> None:
    """`logprobs`, `top_logprobs` and, for a reasoning model, `temperature`, as OpenAI takes them."""
    top = body.get("top_logprobs")
    if reasoning:
        for name in ("logprobs", "top_logprobs"):
            if body.get(name) not in (None, False):
                raise ApiError(400, f"Unsupported parameter: '{name}' is not supported with this model.",
                               param=name, code="unsupported_parameter")
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            raise ApiError(400, f"Unsupported value: 'temperature' does not support {temperature} with this model. "
                           "Only the default (1) value is supported.", param="temperature", code="unsupported_value")
    if top is None:
        return
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
        raise ApiError(400, f"Invalid 'top_logprobs': expected an integer from 0 to 20, but got {top!r} instead.",
                       param="top_logprobs", code="invalid_value")
    if not body.get("logprobs"):
        raise ApiError(400, "Invalid value for 'top_logprobs': 'logprobs' must be set to true when using "
                       "'top_logprobs'.", param="top_logprobs", code="invalid_value")


def logprobs_of(text: str, p_true: float, top: int) -> dict[str, Any]:
    """`choices[].logprobs` for `text`: each token sure, but for a "true" or "false", which the model
    chose with `p_true` for "true" (its alternative the other word)."""
    content = []
    for token in _TOKEN.findall(text):
        if token in ("true", "false"):
            p = p_true if token == "true" else 1 - p_true
            alternatives = [(token, p), ("false" if token == "true" else "true", 1 - p)]
        else:
            alternatives = [(token, 1.0)]
        logprob = lambda p: math.log(max(p, 1e-9))  # noqa: E731
        content.append({"token": token, "logprob": logprob(alternatives[0][1]), "bytes": list(token.encode()),
                        "top_logprobs": [{"token": t, "logprob": logprob(p), "bytes": list(t.encode())}
                                         for t, p in sorted(alternatives, key=lambda a: -a[1])[:top]]})
    return {"content": content, "refusal": None}
