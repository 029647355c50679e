"""kill -9 mid-DAG, then the documented recovery (``snakemake --unlock``) and a rerun:
the final tables equal an uninterrupted run's, nothing finished is rebuilt, and no cached
judge call is paid for again.

The DAG is the smallest real one: import the tiny base model, build the questions,
generate, judge with the local backend (the tiny model judging itself). Three kills,
each at a seeded random moment inside its target: the generation job alone, the judge
job alone, and the Snakemake process itself with its running job (the whole process
group, as a node failure or ``scancel`` does). Training-segment kills are in
tests/test_training_workflow.py; the API judge's in tests/test_openai_judge.py.

Tolerance: questions and generations must be *equal* (same rows, same values: seeded
sampling, bit-identical on CPU). Stance probabilities within 1e-5: a resumed judge job
scores only the uncached responses, so its batches (and their padding) differ from the
uninterrupted run's, which moves the float32 logits in the last digits.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from conftest import REPO, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TARGET = "results/stances/tiny/base.parquet"
TABLES = ["results/vprism/questions.parquet", "results/generations/tiny/base.parquet", TARGET]
SEED = 17


def _workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "profiles", "data", "envs", "configs"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, symlinks=True)
        elif src.exists():
            shutil.copy(src, dest / item)
    (dest / "config").mkdir()
    return dest


def _config(tiny_model):
    cfg = tiny_config(tiny_model)
    # small batches and longer answers: each job runs for a few seconds, so a kill lands inside
    cfg["questions"]["per_category"] = 1
    cfg["generation"].update(samples=2, max_new_tokens=24, batch_size=2)
    cfg["judge"].update(batch_size=2)
    return cfg


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    wd = _workflow_copy(tmp_path_factory.mktemp("uninterrupted"))
    write_config(wd, _config(tiny_model))
    snakemake(wd, TARGET)
    return {t: pl.read_parquet(wd / t) for t in TABLES}


STANCE_TOL = 1e-5


def _assert_same_table(got: pl.DataFrame, want: pl.DataFrame, name: str) -> None:
    assert got.columns == want.columns and got.height == want.height, name
    floats = [c for c, t in want.schema.items() if t.is_float()]
    exact = [c for c in want.columns if c not in floats]
    assert got.select(exact).equals(want.select(exact)), f"{name}: non-float columns differ"
    if name != TARGET:
        assert got.equals(want), f"{name} differs from the uninterrupted run"
        return
    diff = max((got[c] - want[c]).abs().max() or 0.0 for c in floats)
    assert diff <= STANCE_TOL, f"{name}: stance probabilities differ by {diff:g}"


def _job(snake: psutil.Process, script: str) -> psutil.Process | None:
    for child in snake.children(recursive=True):
        try:
            if any(script in part for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _cache_entries(wd: Path) -> int:
    root = wd / "results/cache/llm"
    return sum(1 for _ in root.rglob("*.json")) if root.exists() else 0


@pytest.mark.parametrize("victim", ["generate", "judge", "snakemake"])
def test_kill9_then_unlock_and_rerun_gives_the_uninterrupted_tables(victim, reference, tiny_model, tmp_path):
    rng = random.Random(f"{SEED}-{victim}")
    wd = _workflow_copy(tmp_path / "wd")
    write_config(wd, _config(tiny_model))
    # the job to interrupt: for the Snakemake kill, the judge (mid-DAG, a job running)
    script = {"generate": "generate.py", "judge": "judge.py", "snakemake": "judge.py"}[victim]
    output = {"generate": "results/generations/tiny/base.parquet"}.get(victim, TARGET)
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles/local"), TARGET]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    snake = psutil.Process(proc.pid)
    deadline = time.monotonic() + 600
    job = None
    while job is None:
        assert proc.poll() is None, f"snakemake ended before the {script} job ran:\n{proc.stdout.read().decode()[-3000:]}"
        assert time.monotonic() < deadline
        job = _job(snake, script)
        time.sleep(0.02)
    # a seeded moment inside the job: after its start-up (imports, model load), while it works
    if script == "judge.py":
        while _cache_entries(wd) < 1 + rng.randrange(8) and job.is_running() and proc.poll() is None:
            time.sleep(0.01)
    else:
        time.sleep(rng.uniform(2.0, 5.0))
    assert not (wd / output).exists(), "the job finished before the kill: make it slower"
    if victim == "snakemake":
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job, at once
    else:
        for p in [job, *job.children(recursive=True)]:
            p.send_signal(signal.SIGKILL)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode != 0
    assert not (wd / output).exists(), "a killed job's output must not exist"
    before = {t: (wd / t).stat().st_mtime_ns for t in TABLES if (wd / t).exists()}
    cached_before = _cache_entries(wd)

    snakemake(wd, "--unlock")  # the documented recovery (needed after the Snakemake kill)
    rerun_started = time.time()
    snakemake(wd, TARGET)

    for table, want in reference.items():
        _assert_same_table(pl.read_parquet(wd / table), want, table)
    for table, mtime in before.items():  # what was finished before the kill is not rebuilt
        assert (wd / table).stat().st_mtime_ns == mtime, f"{table} was rebuilt"
    accounting = json.loads((wd / "results/stances/tiny/base.accounting.json").read_text())
    assert (wd / "results/stances/tiny/base.accounting.json").stat().st_mtime >= rerun_started
    total = reference[TARGET].height
    if victim != "generate":  # the judge had cached part of its work: the rerun pays only the rest
        assert cached_before >= 1
        assert accounting["cache_hits"] == cached_before and accounting["calls"] == total - cached_before, \
            (accounting, cached_before, out[-2000:])
    assert _cache_entries(wd) == total
