"""kill -9 of a V-PRISM LLM stage after a seeded number of answered prompts: the value filter
(through the shared cached client on the tiny model) killed alone, and the rephrase stage
killed with Snakemake through the workflow (below); the rerun pays only for the prompts not
cached and writes the same table as an uninterrupted run.

batch_size 1: each prompt is generated alone in both runs, so greedy decoding is
bit-identical whichever prompts a resumed run still has to do (with larger batches the
padding of a batch changes with its members, which can flip a near-tie argmax).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from conftest import (REPO, cache_entries, copy_workflow, kill9_when, snakemake, snakemake_job, start_snakemake,
                      tiny_config, write_config)
from test_vprism import smollm_dir  # noqa: F401 (fixture: SmolLM2-135M-Instruct as a model folder)
from valuedrift.vprism import stages

N = 16

JOB = textwrap.dedent("""
    import json, sys
    from valuedrift.vprism import stages
    vp, prompts, output, stats = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    stages.value_filter(vp, prompts, output, stats)
""")


def _vp(model, cache):
    return {"llm": {"backend": "transformers", "model_dir": str(model), "batch_size": 1, "cache_dir": str(cache),
                    "progress": False}, "filter": {"max_tokens": 4}}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill9_mid_value_filter_then_rerun_pays_only_the_rest(tiny_model, tmp_path):
    prompts = tmp_path / "selected.parquet"
    pl.DataFrame({"question_id": [f"q{i}" for i in range(N)], "category": ["Immigration Policies"] * N,
                  "question": [f"Should country number {i} let more people in?" for i in range(N)]}
                 ).write_parquet(prompts)
    ref_out, ref_stats = tmp_path / "ref.parquet", tmp_path / "ref.json"
    stages.value_filter(_vp(tiny_model, tmp_path / "ref-cache"), str(prompts), str(ref_out), str(ref_stats))

    cache = tmp_path / "cache"
    out, stats = tmp_path / "filtered.parquet", tmp_path / "stats.json"
    kill_after = 2 + random.Random(17).randrange(N // 2)
    job = subprocess.Popen([sys.executable, "-c", JOB, json.dumps(_vp(tiny_model, cache)), str(prompts), str(out),
                            str(stats)], env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    kill9_when(job, lambda: cache_entries(cache) >= kill_after)
    done = cache_entries(cache)
    assert kill_after <= done < N and not out.exists() and not stats.exists()

    stages.value_filter(_vp(tiny_model, cache), str(prompts), str(out), str(stats))  # the rerun
    assert pl.read_parquet(out).equals(pl.read_parquet(ref_out))
    counts = json.loads(stats.read_text())
    assert cache_entries(cache) == N
    # the rerun answered from the cache what the killed job had paid for, and generated the rest
    assert counts["cached"] == done and counts["requests"] == N, counts


# --------------------------------------------------------------------------- through Snakemake

KILL_PROMPTS = [{"conversation_id": f"c{i}", "opening_prompt": f"I think country number {i} should let more people in"}
                for i in range(6)]
REPHRASED = "results/vprism/rephrased.parquet"


def _rephrase_study(wd, tiny_model, smollm_dir):
    """load -> rephrase on 6 prompts; SmolLM2-135M rephrases (the tiny random model answers
    only newlines, which rephrase drops), one prompt per batch as above."""
    (wd / "data/kill-prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in KILL_PROMPTS))
    vp = {"prompts": {"source": "file", "path": ["data/kill-prompts.jsonl"]},
          "llm": {"backend": "transformers", "model": str(smollm_dir), "batch_size": 1, "progress": False},
          "rephrase": {"max_tokens": 16}}
    write_config(wd, tiny_config(tiny_model, questions={"source": "vprism", "vprism": vp}))
    return wd


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill9_of_snakemake_mid_rephrase_then_unlock_and_rerun(tiny_model, smollm_dir, tmp_path):
    """kill -9 of Snakemake and its V-PRISM rephrase job (the process group) after a seeded
    number of answers; `--unlock`; the same command again: the table equals an uninterrupted
    run's, the answers the killed job had cached are not generated again, the finished load
    stage is not rerun."""
    ref = _rephrase_study(copy_workflow(tmp_path / "uninterrupted"), tiny_model, smollm_dir)
    snakemake(ref, REPHRASED)

    wd = _rephrase_study(copy_workflow(tmp_path / "wd"), tiny_model, smollm_dir)
    cache = wd / "results/cache/llm"
    kill_after = 1 + random.Random("17-rephrase").randrange(len(KILL_PROMPTS) - 2)  # 1..4 of 6
    proc = start_snakemake(wd, REPHRASED)
    snakemake_job(proc, "vprism_rephrase.py")
    kill9_when(proc, lambda: cache_entries(cache) >= kill_after, group=True)
    done = cache_entries(cache)
    assert kill_after <= done < len(KILL_PROMPTS)
    assert not (wd / REPHRASED).exists() and not (wd / "results/vprism/stats/rephrase.json").exists()
    loaded = (wd / "results/vprism/prompts.parquet").stat().st_mtime_ns

    snakemake(wd, "--unlock")  # the killed Snakemake left its lock
    snakemake(wd, REPHRASED)
    assert pl.read_parquet(wd / REPHRASED).equals(pl.read_parquet(ref / REPHRASED))
    assert pl.read_parquet(wd / REPHRASED)["question"].null_count() == 0
    stats = json.loads((wd / "results/vprism/stats/rephrase.json").read_text())
    assert stats["requests"] == len(KILL_PROMPTS) and stats["cached"] == done, stats
    assert stats["llm_calls"] == len(KILL_PROMPTS) - done, stats  # only what the killed job had not cached
    assert (wd / "results/vprism/prompts.parquet").stat().st_mtime_ns == loaded  # load not rerun
    assert cache_entries(cache) == len(KILL_PROMPTS)
