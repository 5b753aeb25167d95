"""The OpenAI-compatible engine against misbehaving REAL local HTTP servers (127.0.0.1, threads).

Each server is an ``http.server`` started in the test: a slow drip (one byte at a time), 429 with
``Retry-After``, a dead port, a server whose ``content`` is not a string, and one that checks the
credentials carried in ``base_url``.  Timing bounds are generous (several times the configured
limits) and the lower bounds are what the client must wait at least, so they cannot flake.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from datetime import UTC
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from model.engines import EngineConfig, create_engine, engine_model_id
from model.engines.base import public_url, redact_secrets
from model.engines.openai_engine import retry_after_seconds
from model.extraction import ExtractionRunner
from model.prompting import PromptConfig, build_messages
from tests.prompt_fields import read_prompt_fields

SENT = "Cisplatin plus gemcitabine improved survival ."
ANSWER = '<answer>[{"type": "POS", "ent_set": ["Cisplatin", "gemcitabine"]}]</answer>'


def msgs(sentence=SENT):
    return build_messages(sentence, None, PromptConfig())


def _reply(handler, code, payload, headers=()):
    data = json.dumps(payload).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in headers:
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def _ok(handler, content=ANSWER):
    _reply(handler, 200, {"choices": [{"message": {"role": "assistant", "content": content}}]})


def _read_body(handler) -> dict:
    return json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 running ``handle(handler)`` for every POST."""

    def __init__(self, handle, port: int = 0):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = _read_body(self)
                with outer.lock:
                    outer.requests.append(
                        {
                            "t": time.monotonic(),
                            "path": self.path,
                            "body": body,
                            "auth": self.headers.get("Authorization"),
                        }
                    )
                try:
                    handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on us, as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _user_text(body: dict) -> str:
    return read_prompt_fields(body["messages"])["sentence"]


# --- 12: a total deadline per request ----------------------------------------------------------------


def _drip_headers(handler, _body):
    """The status line and headers one byte every 0.1 s (about 8 s in all): no read ever times out."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 60 + b"\r\n\r\n":
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.1)


def _drip_body(handler, _body):
    """Prompt headers, then the body one byte every 0.1 s (about 8 s in all)."""
    data = json.dumps({"choices": [{"message": {"content": ANSWER + " " * 20}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    for byte in data:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.1)


@pytest.mark.parametrize("drip", [_drip_headers, _drip_body], ids=["headers", "body"])
def test_slow_drip_server_is_cut_off_at_the_request_deadline(drip):
    deadline = 1.0
    with _Server(drip) as srv:
        cfg = EngineConfig(
            kind="openai",
            base_url=srv.url,
            timeout_s=0.5,
            request_deadline_s=deadline,
            max_retries=3,
            backoff_s=0.05,
        )
        engine = create_engine(cfg)
        start = time.monotonic()
        results = engine.generate([msgs()])
        out = [r.text for r in results]
        elapsed = time.monotonic() - start
        engine.close()
    # every read got a byte within timeout_s, so only the total deadline can stop it (drip lasts ~8 s)
    assert elapsed < 3 * deadline
    assert out == [""] and "deadline" in results[0].error


def test_deadline_rejects_a_retry_wait_that_would_pass_it():
    def always_429(handler, _body):
        _reply(handler, 429, {"error": "slow down"}, headers=[("Retry-After", "30")])

    with _Server(always_429) as srv:
        engine = create_engine(
            EngineConfig(
                kind="openai", base_url=srv.url, request_deadline_s=2.0, retry_after_max_s=60, max_retries=5
            )
        )
        start = time.monotonic()
        results = engine.generate([msgs()])
        elapsed = time.monotonic() - start
        engine.close()
    assert len(srv.requests) == 1 and elapsed < 2.0
    assert "deadline" in results[0].error and "HTTP 429" in results[0].error


# --- 12: Retry-After ----------------------------------------------------------------------------------


def _retry_after_once(value_for):
    """429 with ``Retry-After: value_for()`` on each prompt's first request, then a good answer."""
    seen: set[str] = set()

    def handle(handler, body):
        user = _user_text(body)
        if user not in seen:
            seen.add(user)
            return _reply(handler, 429, {"error": "rate limited"}, headers=[("Retry-After", value_for())])
        _ok(handler)

    return handle


@pytest.mark.parametrize(
    "value_for, at_least",
    [
        (lambda: "1", 1.0),  # delta-seconds
        (lambda: formatdate(time.time() + 2, usegmt=True), 0.9),  # HTTP-date, 1 s resolution: (1, 2] s away
    ],
    ids=["seconds", "http-date"],
)
def test_429_retry_after_is_waited_then_the_retry_succeeds(value_for, at_least):
    with _Server(_retry_after_once(value_for)) as srv:
        engine = create_engine(
            EngineConfig(
                kind="openai", base_url=srv.url, backoff_s=0.01, max_retries=2, request_deadline_s=20
            )
        )
        results = engine.generate([msgs()])
        out = [r.text for r in results]
        engine.close()
    assert [r.error for r in results] == [None] and out == [ANSWER]
    first, second = srv.requests
    assert at_least <= second["t"] - first["t"] < 10  # backoff alone would retry after 0.01 s


def test_retry_after_is_capped():
    with _Server(_retry_after_once(lambda: "3600")) as srv:
        engine = create_engine(
            EngineConfig(kind="openai", base_url=srv.url, retry_after_max_s=0.3, request_deadline_s=20)
        )
        start = time.monotonic()
        results = engine.generate([msgs()])
        out = [r.text for r in results]
        elapsed = time.monotonic() - start
        engine.close()
    assert out == [ANSWER] and len(srv.requests) == 2 and elapsed < 10
    assert srv.requests[1]["t"] - srv.requests[0]["t"] >= 0.3


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-3", None),  # not delta-seconds
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # 30 s after NOW below
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: retry now
        ("Wednesday, 21-Oct-15 07:28:10 GMT", 10.0),  # RFC 850 form (obsolete, still allowed)
    ],
)
def test_retry_after_parsing(value, expected):
    from datetime import datetime

    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_seconds(value, now=now) == expected


# --- 12: circuit breaker ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_trips_the_breaker_and_a_probe_closes_it_again(monkeypatch):
    real_connect = socket.create_connection
    attempts = []

    def counting_connect(address, *a, **kw):
        attempts.append(address)
        return real_connect(address, *a, **kw)

    monkeypatch.setattr(socket, "create_connection", counting_connect)
    port = _free_port()  # nothing listens there: every connect is refused
    cfg = EngineConfig(
        kind="openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        concurrency=1,
        max_retries=2,
        backoff_s=0.01,
        breaker_failures=3,
        breaker_cooldown_s=0.5,
    )
    engine = create_engine(cfg)
    runner = ExtractionRunner(engine, PromptConfig(), chunk_size=10)
    rows = runner.run([{"id": i, "sentence": f"{SENT} {i}"} for i in range(10)])
    # the first item's 3 attempts open the circuit; the other 9 fail without touching the network
    assert len(attempts) == 3
    assert [r["parse_status"] for r in rows] == ["engine_error"] * 10
    assert "failed after 3 attempts: ConnectError" in rows[0]["parse_reason"]
    assert all(r["parse_reason"].startswith("engine_unavailable:") for r in rows[1:])
    assert "3 consecutive connection failures" in rows[1]["parse_reason"]

    # the server comes back: after the cooldown one probe goes through and closes the circuit
    with _Server(lambda h, b: _ok(h), port=port):
        time.sleep(0.6)
        results = engine.generate([msgs(), msgs()])
        out = [r.text for r in results]
    engine.close()
    assert [r.error for r in results] == [None, None] and out == [ANSWER, ANSWER]
    assert len(attempts) == 3 + 2  # the probe, then the second item (http.server closes each connection)


def test_http_errors_do_not_trip_the_breaker():
    with _Server(lambda h, b: _reply(h, 503, {"error": "busy"})) as srv:
        engine = create_engine(
            EngineConfig(kind="openai", base_url=srv.url, max_retries=1, backoff_s=0.01, breaker_failures=1)
        )
        results = engine.generate([msgs(), msgs()])
        engine.close()
    # a server that answers is up: both items made both attempts
    assert len(srv.requests) == 4 and all("HTTP 503" in e for e in [r.error for r in results])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("request_deadline_s", 0, "request_deadline_s"),
        ("retry_after_max_s", -1, "retry_after_max_s"),
        ("breaker_failures", -1, "breaker_failures"),
        ("breaker_cooldown_s", -0.5, "breaker_cooldown_s"),
        ("backoff_s", -1, "backoff_s"),
    ],
)
def test_failure_handling_settings_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(kind="openai", **{field: value}).validate()


# --- 14: content that is not a string -----------------------------------------------------------------


def test_non_string_content_is_a_per_item_error_row():
    bad = {"NUMBER": 42, "LIST": [{"type": "text", "text": "x"}], "DICT": {"answer": []}}

    def handle(handler, body):
        user = _user_text(body)
        for marker, content in bad.items():
            if marker in user:
                return _ok(handler, content)
        _ok(handler)

    with _Server(handle) as srv:
        engine = create_engine(EngineConfig(kind="openai", base_url=srv.url, max_retries=0))
        runner = ExtractionRunner(engine, PromptConfig())
        items = [
            {"id": 0, "sentence": SENT},
            *({"id": m, "sentence": f"{SENT} {m}"} for m in bad),
            {"id": 4, "sentence": SENT + " again"},
        ]
        rows = runner.run(items)
        engine.close()
    assert [r["id"] for r in rows] == [0, "NUMBER", "LIST", "DICT", 4]
    assert rows[0]["parse_status"] == "ok" and rows[4]["parse_status"] == "ok"
    for row, kind in zip(rows[1:4], ("int", "list", "dict")):
        assert row["parse_status"] == "engine_error" and row["raw_output"] == ""
        assert row["parse_reason"].startswith("bad_response:") and kind in row["parse_reason"]


