"""Engines with fakes: a tiny in-test transformers model, a fake vllm module, a local HTTP server, rules."""

from __future__ import annotations

import json
import sys
import threading
import types
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from model.engines import EngineConfig, SamplingConfig, create_engine
from model.items import ExtractionItem, Prompt
from model.parsing import parse_completion
from model.prompting import PromptConfig, build_messages

SENT = "Cisplatin plus gemcitabine improved survival , whereas docetaxel alone did not ."


def msgs(sentence=SENT, **kw):
    return build_messages(sentence, "Abstract text. " + sentence, PromptConfig(**kw))


def texts(results):
    """The completion texts of engine results."""
    return [r.text for r in results]


# --- transformers: batched left padding on a tiny model built here -----------------------------------


@pytest.fixture(scope="module")
def tiny_engine():
    from model.engines.transformers_engine import TransformersEngine
    from training.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    return TransformersEngine(EngineConfig(batch_size=4), model=model, tokenizer=tok)


def test_batched_left_padded_generation_equals_one_by_one(tiny_engine):
    batch = [
        msgs("Paclitaxel plus carboplatin ."),
        msgs(),
        msgs("A much longer sentence about docetaxel and doxorubicin combined with cyclophosphamide ."),
    ]
    sampling = SamplingConfig(max_new_tokens=8)
    results = tiny_engine.generate(batch, sampling)
    together = texts(results)
    assert [r.error for r in results] == [None] * 3
    alone = [tiny_engine.generate([m], sampling)[0].text for m in batch]
    assert tiny_engine.tokenizer.padding_side == "left"
    assert together == alone and any(together)  # padding must not change what a row generates
    assert tiny_engine.stats["generated_tokens"] > 0


def test_static_cache_generates_what_the_dynamic_cache_does(tiny_engine):
    from model.engines.transformers_engine import TransformersEngine

    static = TransformersEngine(
        EngineConfig(batch_size=4, cache="static"), model=tiny_engine.model, tokenizer=tiny_engine.tokenizer
    )
    batch = [
        msgs("Paclitaxel plus carboplatin ."),
        msgs("Docetaxel and doxorubicin combined with cyclophosphamide ."),
    ]
    sampling = SamplingConfig(max_new_tokens=8)
    assert texts(static.generate(batch, sampling)) == texts(tiny_engine.generate(batch, sampling))


def test_sampling_is_seeded(tiny_engine):
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=3)
    assert texts(tiny_engine.generate([msgs()], sampling)) == texts(tiny_engine.generate([msgs()], sampling))


# --- vLLM with a fake module ----------------------------------------------------------------------------


@pytest.fixture
def fake_vllm(monkeypatch):
    calls = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class StructuredOutputsParams:
        def __init__(self, json=None, **kw):
            self.json = json

    class LLM:
        def __init__(self, **kw):
            calls["init"] = kw

        def chat(self, batch, params, use_tqdm=False, **kw):
            calls["chat"] = (batch, params, kw)
            out = types.SimpleNamespace(text='[{"type": "NO_COMB", "ent_set": []}]')
            return [types.SimpleNamespace(outputs=[out]) for _ in batch]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.StructuredOutputsParams, sp.SamplingParams = StructuredOutputsParams, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    yield calls
    from model.engines import vllm_engine

    vllm_engine._ACTIVE.clear()


def test_vllm_engine_uses_structured_outputs(fake_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg = EngineConfig(kind="vllm", model=str(tmp_path), tensor_parallel_size=2)
    engine = create_engine(cfg)
    out = texts(engine.generate([msgs(), msgs()], SamplingConfig(max_new_tokens=32, constrained=True)))
    assert fake_vllm["init"]["tensor_parallel_size"] == 2 and fake_vllm["init"]["model"] == str(tmp_path)
    params = fake_vllm["chat"][1]
    assert params.kw["max_tokens"] == 32 and "guided_json" not in params.kw
    assert params.kw["structured_outputs"].json["type"] == "array"
    assert [parse_completion(t).status for t in out] == ["ok", "ok"]
    with pytest.raises(ValueError, match="one engine per process"):
        create_engine(cfg)
    engine.close()


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ValueError, match="vllm package"):
        create_engine(EngineConfig(kind="vllm"))


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_real_generation():  # pragma: no cover - needs a GPU and the [vllm] extra
    engine = create_engine(EngineConfig(kind="vllm", gpu_memory_utilization=0.3))
    out = texts(engine.generate([msgs()], SamplingConfig(max_new_tokens=48, constrained=True)))
    assert parse_completion(out[0]).status in ("ok", "repaired")
    engine.close()


