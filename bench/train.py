"""Training throughput benchmark -> results/bench/train.json.

Real tokens per second of each trl trainer on the demo model (SmolLM2-135M-Instruct) with
the demo's settings (config/config.yaml: batch sizes, max length, bf16 autocast on CPU)
and the demo's authored data, with padding-free batching / packing on vs off where trl
1.12 offers it (SFT: padding_free, packing; DPO: padding_free). The other trainers have
no padding-free mode in trl 1.12 and are measured as they run.

"Tokens" are the tokens the trainer's dataset holds (prompt + completion; a preference
pair counts its prompt twice, once with each answer), excluding padding, so padding work
never counts as throughput. Each measurement is one epoch over the data (every token
once) timed around ``trainer.train()`` only (model load and tokenisation excluded).
Variants run interleaved and repeated (this machine's load is noisy); reported: the best
run's tokens/s and tokens per CPU-second, and on/off ratios from the same run.

What padding-free batching can save depends on how unequal the lengths in a batch are:
``padded_token_fraction`` reports, for the padded ("off") variant, the share of its batches
that is padding (batches of the trainer's batch size, in the data's order). The demo's authored rows are of
similar length; ``--data paper-samples`` runs on real rows of the paper's datasets instead
(Alpaca for SFT, UltraFeedback for the preference trainers, from ../shared/data, never
committed), whose lengths spread as a real study's do.

Run: .venv/bin/python bench/train.py [--repeats 2] [--examples 32] [--algorithms sft dpo simpo reward ppo]
         [--data demo|paper-samples] [--max-length N]
         [--precision: also the other precision, bf16 autocast vs fp32]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)
# Real samples of the paper's datasets (../shared/data beside the checkout, or beside the
# folder of worktrees it is in; see its README), by dataset kind
SHARED_DATA = next((p / "shared/data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared/data").is_dir()),
                   REPO.parent / "shared/data")
PAPER_SAMPLES = {
    "sft": {"kind": "sft", "source": "jsonl", "path": str(SHARED_DATA / "alpaca/alpaca_sample.jsonl.gz")},
    "preference": {"kind": "preference", "source": "jsonl",
                   "path": str(SHARED_DATA / "ultrafeedback/train_clean_1000.jsonl.gz")},
}

# variant name -> settings overrides; "off" is the trainer as the demo runs it
VARIANTS = {
    # trl enforces no max_length under padding_free without packing: the rows go whole
    "sft": {"off": {}, "padding_free": {"padding_free": True, "max_length": None}, "packing": {"packing": True}},
    "dpo": {"off": {}, "padding_free": {"padding_free": True}},
    "simpo": {"off": {}},
    "reward": {"off": {}},
    "ppo": {"off": {}},
}


def dataset_tokens(dataset, algorithm: str, settings) -> int:
    """Non-padding tokens one epoch over ``dataset`` (a trainer's tokenised dataset) feeds the model."""
    if algorithm == "ppo":  # prompts + the rollout length trl generates (padded to response_length)
        return sum(len(r["input_ids"]) + settings.response_length for r in dataset)
    total = 0
    for row in dataset:  # input_ids (SFT, reward), prompt_ids/chosen_ids/rejected_ids (DPO), ...
        ids = {k: v for k, v in row.items() if k == "input_ids" or k.endswith("_ids")
               and not any(w in k for w in ("mask", "position", "type"))}
        total += sum(len(v) for v in ids.values())
        prompt = next((v for k, v in ids.items() if k.startswith("prompt")), None)
        if prompt is not None:  # the prompt is run once with each answer
            total += len(prompt)
    return total


def padded_token_fraction(dataset, batch_size: int) -> float | None:
    """Share of padding in batches of ``batch_size`` rows padded to their longest row."""
    lengths = [len(r["input_ids"]) for r in dataset] if "input_ids" in dataset.column_names else None
    if not lengths:
        return None
    padded = sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size])
                 for i in range(0, len(lengths), batch_size))
    return round(1 - sum(lengths) / padded, 3)


def measure(algorithm: str, settings, model_dir: Path, rows, tokenizer, reward_model, tmp: Path) -> dict:
    from valuedrift.training import registry, trainers

    horizon = 10 ** 6  # rewritten below to one epoch once the (packed) dataset size is known
    common = trainers._common(settings, output_dir=str(tmp / "out"), horizon=horizon, world_size=1)
    common["disable_tqdm"] = True
    build = getattr(trainers, registry.get(algorithm).builder)
    # step: never reached, so PPO's segment callback does not save (saving is not throughput)
    extras = {"reward_model": str(reward_model) if reward_model else None, "previous": None, "step": 10 ** 9}
    if algorithm == "ppo":
        common["max_steps"] = math.ceil(len(rows) / settings.global_batch_size)
    trainer = build(settings, common, str(model_dir), tokenizer, rows, extras)
    dataset = trainer.train_dataset
    if algorithm == "ppo":
        steps = common["max_steps"]
        tokens = dataset_tokens(dataset, algorithm, settings)
    else:
        steps = math.ceil(len(dataset) / settings.global_batch_size)
        trainer.args.max_steps = steps
        tokens = dataset_tokens(dataset, algorithm, settings)
    flattened = getattr(settings, "padding_free", False) or getattr(settings, "packing", False)
    padding = None if flattened else padded_token_fraction(dataset, settings.per_device_batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": len(dataset), "steps": steps, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
            "padded_token_fraction": padding}


