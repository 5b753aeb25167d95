"""OpenAI-compatible HTTP engine (``vllm serve``, llama.cpp server, any compatible endpoint).

Requests run concurrently on a thread pool (``concurrency``) and are retried with exponential backoff
on connection errors, timeouts, 429 and 5xx.  What bounds the time one item can take:

* ``timeout_s`` limits each network operation of an attempt (connect, each read, each write);
* ``request_deadline_s`` limits the item as a whole: every attempt and every wait between attempts.
  It is enforced at the socket (each read/write/connect gets at most the time left), so a server
  that drips one byte a second is cut off at the deadline; a retry whose wait would end past the
  deadline is not taken and the item fails at once;
* a ``Retry-After`` header (delta-seconds or HTTP-date) on a retried status replaces the backoff,
  capped at ``retry_after_max_s``;
* a circuit breaker shared by all items: after ``breaker_failures`` consecutive connection failures
  or timeouts the server is taken as down and items fail at once (``engine_unavailable: ...``)
  instead of each spending its timeouts and backoff; after ``breaker_cooldown_s`` one probe request
  goes through, and its success closes the circuit.  Any HTTP response counts as "the server is up".

An item that fails yields an ``EngineResult`` with text "" and its message as ``error``; the batch goes on.  A reply whose
``content`` is not a string is such an item error (``bad_response: ...``).  Constrained decoding
sends the answer schema as ``structured_outputs: {json: schema}`` (vLLM) or as OpenAI
``response_format`` json_schema; the bare JSON reply is returned inside ``<answer>`` tags.  The API
key comes from the environment; credentials written into ``base_url`` (``user:pass@``, ``?api_key=``)
are used to authenticate but never appear in the model id or the logs.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from model.engines.base import (
    Engine,
    EngineConfig,
    EngineResult,
    SamplingConfig,
    engine_model_id,
    redact_secrets,
    wrap_answer,
)

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEngine(Engine):
    def __init__(self, config: EngineConfig, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        _redact_httpx_logs()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        base, auth, params = _split_credentials(config.base_url)
        self.client = httpx.Client(
            base_url=base,
            headers=headers,
            auth=auth,
            params=params,
            timeout=httpx.Timeout(config.timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=config.concurrency),
        )
        if transport is None:
            _install_deadline_backend(self.client)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
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
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema},
                }
        return body

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[EngineResult]:
        sampling = sampling or self.config.sampling
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            results = list(pool.map(lambda m: self._one(m, sampling), batch))
        return [EngineResult(text, err) for text, err in results]

    def _one(self, messages: list[dict], sampling: SamplingConfig) -> tuple[str, str | None]:
        cfg = self.config
        body = self.request_body(messages, sampling)
        deadline = time.monotonic() + cfg.request_deadline_s
        attempts = cfg.max_retries + 1
        last = "no attempt"
        for attempt in range(attempts):
            refused = self.breaker.refuse()
            if refused:
                return "", refused
            try:
                response = self._post(body, deadline)
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                self.breaker.failed()
                last = redact_secrets(f"{type(exc).__name__}: {exc}")
                wait = self._backoff(attempt)
            except httpx.HTTPError as exc:  # the server answered, but not in a way we can read
                self.breaker.succeeded()
                last = redact_secrets(f"{type(exc).__name__}: {exc}")
                wait = self._backoff(attempt)
            else:
                self.breaker.succeeded()
                if response.status_code in _RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                    told = retry_after_seconds(response.headers.get("Retry-After"))
                    wait = self._backoff(attempt) if told is None else min(told, cfg.retry_after_max_s)
                elif response.status_code >= 400:
                    return "", redact_secrets(f"HTTP {response.status_code}: {response.text[:200]}")
                else:
                    text, err = _content_of(response)
                    if err:
                        return "", err
                    return (wrap_answer(text) if sampling.constrained else text), None
            if attempt + 1 == attempts:
                break
            if time.monotonic() + wait >= deadline:
                return "", (
                    f"request deadline of {cfg.request_deadline_s:g}s would pass before the retry "
                    f"(wait {wait:.1f}s) after {attempt + 1} attempt(s): {last}"
                )
            time.sleep(wait)
        log.warning("request failed after %d attempts: %s", attempts, last)
        return "", f"failed after {attempts} attempts: {last}"

    def _post(self, body: dict, deadline: float) -> httpx.Response:
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.TimeoutException(f"request deadline of {self.config.request_deadline_s:g}s exceeded")
        _deadline.at, _deadline.total = deadline, self.config.request_deadline_s
        try:
            return self.client.post(
                "/chat/completions", json=body, timeout=httpx.Timeout(min(self.config.timeout_s, left))
            )
        finally:
            _deadline.at = None

    def _backoff(self, attempt: int) -> float:
        return self.config.backoff_s * (2**attempt) * (1 + 0.25 * random.random())

    def close(self) -> None:
        self.client.close()


def _content_of(response: httpx.Response) -> tuple[str, str | None]:
    """The reply's message text, or an error: a malformed reply or a ``content`` that is not a string."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return "", f"bad_response: malformed response: {type(exc).__name__}: {exc}"
    if content is None:  # e.g. a refusal or a tool call: no text, parsed as an empty answer
        return "", None
    if not isinstance(content, str):
        return (
            "",
            f"bad_response: message content is {type(content).__name__}, not a string: {str(content)[:100]}",
        )
    return content, None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait by a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/invalid.

    A date in the past means "now" (0).  Capping is the caller's (``retry_after_max_s``).
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


