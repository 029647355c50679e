"""Precision benchmark -> results/bench/precision.json.

What ``dtype: auto`` would pick here (valuedrift.precision), the bf16 vs fp32 matmul
throughput behind it, and the demo model's judge in both precisions: time per response
and how far the bf16 stance probabilities are from fp32's (max |p_bf16 - p_fp32| over the
three stances of every prompt) -- the tolerance the choice is held to.

Run: .venv/bin/python bench/precision.py [--prompts 8] [--threads 1] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)
# bf16 must stay within these of fp32: any one response's stance probability, and the mean
# stance probability over the prompts (what trajectories and drift tables average)
TOLERANCE = {"per_response": 0.05, "mean": 0.01}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--output", type=Path, default=REPO / "results/bench/precision.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from judge import judge_prompts

    from valuedrift import precision
    from valuedrift.judge import LocalJudge, stance_distribution
    from valuedrift.models import import_base_model

    choice = precision.choose("auto", device="cpu", measure=True)
    result = {"threads": args.threads, "cpu_flags": sorted(set(precision.cpu_flags()) & {
        "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}),
              "auto_choice": choice.record(), "load_average": os.getloadavg()}
    prompts = judge_prompts(args.prompts)
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "smollm2"
            import_base_model(SMOLLM2, model_dir)
        scores, timing = {}, {}
        for dtype in ("float32", "bfloat16"):
            judge = LocalJudge(model_dir, dtype=dtype, batch_size=8, progress=False)
            judge.option_logprobs(prompts[:2])  # warm-up
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                scores[dtype] = judge.option_logprobs(prompts)
                best = min(best, time.perf_counter() - t0)
            tokens = sum(len(judge.tokenizer(judge.format(p), add_special_tokens=False).input_ids) for p in prompts)
            timing[dtype] = {"judge_s_per_response": round(best / len(prompts), 4),
                             "prompt_tokens_per_s": round(tokens / best, 1)}
            del judge
    diffs, sums = [], {"float32": [0.0] * 3, "bfloat16": [0.0] * 3}
    for a, b in zip(scores["float32"], scores["bfloat16"]):
        pa, pb = stance_distribution(a), stance_distribution(b)
        diffs.append(max(abs(x - y) for x, y in zip(pa[:3], pb[:3])))
        for k in range(3):
            sums["float32"][k] += pa[k] / len(prompts)
            sums["bfloat16"][k] += pb[k] / len(prompts)
    mean_diff = max(abs(x - y) for x, y in zip(sums["float32"], sums["bfloat16"]))
    result.update({
        "model": "SmolLM2-135M-Instruct (demo judge)", "prompts": len(prompts), "judge": timing,
        "judge_speedup_bf16_vs_fp32": round(timing["float32"]["judge_s_per_response"]
                                            / timing["bfloat16"]["judge_s_per_response"], 2),
        "max_abs_stance_probability_difference": round(max(diffs), 5),
        "mean_abs_stance_probability_difference": round(sum(diffs) / len(diffs), 5),
        "mean_stance_probability_difference": round(mean_diff, 5),
        "tolerance": TOLERANCE,
        "within_tolerance": max(diffs) <= TOLERANCE["per_response"] and mean_diff <= TOLERANCE["mean"],
    })
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
