"""Training segments through the Snakemake rules: every algorithm, extension, kill -9."""

from __future__ import annotations

import subprocess

import pytest
from safetensors.torch import load_file

from conftest import kill9_when, planned_jobs, snakemake, start_snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow

ALGORITHMS = ("ppo", "dpo", "simpo")


def _config(tiny_model, sft_steps=2, po_steps=2):
    cfg = tiny_config(tiny_model)
    small = {"learning_rate": 1e-3, "global_batch_size": 4, "per_device_batch_size": 4, "max_length": 96,
             "schedule_steps": 8, "bf16": False}
    cfg["training"] = {"sft": {**small, "global_batch_size": 8, "per_device_batch_size": 8},
                       "dpo": small, "simpo": small, "reward": {**small, "schedule_steps": 2, "max_length": 512},
                       "ppo": {**small, "response_length": 8, "num_ppo_epochs": 1}}
    cfg["runs"] = [{"base": "tiny", "sft": "demo-instruct", "every": 1, "max_steps": sft_steps}] + [
        {"base": "tiny", "sft": "demo-instruct", "algorithm": a, "preference": "demo-support", "every": 1,
         "max_steps": po_steps} for a in ALGORITHMS]
    return cfg


def _final(algorithm, step):
    return f"results/models/tiny/sft-demo-instruct/{algorithm}-demo-support/checkpoint-{step}"


def test_every_algorithm_runs_two_chained_segments(workdir, tiny_model):
    write_config(workdir, _config(tiny_model))
    targets = [_final(a, 2) for a in ALGORITHMS]
    assert planned_jobs(workdir, *targets) == {
        "import_base_model": 1, "prepare_dataset": 2, "sft_segment": 2, "reward_model": 1, "po_segment": 6}
    snakemake(workdir, *targets)
    sft = "results/models/tiny/sft-demo-instruct"
    for a in ALGORITHMS:
        for step in (1, 2):
            assert (workdir / _final(a, step) / "model.safetensors").exists()
    assert (workdir / _final("ppo", 2) / "value_model" / "model.safetensors").exists()
    # optimizer_state: last (the default) -- only the newest checkpoint of each run keeps it
    with_state = sorted(str(p.parent.relative_to(workdir)) for p in workdir.glob("results/models/**/optimizer.pt"))
    assert with_state == sorted([f"{sft}/checkpoint-2", *(_final(a, 2) for a in ALGORITHMS)])
    assert planned_jobs(workdir, *targets) == {}, "dropping optimizer state from an input made a job stale"

    # Extending one PO run by one checkpoint retrains only that segment, resumed with its state.
    cfg = _config(tiny_model)
    cfg["runs"][2]["max_steps"] = 3  # dpo
    write_config(workdir, cfg)
    assert planned_jobs(workdir, _final("dpo", 3)) == {"po_segment": 1}
    snakemake(workdir, _final("dpo", 3))
    assert not (workdir / _final("dpo", 2) / "optimizer.pt").exists()
    assert (workdir / _final("dpo", 3) / "optimizer.pt").exists()
    assert planned_jobs(workdir, *targets, _final("dpo", 3)) == {}

    # optimizer_state: none -- not even the final checkpoint keeps it (changing it reruns nothing) ...
    cfg["training"]["optimizer_state"] = "none"
    cfg["runs"][2]["max_steps"] = 4
    write_config(workdir, cfg)
    assert planned_jobs(workdir, _final("dpo", 4)) == {"po_segment": 1}
    snakemake(workdir, _final("dpo", 4))
    assert not list((workdir / _final("dpo", 4)).glob("optimizer*"))
    # ... so the run cannot be extended exactly, and the error says which key decides that
    cfg["runs"][2]["max_steps"] = 5
    write_config(workdir, cfg)
    failed = snakemake(workdir, _final("dpo", 5), check=False)
    assert failed.returncode != 0
    log = (workdir / "logs/train/tiny/sft-demo-instruct/dpo-demo-support/checkpoint-5.log").read_text()
    assert "holds no optimizer state (training.optimizer_state: none)" in log
    assert (workdir / _final("dpo", 4) / "model.safetensors").exists(), "a failed extension lost a checkpoint"


def test_kill_9_mid_segment_keeps_finished_checkpoints(workdir, tiny_model, tmp_path):
    cfg = _config(tiny_model, sft_steps=3)
    cfg["runs"] = cfg["runs"][:1]
    write_config(workdir, cfg)
    target = "results/models/tiny/sft-demo-instruct/checkpoint-3"
    snakemake(workdir, "results/models/tiny/sft-demo-instruct/checkpoint-1")
    first = workdir / "results/models/tiny/sft-demo-instruct/checkpoint-1"
    first_mtime = (first / "model.safetensors").stat().st_mtime

    proc = start_snakemake(workdir, target)
    log = workdir / "logs/train/tiny/sft-demo-instruct/checkpoint-2.log"
    # kill -9 snakemake and the training job mid-segment
    kill9_when(proc, lambda: log.exists() and "training up to step 2" in log.read_text(), group=True)
    assert not (workdir / "results/models/tiny/sft-demo-instruct/checkpoint-2").exists()

    snakemake(workdir, "--unlock")  # a kill -9 leaves Snakemake's lock behind (as documented)
    snakemake(workdir, target)  # rerun: the interrupted segment is redone, the run completes
    assert (first / "model.safetensors").stat().st_mtime == first_mtime, "a finished checkpoint was redone"

    # equal to an uninterrupted run in a fresh folder
    other = tmp_path / "uninterrupted"
    other.mkdir()
    for item in ("Snakefile", "workflow", "data", "config", "envs", "configs"):
        src = workdir / item
        if src.exists():
            subprocess.run(["cp", "-r", str(src), str(other / item)], check=True)
    snakemake(other, target)
    a = load_file(workdir / target / "model.safetensors")
    b = load_file(other / target / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_lora_runs_through_the_rules_and_its_checkpoints_are_plain_models(workdir, tiny_model):
    """training.<algo>.lora through Snakemake: SFT and DPO train adapters in two segments each,
    and generation and judging read the LoRA checkpoints like any model folder."""
    import polars as pl

    cfg = _config(tiny_model)
    for algorithm in ("sft", "dpo"):
        cfg["training"][algorithm]["lora"] = {"r": 4, "lora_alpha": 8}
    cfg["runs"] = [cfg["runs"][0], cfg["runs"][2]]  # sft, dpo
    write_config(workdir, cfg)
    final = _final("dpo", 2)
    stances = f"results/stances/{final.removeprefix('results/models/')}.parquet"
    snakemake(workdir, stances)
    for ckpt in ("results/models/tiny/sft-demo-instruct/checkpoint-2", final):
        assert (workdir / ckpt / "lora" / "adapter_model.safetensors").exists()
        assert not (workdir / ckpt / "adapter_config.json").exists()
    weights = load_file(workdir / final / "model.safetensors")
    assert not any("lora" in k for k in weights)
    base = load_file(workdir / "results/models/tiny/base/model.safetensors")
    assert max((weights[k] - base[k]).abs().max().item() for k in base) > 1e-6
    table = pl.read_parquet(workdir / stances)
    assert table.height > 0 and table["p_support"].is_not_null().all()
    assert planned_jobs(workdir, stances) == {}