def test_non_string_content_does_not_sink_the_sweeps_arrow_batch():
    import pyarrow as pa

    from model.extraction import extraction_rows
    from schemas.extraction import EXTRACTIONS

    def handle(handler, body):
        _ok(handler, 7 if "SEVEN" in _user_text(body) else ANSWER)

    with _Server(handle) as srv:
        cfg = EngineConfig(kind="openai", base_url=srv.url, max_retries=0)
        runner = ExtractionRunner(create_engine(cfg), PromptConfig())
        candidates = [
            _candidate(i, SENT + (" SEVEN" if i == 1 else ""), engine_model_id(cfg)) for i in range(3)
        ]
        rows = extraction_rows(candidates, runner, "run-1")
        runner.engine.close()
    table = pa.Table.from_pylist(rows, schema=EXTRACTIONS)  # raised ArrowTypeError before
    assert table.column("parse_status").to_pylist() == ["ok", "engine_error", "ok"]
    assert rows[1]["error"].startswith("engine_error: bad_response:")


def _candidate(i: int, sentence: str, model_id: str) -> dict:
    return {
        "extraction_key": f"k{i}",
        "pmid": str(100 + i),
        "pmid_version": 1,
        "sentence_index": 0,
        "sentence_start": 0,
        "sentence_end": len(sentence),
        "sentence_text": sentence,
        "text_hash": f"h{i}",
        "context": "",
        "mentions": [],
        "model_id": model_id,
        "prompt_version": "p",
    }


# --- 9: credentials in base_url -----------------------------------------------------------------------

USER, PASSWORD, QUERY_KEY = "alice", "pw-Sup3rSecret", "qk-T0pSecret"
SECRETS = (PASSWORD, QUERY_KEY, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


def test_credentials_in_base_url_authenticate_but_never_reach_ids_rows_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # the CLI quiets it; a user's -v setup may not

    def handle(handler, body):
        query = parse_qs(urlsplit(handler.path).query)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if handler.headers.get("Authorization") != expected or query.get("api_key") != [QUERY_KEY]:
            return _reply(handler, 401, {"error": "who are you"})
        if "DOWN" in _user_text(body):
            return _reply(handler, 500, {"error": "boom"})
        _ok(handler)

    with _Server(handle) as srv:
        base = f"http://{USER}:{PASSWORD}@127.0.0.1:{srv.port}/v1?api_key={QUERY_KEY}&api-version=2024-06"
        cfg = EngineConfig(kind="openai", base_url=base, model="m", max_retries=1, backoff_s=0.01)
        engine = create_engine(cfg)
        runner = ExtractionRunner(engine, PromptConfig())
        rows = runner.run([{"id": 1, "sentence": SENT}, {"id": 2, "sentence": SENT + " DOWN"}])

        from jobs.sweep import resolve_model_identity
        from model.extraction import extraction_rows

        model_id, _ = resolve_model_identity(cfg, PromptConfig())  # what sweep_runs and every row store
        sweep_rows = extraction_rows([_candidate(0, SENT, model_id)], runner, "run-1")
        engine.close()

    # the engine still authenticated with both (the server refuses anything else)
    assert rows[0]["parse_status"] == "ok" and sweep_rows[0]["parse_status"] == "ok"
    assert all(r["path"].startswith("/v1/chat/completions?") for r in srv.requests)
    # ... yet no id, row or log line holds a secret
    assert model_id == engine.model_id == f"openai:m@http://127.0.0.1:{srv.port}/v1?api-version=2024-06"
    text = json.dumps(rows) + json.dumps(sweep_rows, default=str) + model_id + caplog.text
    assert "HTTP 500" in rows[1]["parse_reason"] and "request failed" in caplog.text
    assert "chat/completions?api_key=***&api-version=2024-06" in caplog.text  # httpx's request line, masked
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "url, public",
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),  # unchanged: existing ids stay valid
        ("http://u:p@host:8000/v1", "http://host:8000/v1"),
        ("https://token@host/v1", "https://host/v1"),
        ("http://host/v1?api_key=s&x=1", "http://host/v1?x=1"),
        ("http://host/v1?key=s", "http://host/v1"),
        ("http://host/v1?access_token=s&Signature=t&api-version=2", "http://host/v1?api-version=2"),
        ("http://host/v1?model=a&b=", "http://host/v1?model=a&b="),  # nothing secret: kept as written
    ],
)
def test_public_url(url, public):
    assert public_url(url) == public


def test_redact_secrets_in_free_text():
    text = 'POST http://u:p4ss@h:1/v1/chat/completions?api_key=k3y&n=2 "HTTP/1.1 200 OK"; see https://h/x'
    assert redact_secrets(text) == (
        'POST http://***@h:1/v1/chat/completions?api_key=***&n=2 "HTTP/1.1 200 OK"; see https://h/x'
    )
