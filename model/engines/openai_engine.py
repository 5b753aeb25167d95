"""OpenAI-compatible HTTP engine (``vllm serve``, llama.cpp server, any compatible endpoint).

Requests run concurrently on a thread pool (``concurrency``), each with a timeout and retried with
exponential backoff on connection errors, timeouts, 429 and 5xx.  An item that still fails yields ""
and its message in ``last_errors``; the batch goes on.  Constrained decoding sends the answer schema
as ``structured_outputs: {json: schema}`` (vLLM) or as OpenAI ``response_format`` json_schema; the
bare JSON reply is returned inside ``<answer>`` tags.  The API key comes from the environment.
"""

from __future__ import annotations

import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from model.engines.base import Engine, EngineConfig, SamplingConfig, engine_model_id, wrap_answer

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(Exception):
    pass


class OpenAIEngine(Engine):
    def __init__(self, config: EngineConfig, *, transport: httpx.BaseTransport | None = None):
        super().__init__()
        self.config = config
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=config.base_url.rstrip("/"), headers=headers,
                                   timeout=httpx.Timeout(config.timeout_s), transport=transport,
                                   limits=httpx.Limits(max_connections=config.concurrency))
        self.model_id = engine_model_id(config)

    def request_body(self, messages: list[dict], sampling: SamplingConfig) -> dict:
        body = {
            "model": self.config.served_model or self.config.model,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.constrained:
            from model.answer_schema import answer_json_schema

            schema = answer_json_schema()
            if self.config.structured_output_field == "structured_outputs":
                body["structured_outputs"] = {"json": schema}
            else:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "answer", "schema": schema}}
        return body

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[str]:
        sampling = sampling or self.config.sampling
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            results = list(pool.map(lambda m: self._one(m, sampling), batch))
        self.last_errors = [err for _text, err in results]
        return [text for text, _err in results]

    def _one(self, messages: list[dict], sampling: SamplingConfig) -> tuple[str, str | None]:
        body = self.request_body(messages, sampling)
        last = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                delay = self.config.backoff_s * (2 ** (attempt - 1)) * (1 + 0.25 * random.random())
                time.sleep(delay)
            try:
                response = self.client.post("/chat/completions", json=body)
            except httpx.HTTPError as exc:  # connect errors, timeouts
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                return "", f"HTTP {response.status_code}: {response.text[:200]}"
            try:
                text = response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return "", f"malformed response: {exc}"
            return (wrap_answer(text) if sampling.constrained else text), None
        log.warning("request failed after %d attempts: %s", self.config.max_retries + 1, last)
        return "", f"failed after {self.config.max_retries + 1} attempts: {last}"

    def close(self) -> None:
        self.client.close()