def summary(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    return {"rows": best["rows"], "optimizer_steps": best["steps"], "tokens": best["tokens"],
            **({"padded_token_fraction": best["padded_token_fraction"]}
               if best["padded_token_fraction"] is not None else {}),
            "wall_s_all": [round(r["wall_s"], 2) for r in runs],
            "tokens_per_s": round(best["tokens"] / best["wall_s"], 1),
            "tokens_per_cpu_s": round(max(r["tokens"] / r["cpu_s"] for r in runs), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of every measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--examples", type=int, default=32, help="first N rows of each dataset (0 = all)")
    parser.add_argument("--data", choices=["demo", "paper-samples"], default="demo",
                        help="the demo's authored data, or real Alpaca/UltraFeedback rows from ../shared/data")
    parser.add_argument("--max-length", type=int, help="every trainer's max_length (default: the config's)")
    parser.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    parser.add_argument("--precision", action="store_true",
                        help="also run every trainer in the other precision (bf16 autocast vs fp32)")
    parser.add_argument("--model-dir", type=Path, help="an imported demo model (default: import it into a temp dir)")
    parser.add_argument("--output", type=Path, default=REPO / "results/bench/train.json")
    args = parser.parse_args()

    import polars as pl
    import torch
    from transformers import AutoTokenizer

    from valuedrift import config as vd_config
    from valuedrift import pipeline
    from valuedrift.training import registry

    torch.set_num_threads(args.threads)
    cfg = vd_config.load(args.config, workdir=REPO)
    base = cfg["runs"][0]["base"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = tmp / "model"
            pipeline.import_model(cfg["models"][base], str(model_dir))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        data = {}
        specs = ({spec["kind"]: spec for spec in cfg["datasets"].values()} if args.data == "demo" else PAPER_SAMPLES)
        for kind, spec in specs.items():
            if args.data == "paper-samples" and not Path(spec["path"]).exists():
                sys.exit(f"{spec['path']}: not found (--data paper-samples reads ../shared/data)")
            pipeline.prepare_dataset(spec, str(tmp / f"{kind}.parquet"), workdir=REPO)
            rows = pl.read_parquet(tmp / f"{kind}.parquet").to_dicts()
            data[kind] = rows[:args.examples] if args.examples else rows
        length = {"max_length": args.max_length} if args.max_length else {}
        reward_model = None
        if "ppo" in args.algorithms:  # PPO needs a reward model: one quick epoch of the demo's reward trainer
            from valuedrift.training.segment import train_segment
            rs = registry.settings_for("reward", cfg["training"]).with_overrides(length)
            reward_model = tmp / "reward"
            train_segment(algorithm="reward", settings=rs, start_model=model_dir, previous=None, output=reward_model,
                          step=rs.horizon(len(data["preference"])), rows=data["preference"])
        runs: dict[tuple[str, str], list[dict]] = {}
        for rep in range(args.repeats):  # interleaved: the machine's load hits every variant alike
            for algorithm in args.algorithms:
                algo = registry.get(algorithm)
                base_settings = registry.settings_for(algorithm, cfg["training"]).with_overrides(length)
                variants = dict(VARIANTS[algorithm])
                if args.precision:
                    variants["other_precision"] = {"bf16": not base_settings.bf16}
                for variant, overrides in variants.items():
                    settings = base_settings.with_overrides(overrides)
                    r = measure(algorithm, settings, model_dir, data[algo.dataset_kind], tokenizer, reward_model,
                                tmp / f"{algorithm}-{variant}")
                    print(f"[bench] {algorithm} {variant} (run {rep + 1}): {r['tokens']} tokens, {r['steps']} steps, "
                          f"{r['wall_s']:.1f} s wall, {r['tokens'] / r['wall_s']:.0f} tok/s", file=sys.stderr, flush=True)
                    runs.setdefault((algorithm, variant), []).append(r)
        for algorithm in args.algorithms:
            variants = [v for (a, v) in runs if a == algorithm]
            entry = {variant: summary(runs[(algorithm, variant)]) for variant in variants}
            if args.precision:
                entry["other_precision"]["bf16"] = not registry.settings_for(algorithm, cfg["training"]).bf16
            for variant in variants:
                if variant != "off":
                    off = entry["off"]["tokens_per_s"]
                    entry[f"ratio_{variant}_vs_off"] = round(entry[variant]["tokens_per_s"] / off, 2) if off else None
            if len(VARIANTS[algorithm]) == 1:
                entry["note"] = "trl 1.12 has no padding-free/packing mode for this trainer"
            results[algorithm] = entry
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "model": "SmolLM2-135M-Instruct (de-quantised Q4_1 GGUF), demo training settings",
        "config": str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config),
        "data": ("the demo's authored datasets" if args.data == "demo" else
                 "real samples from ../shared/data: Alpaca (SFT), UltraFeedback (preference)"),
        "max_length": args.max_length or "config", "examples_per_dataset": args.examples or "all", "repeats": args.repeats, "goal": "padding-free/packing on vs off >= 1.5x tokens/s",
        "note": "tokens exclude padding; best of the interleaved runs", "algorithms": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
