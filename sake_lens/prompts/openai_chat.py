"""Paraphrases from any OpenAI-compatible ``/v1/chat/completions`` endpoint, standard library only.

Works with OpenAI itself and with local servers that speak the same protocol (vLLM, llama.cpp
server, Ollama, LM Studio, ...). The base URL and key come from the arguments, else from
``SAKE_LENS_OPENAI_BASE_URL`` / ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. Requests are retried
with exponential backoff on HTTP 429, 5xx, timeouts, dropped connections and malformed replies;
other HTTP errors (400, 401, 404, ...) fail at once with a :class:`GenerationError` that says
what to fix. Replies are cached on disk (:class:`~sake_lens.prompts.llm.ResponseCache`), so a
second run with the same request makes no network call.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any

from ..errors import GenerationError
from .llm import LLMParaphraseGenerator, build_instruction
from .request import EditRequest

__all__ = ["OpenAIChatGenerator", "DEFAULT_OPENAI_BASE_URL"]

log = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A failure worth another try (rate limit, server error, timeout, malformed reply)."""


def _resolve_base_url(base_url: str | None) -> str:
    url = (
        base_url
        or os.environ.get("SAKE_LENS_OPENAI_BASE_URL")
        or os.environ.get("OPENAI_BASE_URL")
        or DEFAULT_OPENAI_BASE_URL
    ).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise GenerationError(
            f"The base URL {url!r} must start with http:// or https:// (e.g. "
            "'https://api.openai.com/v1' or 'http://127.0.0.1:8000/v1')."
        )
    return url


def _message_text(body: Any) -> str:
    """The reply text of a chat-completions response body, or raise _Retryable."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _Retryable(f"reply without choices[0].message.content ({exc!r})") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise _Retryable(f"choices[0].message.content is {type(content).__name__}, not text")
    return content


class OpenAIChatGenerator(LLMParaphraseGenerator):
    """Paraphrases from an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://127.0.0.1:8000/v1"``
            (``/chat/completions`` is appended). Default: the environment, then OpenAI.
        api_key: default ``$OPENAI_API_KEY``; may be empty for local servers.
        model: the model name the endpoint expects.
        timeout: seconds per HTTP request.
        max_retries: further attempts after the first one on retryable failures.
        backoff: first wait in seconds; doubles each retry (capped at ``max_backoff``). A
            ``Retry-After`` header is honoured within the same cap.
        temperature, max_tokens: sent with the request.
        **kwargs: :class:`~sake_lens.prompts.llm.LLMParaphraseGenerator` options
            (``per_request`` default 50, ``max_rounds``, ``cache_dir``, ``include_request``).

    The API key is never written to the cache or to logs.
    """

    name = "openai-chat"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float = 1.0,
        max_tokens: int = 3000,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("per_request", 50)
        super().__init__(**kwargs)
        if max_retries < 0 or timeout <= 0 or backoff < 0:
            raise GenerationError(
                f"max_retries={max_retries} must be >= 0, timeout={timeout} > 0 and "
                f"backoff={backoff} >= 0."
            )
        self.base_url = _resolve_base_url(base_url)
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.temperature = temperature
        self.max_tokens = max_tokens

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _config_key(self) -> tuple[Any, ...]:
        return (
            self.url,
            self.model,
            self.temperature,
            self.max_tokens,
            self.per_request,
            self.max_rounds,
            self.include_request,
        )

    def _payload(self, request: EditRequest, seed: int, round_index: int) -> dict[str, Any]:
        content = build_instruction(request, self.per_request, round_index)
        return {
            "url": self.url,
            "body": {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "seed": seed * 1000 + round_index,
            },
        }

    def _post(self, body: dict[str, Any]) -> str:
        """One POST; returns the reply text or raises _Retryable / GenerationError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp else ""
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                err = _Retryable(f"HTTP {exc.code} {detail}".strip())
                err.retry_after = exc.headers.get("Retry-After") if exc.headers else None  # type: ignore[attr-defined]
                raise err from exc
            hint = {
                401: "check OPENAI_API_KEY (or api_key=)",
                403: "the key may lack access to this model",
                404: f"check base_url (now {self.base_url!r}, usually ending in /v1) and model={self.model!r}",
                400: f"the endpoint rejected the request; check model={self.model!r}",
            }.get(exc.code, "see the endpoint's documentation")
            raise GenerationError(
                f"{self.url} answered HTTP {exc.code}: {detail or exc.reason}. Fix: {hint}."
            ) from exc
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from exc
        try:
            body_json = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Retryable(f"reply is not JSON ({raw[:80]!r})") from exc
        return _message_text(body_json)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff * (2**attempt), self.max_backoff)
        if retry_after:
            try:
                delay = min(max(delay, float(retry_after)), self.max_backoff)
            except ValueError:
                pass
        return delay

    def _complete(self, payload: dict[str, Any]) -> str:
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(payload["body"])
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.max_retries:
                    break
                delay = self._wait(attempt, getattr(exc, "retry_after", None))
                log.info("Retrying %s in %.2f s (%s)", self.url, delay, last)
                time.sleep(delay)
        raise GenerationError(
            f"{self.url} failed {self.max_retries + 1} time(s); last error: {last}. Check that "
            "the server is up and speaks the OpenAI chat-completions protocol, or raise "
            "max_retries / timeout."
        )
