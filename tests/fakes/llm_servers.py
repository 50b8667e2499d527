"""Fakes of the OpenAI-compatible LLM servers that differ from OpenAI: Groq, Azure OpenAI and Ollama.

Each is the fake OpenAI API (tests/fakes/openai_api.py, which checks every
request against OpenAI's contract) with the server's own paths, authentication
and refusals, as their documentation gives them:

- **Groq** (console.groq.com/docs/openai): the API lives under ``/openai/v1``. It
  refuses with 400 what it does not support: ``logprobs``, ``logit_bias``,
  ``top_logprobs``, ``n`` other than 1, a message's ``name``; ``reasoning_effort``
  on a model that does not reason. A wrong key is 401 "Invalid API Key". A tool call
  its model botched is 400 ``tool_use_failed`` with the ``failed_generation``
  (`tool_use_failed_next`).
- **Azure OpenAI** (learn.microsoft.com, "Azure OpenAI REST API"): the v1 API under
  ``/openai/v1`` takes the key as a Bearer token; the dated API under
  ``/openai/deployments/<deployment>/chat/completions?api-version=<version>`` takes
  it in ``api-key``. A wrong key is 401 "Access denied due to invalid subscription
  key or wrong API endpoint", an unknown deployment 404 ``DeploymentNotFound``, an
  unknown api-version 404. Its content filter refuses a message with 400
  ``content_filter`` (`content_filter_next`).
- **Ollama** (github.com/ollama/ollama, docs/openai.md): keyless, under ``/v1``; a
  model that is not pulled is 404 "model ... not found, try pulling it first", and a
  model without tool support refuses tools (``refuse_tools``, in the OpenAI fake).
"""
from __future__ import annotations

import re
import threading
from typing import Any

from tests.fakes.openai_api import REASONING_TOKENS, ApiError, FakeOpenAI, RecordedRequest, Response

_local = threading.local()


