"""kill -9 of a V-PRISM LLM stage (the value filter, through the shared cached client on the
tiny model) after a seeded number of answered prompts; the rerun pays only for the prompts not
cached and writes the same table as an uninterrupted run.

batch_size 1: each prompt is generated alone in both runs, so greedy decoding is
bit-identical whichever prompts a resumed run still has to do (with larger batches the
padding of a batch changes with its members, which can flip a near-tie argmax).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from valuedrift.vprism import stages

REPO = Path(__file__).resolve().parents[2]
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


def _entries(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.json")) if cache.exists() else 0


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
    try:
        deadline = time.monotonic() + 300
        while _entries(cache) < kill_after:
            assert job.poll() is None, f"the stage ended early:\n{job.stdout.read().decode()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            job.kill()
        job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    done = _entries(cache)
    assert kill_after <= done < N and not out.exists() and not stats.exists()

    stages.value_filter(_vp(tiny_model, cache), str(prompts), str(out), str(stats))  # the rerun
    assert pl.read_parquet(out).equals(pl.read_parquet(ref_out))
    counts = json.loads(stats.read_text())
    assert _entries(cache) == N
    # the rerun answered from the cache what the killed job had paid for, and generated the rest
    assert counts["cached"] == done and counts["requests"] == N, counts
