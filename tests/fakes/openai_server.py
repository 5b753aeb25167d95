"""A local fake of an OpenAI-compatible chat server, answering as a rule baseline would.

stdlib ``http.server`` on 127.0.0.1 with an ephemeral port, threaded, started/stopped by the test.
``POST /v1/chat/completions`` answers with the completion of a rule engine (``rule_all_drugs`` by
default) for the sentence and hints of the request's messages (read back from the prompt text), in OpenAI's response layout, so a sweep through the ``openai``
engine gets real, parseable answers.  ``down = True`` simulates an outage: every request is answered
503 until it is set back to False; ``fail_if = "text"`` answers 503 to the requests whose messages
contain that text (a partial outage).  Every request is recorded (path, status sent).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, rule: str = "rule_all_drugs"):
        self.down = False
        self.fail_if: str | None = None
        self.requests: list[tuple[str, int]] = []
        self._rule = rule
        self._engine = None
        self._lock = threading.Lock()
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, messages: list[dict]) -> str:
        from model.engines import EngineConfig, create_engine
        from model.items import ExtractionItem, Prompt
        from tests.prompt_fields import read_prompt_fields

        fields = read_prompt_fields(messages)  # the server sees text only, as a served model does
        prompt = Prompt(messages, ExtractionItem(fields["sentence"]), tuple(fields["hints"]))
        with self._lock:  # one rule engine (and drug matcher) for the server, used by one thread at a time
            if self._engine is None:
                self._engine = create_engine(EngineConfig(kind=self._rule))
            (result,) = self._engine.complete([prompt])
        if result.error:
            raise ValueError(result.error)
        return result.text

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((path, status))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.fake.down or (self.fake.fail_if and self.fake.fail_if in body.decode("utf-8", "replace")):
            return self._send(503, {"error": {"message": "service unavailable (fake outage)"}})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            request = json.loads(body)
            content = self.fake.answer(request["messages"])
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"message": str(exc)}})
        self._send(
            200,
            {
                "object": "chat.completion",
                "model": request.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            },
        )

    def _send(self, status: int, payload: dict) -> None:
        self.fake.record(self.path, status)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
