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
import random
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import (cache_entries, copy_workflow, kill9_when, snakemake, snakemake_job, start_snakemake,
                      tiny_config, write_config)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TARGET = "results/stances/tiny/base.parquet"
TABLES = ["results/vprism/questions.parquet", "results/generations/tiny/base.parquet", TARGET]
SEED = 17


def _config(tiny_model):
    cfg = tiny_config(tiny_model)
    # small batches and longer answers: each job runs for a few seconds, so a kill lands inside
    cfg["questions"]["per_category"] = 1
    cfg["generation"].update(samples=2, max_new_tokens=24, batch_size=2)
    cfg["judge"].update(batch_size=2)
    return cfg


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("uninterrupted"))
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


def _cache_entries(wd: Path) -> int:
    return cache_entries(wd / "results/cache/llm")


@pytest.mark.parametrize("victim", ["generate", "judge", "snakemake"])
def test_kill9_then_unlock_and_rerun_gives_the_uninterrupted_tables(victim, reference, tiny_model, tmp_path):
    rng = random.Random(f"{SEED}-{victim}")
    wd = copy_workflow(tmp_path / "wd")
    write_config(wd, _config(tiny_model))
    # the job to interrupt: for the Snakemake kill, the judge (mid-DAG, a job running)
    script = {"generate": "generate.py", "judge": "judge.py", "snakemake": "judge.py"}[victim]
    output = {"generate": "results/generations/tiny/base.parquet"}.get(victim, TARGET)
    proc = start_snakemake(wd, TARGET)
    job = snakemake_job(proc, script)
    # a seeded moment inside the job: after its start-up (imports, model load), while it works
    if script == "judge.py":
        entries = 1 + rng.randrange(8)
        ready, delay = (lambda: _cache_entries(wd) >= entries), 0.0
    else:
        ready, delay = (lambda: True), rng.uniform(2.0, 5.0)
    # the Snakemake kill takes Snakemake and its job at once (the whole process group)
    out = kill9_when(proc, ready, delay=delay, group=victim == "snakemake",
                     job=None if victim == "snakemake" else job)
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