class FakeGroq(FakeOpenAI):
    url_prefix = "/openai/v1"
    reasoning_models = ("openai/gpt-oss-120b", "openai/gpt-oss-20b", "qwen/qwen3-32b")

    def __init__(self, api_key: str = "gsk_fake_groq_key_0000", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.organization = "org_01jk9x3q2fe7r8t5w0v6m4n2b1"
        self._tool_failures = 0

    def tool_use_failed_next(self, count: int = 1) -> None:
        """Answer the next `count` chat requests that offer tools with Groq's 400 tool_use_failed."""
        self._tool_failures += count

    def _route(self, method: str, path: str) -> Any:
        if method == "POST" and path == "/openai/v1/chat/completions":
            return self._groq_chat
        raise ApiError(404, f"Unknown request URL: {method} {path}. Please check the URL for typos, or see the "
                       "docs at https://console.groq.com/docs/", code="unknown_url")

    def _authenticate(self, headers: dict[str, str]) -> None:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or key.strip() != self.api_key:
            raise ApiError(401, "Invalid API Key", code="invalid_api_key")

    def _reasoning_tokens(self, model: str, effort: Any) -> int:
        """Groq's gpt-oss models reason at low, medium (their default) or high, inside the cap (Groq's
        reasoning docs); qwen3 thinks unless told "none"; `_groq_chat` refuses an effort to any other."""
        if model.startswith("openai/gpt-oss"):
            if effort not in (None, "low", "medium", "high"):
                raise ApiError(400, "reasoning_effort must be one of low, medium, high", param="reasoning_effort")
            return REASONING_TOKENS[effort or "medium"]
        if model in self.reasoning_models:
            return 0 if effort == "none" else REASONING_TOKENS["medium"]
        return 0

    def _groq_chat(self, record: RecordedRequest) -> Response:
        body = self._parse_json(record)
        for name in ("logprobs", "logit_bias", "top_logprobs"):
            if body.get(name) not in (None, False):
                raise ApiError(400, f"'{name}' : not supported", param=name)
        if body.get("n") not in (None, 1):
            raise ApiError(400, "'n' : number must be at most 1", param="n")
        if any(isinstance(m, dict) and "name" in m for m in body.get("messages") or []):
            raise ApiError(400, "'messages.name' : property 'name' is unsupported", param="messages")
        effort = body.get("reasoning_effort")
        if effort is not None and body.get("model") not in self.reasoning_models:
            raise ApiError(400, "reasoning_effort is not supported with this model", param="reasoning_effort")
        if body.get("tools") and self._tool_failures:
            self._tool_failures -= 1
            error = ApiError(400, "Failed to call a function. Please adjust your prompt. See 'failed_generation' "
                             "for more details.", code="tool_use_failed")
            error.extra = {"failed_generation": '<function=list_notes{"query": }</function>'}
            raise error
        return self._chat_checked(record, body)


class FakeAzure(FakeOpenAI):
    """Azure OpenAI: `url` is the resource endpoint (give it `/openai/v1` for the v1 API)."""

    url_prefix = ""
    api_versions = ("2024-10-21", "2024-12-01-preview", "2025-01-01-preview", "2025-03-01-preview",
                    "2025-04-01-preview")

    def __init__(self, api_key: str = "3f2a9c0d8e7b6a5f4e3d2c1b0a9f8e7d", *, deployments: tuple[str, ...] = ("voice-gpt",),
                 **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.deployments = deployments
        self._filtered = 0

    def content_filter_next(self, count: int = 1) -> None:
        """Refuse the next `count` chat requests as Azure's content filter does."""
        self._filtered += count

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        _local.query = path.split("?", 1)[1] if "?" in path else ""
        return super().handle(method, path, headers, body)

    def _authenticate(self, headers: dict[str, str]) -> None:
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        key = headers.get("api-key") or (bearer.strip() if scheme == "Bearer" else "")
        if key != self.api_key:
            raise ApiError(401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                           "provide a valid key for an active subscription and use a correct regional API endpoint "
                           "for your resource.", code="401")

    def _route(self, method: str, path: str) -> Any:
        dated = re.fullmatch(r"/openai/deployments/([^/]+)/chat/completions", path)
        if method == "POST" and path == "/openai/v1/chat/completions":
            return lambda record: self._azure_chat(record, None)
        if method == "POST" and dated:
            version = dict(p.split("=", 1) for p in _local.query.split("&") if "=" in p).get("api-version")
            if version not in self.api_versions:
                raise ApiError(404, "Resource not found", code="404")
            return lambda record: self._azure_chat(record, dated.group(1))
        raise ApiError(404, "Resource not found", code="404")

    def _azure_chat(self, record: RecordedRequest, deployment: str | None) -> Response:
        body = self._parse_json(record)
        name = deployment or body.get("model")
        if name not in self.deployments:
            raise ApiError(404, "The API deployment for this resource does not exist. If you created the "
                           "deployment within the last 5 minutes, please wait a moment and try again.",
                           code="DeploymentNotFound")
        if self._filtered:
            self._filtered -= 1
            error = ApiError(400, "The response was filtered due to the prompt triggering Azure OpenAI's content "
                             "management policy. Please modify your prompt and retry.", code="content_filter",
                             param="prompt")
            error.extra = {"innererror": {"code": "ResponsibleAIPolicyViolation",
                                          "content_filter_result": {"violence": {"filtered": True,
                                                                                 "severity": "medium"}}}}
            raise error
        return self._chat_checked(record, body)


class FakeOllama(FakeOpenAI):
    """Ollama's OpenAI-compatible API: keyless, only the models that were pulled."""

    def __init__(self, *, models: tuple[str, ...] = ("llama3.2",), **kwargs: Any) -> None:
        super().__init__(api_key=None, **kwargs)
        self.models = models

    def _route(self, method: str, path: str) -> Any:
        if method == "POST" and path == "/v1/chat/completions":
            return self._ollama_chat
        raise ApiError(404, "404 page not found", type="api_error")

    def _ollama_chat(self, record: RecordedRequest) -> Response:
        body = self._parse_json(record)
        if body.get("model") not in self.models:
            raise ApiError(404, f"model \"{body.get('model')}\" not found, try pulling it first", type="api_error")
        return self._chat_checked(record, body)
