"""Resume cost benchmark -> results/bench/resume.json.

A run is trained as segments (one checkpoint = one Snakemake job), so every segment pays
one resume: loading the previous checkpoint's weights and restoring its optimizer,
scheduler and RNG state. This trains one demo SFT segment of ``--steps`` steps from the
demo model (config/config.yaml settings, optimizer state kept), then times what a resume
loads from that checkpoint -- the weights (``from_pretrained``) and the trainer state
(``torch.load`` of optimizer.pt, scheduler.pt, rng_state.pth) -- and reports it as a
fraction of the segment's wall time.

Run: .venv/bin/python bench/resume.py [--steps 2] [--threads 2] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2, help="steps of the segment (the demo's SFT every: 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--output", type=Path, default=REPO / "results/bench/resume.json")
    args = ap.parse_args()

    import polars as pl
    import torch
    from transformers import AutoModelForCausalLM

    from valuedrift import config as vd_config
    from valuedrift import pipeline
    from valuedrift.training import registry
    from valuedrift.training.segment import train_segment

    torch.set_num_threads(args.threads)
    cfg = vd_config.load(args.config, workdir=REPO)
    run = cfg["runs"][0]
    settings = registry.settings_for("sft", cfg["training"])
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = tmp / "model"
            pipeline.import_model(cfg["models"][run["base"]], str(model_dir))
        pipeline.prepare_dataset(cfg["datasets"][run["sft"]], str(tmp / "sft.parquet"), workdir=REPO)
        rows = pl.read_parquet(tmp / "sft.parquet").to_dicts()
        checkpoint = tmp / f"checkpoint-{args.steps}"
        t0 = time.perf_counter()
        train_segment(algorithm="sft", settings=settings, start_model=model_dir, previous=None, output=checkpoint,
                      step=args.steps, rows=rows, optimizer_state="all")
        segment_s = time.perf_counter() - t0
        files = {p.name: p.stat().st_size for p in checkpoint.iterdir() if p.is_file()}
        t0 = time.perf_counter()
        AutoModelForCausalLM.from_pretrained(checkpoint)
        weights_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            if (checkpoint / name).exists():
                torch.load(checkpoint / name, map_location="cpu", weights_only=False)
        state_s = time.perf_counter() - t0
    resume_s = weights_s + state_s
    result = {"model": "SmolLM2-135M-Instruct, demo SFT settings", "segment_steps": args.steps,
              "threads": args.threads, "segment_wall_s": round(segment_s, 2),
              "resume_weights_s": round(weights_s, 2), "resume_trainer_state_s": round(state_s, 2),
              "resume_s": round(resume_s, 2), "resume_fraction_of_segment": round(resume_s / segment_s, 3),
              "checkpoint_mb": {k: round(v / 1e6, 1) for k, v in files.items() if v > 1e6},
              "goal": "<= 0.10 of a segment", "load_average": os.getloadavg()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
