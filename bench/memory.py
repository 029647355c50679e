"""Memory benchmark -> results/bench/memory.json (and the GPU table in docs/cluster.md).

1. Peak RSS of each model stage at demo scale (config/config.yaml: its questions,
   sampling, judge batch and trainer settings), each stage in its own process so that its
   peak (ru_maxrss from wait4) is its own: generate, judge, an SFT segment, a DPO segment.
   Set against what the config requests for the stage (resources.by_model mem_mb).
2. GPU memory per model size and stage, derived from the paper config's trainer settings
   (bf16 autocast: fp32 weights + gradients + Adam moments = 16 bytes per parameter,
   sharded over the job's GPUs by FSDP; activations of one per-device batch without
   gradient checkpointing, ~34 x tokens x hidden bytes per layer, plus fp32 logits; DPO and
   SimPO run the pair, DPO and PPO a bf16 reference, PPO a value model and a reward model;
   inference: bf16 weights + the KV cache of one prompt batch).

Run: .venv/bin/python bench/memory.py [--questions 44] [--model-dir DIR] [--gpu-table-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)
STAGES = ("generate", "judge", "sft_segment", "dpo_segment")
GIB = 2 ** 30


def run_stage(name: str, work: Path, cfg_path: Path, model_dir: Path, questions: int) -> None:
    """One stage at demo settings (runs in a child process)."""
    import polars as pl

    from valuedrift import config as vd_config
    from valuedrift import pipeline, tables

    cfg = vd_config.load(cfg_path, workdir=REPO)
    if name == "generate":
        qs = work / "questions.parquet"
        spec = dict(cfg["questions"])
        pipeline.build_questions(spec, str(qs), workdir=REPO)
        tables.write(tables.read(qs, "questions").head(questions), qs, "questions")
        gen = cfg["generation"]
        pipeline.generate(model_dir=str(model_dir), questions=str(qs), output=str(work / "generations.parquet"),
                          backend=gen["backend"], prompt_format="chat", base_prompt_template=gen["base_prompt_template"],
                          sampling={k: gen[k] for k in ("samples", "temperature", "top_p", "max_new_tokens", "seed")},
                          batch_size=gen["batch_size"], dtype=gen["dtype"])
    elif name == "judge":
        judge_cfg = {**cfg["judge"], "cache_dir": None}
        pipeline.judge(generations=str(work / "generations.parquet"), questions=str(work / "questions.parquet"),
                       output=str(work / "stances.parquet"), accounting=str(work / "accounting.json"),
                       backend="local", judge_kwargs=pipeline.judge_kwargs(judge_cfg, str(model_dir)),
                       max_unscorable_fraction=1.0)
    else:
        algorithm = "sft" if name == "sft_segment" else "dpo"
        kind = "sft" if algorithm == "sft" else "preference"
        spec = next(s for s in cfg["datasets"].values() if s["kind"] == kind)
        data = work / f"{kind}.parquet"
        pipeline.prepare_dataset(spec, str(data), workdir=REPO)
        every = next(r["every"] for r in cfg["runs"] if r.get("algorithm", "sft") == algorithm)
        pipeline.train(algorithm=algorithm, settings=cfg["training"].get(algorithm, {}), start_model=str(model_dir),
                       previous=None, data=str(data), output=str(work / f"{algorithm}-checkpoint"), step=every,
                       optimizer_state="none")
    del pl


def demo_rss(cfg_path: Path, model_dir: Path, questions: int, threads: int) -> dict:
    import yaml

    cfg = yaml.safe_load(cfg_path.read_text())
    requested = next(iter(cfg.get("resources", {}).get("by_model", {}).values()), {})
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        for name in STAGES:
            proc = subprocess.Popen([sys.executable, __file__, "--stage", name, "--work", work, "--config", str(cfg_path),
                                     "--model-dir", str(model_dir), "--questions", str(questions)],
                                    env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            stderr = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            if status:
                raise SystemExit(f"stage {name} failed:\n{stderr[-3000:]}")
            family = "infer" if name in ("generate", "judge") else "train"
            mem_mb = (requested.get(family) or {}).get("mem_mb")
            rss = usage.ru_maxrss / 1024
            out[name] = {"peak_rss_mb": round(rss), "requested_mem_mb": mem_mb,
                         "within_request": mem_mb is None or rss <= mem_mb,
                         "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
            print(f"[bench] {name}: peak RSS {rss:.0f} MB (requested {mem_mb})", file=sys.stderr, flush=True)
    return out


def gpu_table(paper_config: Path) -> list[dict]:
    """GPU memory (GiB per GPU) by model and stage, for the paper config's settings."""
    import yaml

    from floors import SHAPES, parameters

    from valuedrift.training import registry

    cfg = yaml.safe_load(paper_config.read_text())
    res = cfg.get("resources", {})
    rows = []
    for model, shape in SHAPES.items():
        n = parameters(shape)["total"]
        head_dim = shape.get("head_dim") or shape["hidden"] // shape["heads"]
        gpus = ((res.get("by_model", {}).get(model, {}).get("train") or {}).get("gpu")
                or (res.get("train") or {}).get("gpu") or 1)
        kv_per_token = 2 * shape["layers"] * shape["kv_heads"] * head_dim * 2  # K and V, bf16
        row = {"model": model, "parameters_b": round(n / 1e9, 2), "train_gpus": gpus,
               "inference_weights": 2 * n / GIB,
               "inference_kv_per_1k_tokens": 1000 * kv_per_token / GIB,
               # generation at paper settings: 550 prompts x 5 samples x (~64 prompt + 256) tokens at once
               "generate_all_at_once": (2 * n + 550 * 5 * 320 * kv_per_token) / GIB}
        for algorithm in ("sft", "dpo", "simpo", "reward", "ppo"):
            s = registry.settings_for(algorithm, cfg.get("training"))
            sequences = s.per_device_batch_size * (2 if algorithm in ("dpo", "simpo", "reward") else 1)
            tokens = sequences * s.max_length
            activations = 34 * tokens * shape["hidden"] * shape["layers"] + 2 * tokens * shape["vocab"] * 4
            states = 16 * n  # fp32 weights, gradients, Adam m and v
            extra = {"dpo": 2 * n, "ppo": 2 * n + 16 * n + 2 * n}.get(algorithm, 0)  # ref; value + reward
            row[algorithm] = ((states + extra) / gpus + activations) / GIB
        rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    cols = ["model", "parameters_b", "train_gpus", "sft", "dpo", "simpo", "reward", "ppo", "inference_weights",
            "inference_kv_per_1k_tokens", "generate_all_at_once"]
    head = ["model", "params (B)", "train GPUs", "SFT", "DPO", "SimPO", "reward", "PPO", "infer: weights",
            "KV / 1k tokens", "generate 550x5 at once"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) if isinstance(r[c], (str, int)) else f"{r[c]:.2g}" if r[c] < 1 else f"{r[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=44, help="demo: 44")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--paper-config", type=Path, default=REPO / "config/paper.yaml")
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--gpu-table-only", action="store_true")
    ap.add_argument("--output", type=Path, default=REPO / "results/bench/memory.json")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        import torch

        torch.set_num_threads(args.threads)
        run_stage(args.stage, Path(args.work), args.config, args.model_dir, args.questions)
        return
    rows = gpu_table(args.paper_config)
    result = {"gpu_memory_gib_per_gpu": rows, "gpu_table_markdown": table_markdown(rows)}
    if not args.gpu_table_only:
        model_dir = args.model_dir
        with tempfile.TemporaryDirectory(prefix="bench-memory-model-") as tmp:
            if model_dir is None:
                import yaml

                from valuedrift import pipeline

                cfg = yaml.safe_load(args.config.read_text())
                model_dir = Path(tmp) / "model"
                pipeline.import_model(next(iter(cfg["models"].values())), str(model_dir))
            result["demo_peak_rss"] = demo_rss(args.config, model_dir, args.questions, args.threads)
        result["questions"] = args.questions
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(result["gpu_table_markdown"])
    print(json.dumps(result.get("demo_peak_rss", {}), indent=2))


if __name__ == "__main__":
    main()