# --- OpenAI-compatible HTTP against a local server ----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    fail_first: ClassVar[dict] = {}
    bodies: ClassVar[list] = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.bodies.append(body)
        user = body["messages"][-1]["content"]
        if "ALWAYS-FAIL" in user:
            return self._send(500, {"error": "boom"})
        if "FLAKY" in user and not _Handler.fail_first.get(user):
            _Handler.fail_first[user] = True
            return self._send(503, {"error": "busy"})
        content = '[{"type": "POS", "ent_set": ["Cisplatin", "gemcitabine"]}]'
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    _Handler.bodies.clear()
    _Handler.fail_first.clear()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_openai_engine_concurrency_retries_and_structured_fields(server):
    cfg = EngineConfig(
        kind="openai", base_url=server, model="m", concurrency=4, max_retries=2, backoff_s=0.01, timeout_s=5
    )
    engine = create_engine(cfg)
    batch = [msgs(), msgs(SENT + " FLAKY"), msgs(SENT + " ALWAYS-FAIL"), msgs()]
    results = engine.generate(batch, SamplingConfig(max_new_tokens=16, constrained=True))
    out, errors = texts(results), [r.error for r in results]
    assert out[2] == "" and "failed after 3 attempts" in errors[2]
    assert errors[0] is None and errors[1] is None
    p = parse_completion(out[1], SENT)
    assert p.status == "ok" and p.relations[0].drugs == ("Cisplatin", "gemcitabine")
    body = _Handler.bodies[0]
    assert body["max_tokens"] == 16 and body["structured_outputs"]["json"]["type"] == "array"
    engine.close()


def test_openai_response_format_variant(server):
    engine = create_engine(
        EngineConfig(kind="openai", base_url=server, structured_output_field="response_format")
    )
    engine.generate([msgs()], SamplingConfig(constrained=True))
    assert _Handler.bodies[-1]["response_format"]["type"] == "json_schema"
    engine.close()


# --- rule baselines with a fake matcher ----------------------------------------------------------------


@dataclass
class FakeMention:
    start: int
    end: int
    surface: str
    id: str
    preferred_name: str
    is_class: bool = False


class FakeMatcher:
    VOCAB = ("cisplatin", "gemcitabine", "docetaxel", "antibiotics")

    def find(self, text):
        out, low = [], text.lower()
        for name in self.VOCAB:
            i = low.find(name)
            if i >= 0:
                out.append(
                    FakeMention(i, i + len(name), text[i : i + len(name)], name, name, name == "antibiotics")
                )
        return out


@pytest.mark.parametrize(
    "kind, sentence, expected",
    [
        ("rule_no_comb", SENT, []),
        ("rule_all_drugs", SENT, [("POS", ("Cisplatin", "gemcitabine", "docetaxel"))]),
        ("rule_all_drugs", "Cisplatin and antibiotics .", []),  # a drug class is not a drug
        ("rule_cue", SENT, [("POS", ("Cisplatin", "gemcitabine", "docetaxel"))]),
        ("rule_cue", "Cisplatin or docetaxel was given .", []),
        (
            "rule_cue",
            "Cisplatin combined with docetaxel increased toxicity .",
            [("NEG", ("Cisplatin", "docetaxel"))],
        ),
        (
            "rule_cue",
            "Cisplatin was given with docetaxel in 20 patients .",
            [("COMB", ("Cisplatin", "docetaxel"))],
        ),
    ],
)
def test_rule_baselines(kind, sentence, expected):
    engine = create_engine(EngineConfig(kind=kind), matcher=FakeMatcher())
    out = texts(
        engine.complete([Prompt(msgs(sentence), ExtractionItem(sentence, "Abstract text. " + sentence))])
    )
    p = parse_completion(out[0], sentence)
    assert p.status == "ok" and [(r.label, r.drugs) for r in p.relations] == expected


def test_rules_report_items_without_a_sentence_as_item_errors():
    engine = create_engine(EngineConfig(kind="rule_no_comb"), matcher=FakeMatcher())
    results = engine.complete(
        [
            Prompt([{"role": "user", "content": "hello"}], ExtractionItem("")),
            Prompt(msgs(), ExtractionItem(SENT)),
        ]
    )
    out, errors = texts(results), [r.error for r in results]
    assert out[0] == "" and "target sentence" in errors[0] and errors[1] is None
    with pytest.raises(TypeError, match="answers items"):  # rules never read prompt text
        engine.generate([msgs()])


def test_engine_config_validation():
    with pytest.raises(ValueError, match="engine.kind"):
        create_engine(EngineConfig(kind="llama"))
    with pytest.raises(ValueError, match="max_new_tokens"):
        EngineConfig(sampling=SamplingConfig(max_new_tokens=0)).validate()
    with pytest.raises(ValueError, match="engine.cache"):
        EngineConfig(cache="paged").validate()