class CircuitBreaker:
    """Consecutive connection failures across all items; open = fail at once, half-open = one probe."""

    def __init__(self, threshold: int, cooldown_s: float):
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.open_until: float | None = None  # None = closed
        self.probing = False
        self.lock = threading.Lock()

    def refuse(self) -> str | None:
        """None to go ahead (closed, or this caller is the half-open probe), else the error to report."""
        with self.lock:
            if self.open_until is None:
                return None
            if time.monotonic() >= self.open_until and not self.probing:
                self.probing = True
                return None
            return (
                f"engine_unavailable: circuit open after {self.failures} consecutive connection failures "
                f"or timeouts; the server is taken as down (probed again every {self.cooldown_s:g}s)"
            )

    def failed(self) -> None:
        with self.lock:
            self.failures += 1
            if self.probing or (
                self.open_until is None and self.threshold and self.failures >= self.threshold
            ):
                if self.open_until is None:
                    log.error(
                        "engine server unreachable: %d consecutive connection failures or timeouts; "
                        "failing items at once, probing every %gs",
                        self.failures,
                        self.cooldown_s,
                    )
                self.open_until = time.monotonic() + self.cooldown_s
                self.probing = False

    def succeeded(self) -> None:
        with self.lock:
            if self.open_until is not None:
                log.warning("engine server reachable again: circuit closed")
            self.failures, self.open_until, self.probing = 0, None, False


# --- credentials in base_url ----------------------------------------------------------------------


def _split_credentials(base_url: str) -> tuple[str, httpx.BasicAuth | None, list[tuple[str, str]]]:
    """(URL without user info and query, basic auth from the user info, the query as parameters).

    The credentials travel as an ``Authorization`` header and request parameters, so the URL httpx
    works with (and logs) has no password; the query is appended to every request, where a server
    that wants ``?api_key=`` expects it (left in the base URL it would precede the path).
    """
    url = httpx.URL(base_url)
    auth = httpx.BasicAuth(url.username, url.password) if (url.username or url.password) else None
    params = list(url.params.multi_items())
    clean = url.copy_with(username=None, password=None, query=None, fragment=None)
    return str(clean).rstrip("/"), auth, params


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACTING_FILTER = _RedactingFilter()


def _redact_httpx_logs() -> None:
    """httpx logs every request's full URL (query included) at INFO: mask credentials there too."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).addFilter(_REDACTING_FILTER)  # the same filter object is added once


# --- the deadline at the socket ---------------------------------------------------------------------

_deadline = threading.local()  # .at: monotonic deadline of the request this thread is making


def _bounded(timeout: float | None, exc_class) -> float | None:
    """``timeout`` shortened to what is left of this thread's request deadline."""
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise exc_class(f"request deadline of {_deadline.total:g}s exceeded")
    return left if timeout is None else min(timeout, left)


def _install_deadline_backend(client: httpx.Client) -> None:
    """Make every socket operation of ``client``'s transports respect the thread's request deadline.

    httpx has only per-operation timeouts; its connection pools take their network backend from a
    (private) attribute, which is wrapped here.  Without it the deadline still bounds attempts and
    retry waits, and each operation is bounded by ``timeout_s``.
    """
    import httpcore

    transports = [client._transport, *client._mounts.values()]  # private: see the docstring
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            log.warning(
                "httpx %s: cannot bound socket reads by engine.request_deadline_s (attempts and "
                "retry waits still are)",
                httpx.__version__,
            )
            continue
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend, httpcore)


class _DeadlineBackend:
    def __init__(self, inner, httpcore):
        self._inner, self._httpcore = inner, httpcore

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = _bounded(timeout, self._httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _DeadlineStream(stream, self._httpcore)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        timeout = _bounded(timeout, self._httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return _DeadlineStream(stream, self._httpcore)

    def sleep(self, seconds):
        self._inner.sleep(seconds)


class _DeadlineStream:
    def __init__(self, inner, httpcore):
        self._inner, self._httpcore = inner, httpcore

    def read(self, max_bytes, timeout=None):
        return self._inner.read(max_bytes, _bounded(timeout, self._httpcore.ReadTimeout))

    def write(self, buffer, timeout=None):
        self._inner.write(buffer, _bounded(timeout, self._httpcore.WriteTimeout))

    def close(self):
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = _bounded(timeout, self._httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=timeout),
            self._httpcore,
        )

    def get_extra_info(self, info):
        return self._inner.get_extra_info(info)
