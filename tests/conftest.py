"""Shared fixtures: offline environment, a tiny random-init model, a tiny study config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def demo_texts() -> list[str]:
    texts = []
    for name in ("questions.jsonl", "sft.jsonl", "preferences.jsonl"):
        for line in (REPO / "data" / "demo" / name).read_text().splitlines():
            texts.append(line)
    return texts


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", demo_texts())


def tiny_config(model_dir: Path, **overrides) -> dict:
    """A whole study on the tiny model: 11 topics x 2 questions, SFT and DPO, 2 checkpoints each."""
    cfg = {
        "models": {"tiny": {"source": "local", "path": str(model_dir), "prompt_format": "plain"}},
        "datasets": {
            "demo-instruct": {"kind": "sft", "source": "jsonl", "path": str(REPO / "data/demo/sft.jsonl")},
            "demo-support": {"kind": "preference", "source": "jsonl", "path": str(REPO / "data/demo/preferences.jsonl")},
        },
        "questions": {"source": "file", "path": str(REPO / "data/demo/questions.jsonl"), "per_category": 2},
        "training": {
            "sft": {"learning_rate": 1e-3, "global_batch_size": 8, "per_device_batch_size": 8, "max_length": 128,
                    "schedule_steps": 12, "bf16": False},
            "dpo": {"learning_rate": 1e-3, "global_batch_size": 4, "per_device_batch_size": 4, "max_length": 128,
                    "schedule_steps": 12, "bf16": False},
        },
        "runs": [
            {"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 4},
            {"base": "tiny", "sft": "demo-instruct", "algorithm": "dpo", "preference": "demo-support", "every": 2, "max_steps": 4},
        ],
        "generation": {"samples": 2, "max_new_tokens": 8, "batch_size": 32, "dtype": "float32"},
        "judge": {"backend": "local", "model": "tiny", "batch_size": 32},
        "drift": {"bootstrap_resamples": 200},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A real OpenAI-compatible server on loopback (tests/llm_server.py: llama.cpp serving SmolLM2
    as "smollm2") with a fresh API key; skips where llama-cpp-python is missing."""
    import secrets

    from llm_server import LlamaServer, missing_server_dependency

    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = LlamaServer(tmp_path_factory.mktemp("server") / "server.log", alias="smollm2",
                      api_key="sk-loopback-" + secrets.token_hex(12)).start()
    yield srv
    srv.stop()


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch working directory holding a copy of the workflow (Snakefile, rules, data)."""
    for item in ("Snakefile", "workflow", "profiles", "data", "envs", "configs"):
        src = REPO / item
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, tmp_path / item, symlinks=True)
        else:
            shutil.copy(src, tmp_path / item)
    (tmp_path / "config").mkdir()
    return tmp_path


def write_config(workdir: Path, cfg: dict, name: str = "config.yaml") -> Path:
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def no_network_prefix() -> list[str]:
    """`unshare -n` (a process without any network) where this machine allows it."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True) if shutil.which("unshare") else None
    return ["unshare", "-n"] if probe is not None and probe.returncode == 0 else []


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200,
              prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(prefix or []), sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles/local"), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str, prefix: list[str] | None = None) -> dict[str, int]:
    """Job counts per rule that a dry run would execute ({} when nothing is to be done)."""
    proc = snakemake(workdir, *args, "-n", "--quiet", "rules", prefix=prefix)
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts
