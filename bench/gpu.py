"""GPU benchmark (bench/gpu.sh runs it in the vLLM environment) -> results/bench/gpu.json.

On one GPU, beside the GPU's measured floors (bf16 matmul TFLOP/s, memory bandwidth):
- vLLM generation at the paper's settings (550 questions x 5 samples x up to 256 tokens, one
  seeded request per question, one ``generate`` call) on the demo model (SmolLM2-135M,
  bf16) and on a 3B-shaped random-init Llama: tokens/s, share of the compute floor, time
  per checkpoint, engine start-up;
- the vLLM judge (exact option-token log-probabilities, prefix caching) over those
  responses and the local transformers judge on a slice: responses/s, prompt tokens/s as a
  share of the prefill floor, and their agreement (max |stance probability difference|);
- one bf16 SFT and one DPO segment through valuedrift's own segment code on the demo model,
  and SFT/DPO throughput on the 3B-shaped model (tokens/s as a share of 6 x params).

Every part runs in its own process (a vLLM engine frees the GPU when its process ends).
``--dry-run`` runs the same flow on the CPU with the tiny test model and small sizes,
skipping what needs vLLM or CUDA: it checks the script, not the GPU.

Run: bash bench/gpu.sh [--dry-run]    (or .venv-vllm/bin/python bench/gpu.py --out DIR)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)
LLAMA_3B = dict(hidden_size=3072, num_hidden_layers=28, intermediate_size=8192, num_attention_heads=24,
                num_key_value_heads=8, tie_word_embeddings=True)


def sizes(dry: bool) -> dict:
    if dry:
        return {"questions": 8, "samples": 2, "max_new_tokens": 8, "local_judge": 8, "train_examples": 8,
                "matmul_n": 256}
    return {"questions": 550, "samples": 5, "max_new_tokens": 256, "local_judge": 512, "train_examples": 96,
            "matmul_n": 8192}


# --- parts (each in its own process) -------------------------------------------------------------

def part_floors(args, sz) -> dict:
    import torch

    from floors import memory_bandwidth_gbs, matmul_gflops

    if not torch.cuda.is_available():
        return {"device": "cpu", "matmul_bf16_tflops": round(matmul_gflops("bfloat16", n=sz["matmul_n"]) / 1e3, 4),
                "memory_bandwidth_gbs": round(memory_bandwidth_gbs(megabytes=64), 1)}
    n = sz["matmul_n"]
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / 10)
    x = torch.empty(2 ** 30, dtype=torch.uint8, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    copy = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        y.copy_(x)
        torch.cuda.synchronize()
        copy = min(copy, time.perf_counter() - t0)
    return {"device": torch.cuda.get_device_name(), "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1),
            "matmul_bf16_tflops": round(2 * n ** 3 / best / 1e12, 1), "memory_bandwidth_gbs": round(2 * x.numel() / copy / 1e9, 1)}


def part_models(args, sz) -> dict:
    """The demo model (bf16 folder) and the 3B-shaped random-init model, saved under --work."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from valuedrift.models import import_base_model

    work = Path(args.work)
    out = {}
    if args.dry_run:
        from valuedrift.tiny import build_tiny_model

        texts = [line for name in ("questions.jsonl", "sft.jsonl", "preferences.jsonl")
                 for line in (REPO / "data/demo" / name).read_text().splitlines()]
        build_tiny_model(work / "demo", texts)
        build_tiny_model(work / "big", texts, hidden_size=128, layers=4)
    else:
        import_base_model({**SMOLLM2, "dtype": "bfloat16"}, work / "demo")
        tok = AutoTokenizer.from_pretrained(work / "demo")
        cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **LLAMA_3B)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16)
        model.save_pretrained(work / "big", safe_serialization=True)
        tok.save_pretrained(work / "big")
    for name in ("demo", "big"):
        from transformers import AutoConfig

        from floors import parameters, shape_of

        out[name] = {"parameters": parameters(shape_of(AutoConfig.from_pretrained(work / name)))["total"]}
    return out


def questions(n: int) -> list[str]:
    base = [json.loads(line)["question"] for line in (REPO / "data/demo/questions.jsonl").read_text().splitlines()]
    return [base[i % len(base)] + ("" if i < len(base) else f" (variant {i // len(base)})") for i in range(n)]


def part_vllm(args, sz) -> dict:
    """Generation then judging on one engine (one per model, as one per job)."""
    import torch

    if args.dry_run or not torch.cuda.is_available():
        return {"skipped": "needs vllm and CUDA"}
    from vllm import LLM

    from valuedrift import prompts
    from valuedrift.generation import SamplingSettings, format_prompt
    from valuedrift.vllm_backend import VLLMGenerator, VLLMJudge

    model = Path(args.work) / args.model
    t0 = time.perf_counter()
    engine = LLM(model=str(model), dtype="bfloat16", seed=0, enable_prefix_caching=True, gpu_memory_utilization=0.85,
                 max_model_len=2048)
    startup = time.perf_counter() - t0
    gen = VLLMGenerator(model, dtype="bfloat16", engine=engine)
    qs = questions(sz["questions"])
    texts = [format_prompt(gen.tokenizer, q, "chat", "") for q in qs]
    sampling = SamplingSettings(samples=sz["samples"], temperature=0.7, max_new_tokens=sz["max_new_tokens"], seed=0)
    t0 = time.perf_counter()
    out = gen.generate(texts, sampling)
    gen_s = time.perf_counter() - t0
    tokens = sum(n for s in out for _, n in s)
    again = gen.generate(texts[:4], sampling)
    judge = VLLMJudge(model, dtype="bfloat16", engine=engine, progress=False)
    jprompts = [prompts.judge_prompt(q, r, "abortion") for q, s in zip(qs, out) for r, _ in s]
    t0 = time.perf_counter()
    scores = judge.option_logprobs(jprompts)
    judge_s = time.perf_counter() - t0
    (Path(args.work) / f"{args.model}-judge.json").write_text(json.dumps({"prompts": jprompts[:sz["local_judge"]],
                                                                           "scores": scores[:sz["local_judge"]]}))
    return {"engine_startup_s": round(startup, 1), "generate": {
        "requests": len(texts), "samples": sz["samples"], "max_new_tokens": sz["max_new_tokens"], "tokens": tokens,
        "wall_s": round(gen_s, 2), "tokens_per_s": round(tokens / gen_s), "reseeded_repeat_identical": again == out[:4],
        "paper_checkpoint_s": round(gen_s * (550 * 5 * 256) / max(tokens, 1), 1)},
        "judge": {"responses": len(jprompts), "exact_option_ids": judge.exact, "wall_s": round(judge_s, 2),
                  "responses_per_s": round(len(jprompts) / judge_s, 1),
                  "prompt_tokens_per_s": round(judge.counts["prompt_tokens"] / judge_s),
                  "scorable": sum(s is not None for s in scores)}}


def part_local_judge(args, sz) -> dict:
    import torch

    from valuedrift import prompts
    from valuedrift.judge import LocalJudge, stance_distribution

    model = Path(args.work) / args.model
    saved = Path(args.work) / f"{args.model}-judge.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        jprompts, reference = data["prompts"], data["scores"]
    else:
        jprompts = [prompts.judge_prompt(q, "Yes, I think so.", "abortion") for q in questions(sz["local_judge"])]
        reference = None
    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    judge = LocalJudge(model, dtype=dtype, batch_size=64 if torch.cuda.is_available() else 8, progress=False)
    judge.option_logprobs(jprompts[:2])
    t0 = time.perf_counter()
    scores = judge.option_logprobs(jprompts)
    wall = time.perf_counter() - t0
    out = {"responses": len(jprompts), "dtype": dtype, "wall_s": round(wall, 2),
           "responses_per_s": round(len(jprompts) / wall, 1),
           "prompt_tokens_per_s": round(judge.counts["prompt_tokens"] / wall)}
    if reference:
        diffs = [max(abs(x - y) for x, y in zip(stance_distribution(a)[:3], stance_distribution(b)[:3]))
                 for a, b in zip(scores, reference) if a is not None and b is not None]
        out["max_abs_stance_difference_vs_vllm"] = round(max(diffs), 4) if diffs else None
    return out


def part_segments(args, sz) -> dict:
    """valuedrift's own segment code: an SFT segment (2 steps) then a DPO segment from it."""
    import polars as pl

    from valuedrift import pipeline
    from valuedrift.training import registry
    from valuedrift.training.segment import train_segment

    work = Path(args.work)
    model = work / args.model
    out = {}
    data = {}
    for kind, name in (("sft", "sft.jsonl"), ("preference", "preferences.jsonl")):
        pipeline.prepare_dataset({"kind": kind, "source": "jsonl", "path": str(REPO / "data/demo" / name)},
                                 str(work / f"{kind}.parquet"), workdir=REPO)
        data[kind] = pl.read_parquet(work / f"{kind}.parquet").to_dicts()[:sz["train_examples"]]
    common = {"per_device_batch_size": 8, "global_batch_size": 8, "max_length": 512, "schedule_steps": 4,
              "bf16": None if not args.dry_run else False}
    previous = None
    for algorithm, kind, steps in (("sft", "sft", 2), ("dpo", "preference", 1)):
        settings = registry.settings_for(algorithm, {algorithm: {**common, **({"per_device_batch_size": 4,
                                                                               "global_batch_size": 4}
                                                                              if algorithm == "dpo" else {})}})
        t0 = time.perf_counter()
        output = work / f"{args.model}-{algorithm}-checkpoint"
        info = train_segment(algorithm=algorithm, settings=settings, start_model=model if algorithm == "sft" else previous,
                             previous=None, output=output, step=steps, rows=data[kind], optimizer_state="none")
        out[algorithm] = {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1), "bf16": settings.bf16,
                          "loss": [h.get("loss") for h in info["log"] if "loss" in h]}
        previous = output
    return out


def part_train_throughput(args, sz) -> dict:
    """SFT and DPO tokens/s on the model (one epoch, no checkpoint written): bench/train.py's measure."""
    import polars as pl
    import torch
    from transformers import AutoTokenizer

    import train as train_bench

    from valuedrift.training import registry

    work = Path(args.work)
    model = work / args.model
    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out = {}
    for algorithm, kind in (("sft", "sft"), ("dpo", "preference")):
        rows = pl.read_parquet(work / f"{kind}.parquet").to_dicts()[:sz["train_examples"]]
        settings = registry.settings_for(algorithm, {algorithm: {
            "per_device_batch_size": 4, "global_batch_size": 4, "max_length": 1024, "schedule_steps": 1000,
            "bf16": torch.cuda.is_available(), "gradient_checkpointing": False}})
        r = train_bench.measure(algorithm, settings, model, rows, tok, None, work / f"tp-{algorithm}")
        out[algorithm] = {"tokens": r["tokens"], "steps": r["steps"], "wall_s": round(r["wall_s"], 1),
                          "tokens_per_s": round(r["tokens"] / r["wall_s"]),
                          "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 1)
                          if torch.cuda.is_available() else None}
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    return out


def part_prep(args, sz) -> dict:
    return {"floors": part_floors(args, sz), "models": part_models(args, sz)}


def part_transformers(args, sz) -> dict:
    """Everything that is not vLLM, in one process (each process start costs imports)."""
    import gc

    import torch

    out: dict = {"local_judge": {}, "segments": {}, "train_throughput": {}}
    for key, fn, models in (("local_judge", part_local_judge, ("demo", "big")), ("segments", part_segments, ("demo",)),
                            ("train_throughput", part_train_throughput, ("demo", "big"))):
        for model in models:
            args.model = model
            t0 = time.perf_counter()
            try:
                out[key][model] = fn(args, sz)
            except Exception as err:  # one failed part must not lose the others' figures
                out[key][model] = {"failed": f"{type(err).__name__}: {err}"}
            print(f"[gpu] {key}/{model}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return out


PARTS = {"prep": part_prep, "vllm": part_vllm, "transformers": part_transformers}


def child(part: str, args, model: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--work", args.work, "--out", str(args.out)]
    cmd += (["--model", model] if model else []) + (["--dry-run"] if args.dry_run else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.verbose else subprocess.PIPE, text=True)
    label = f"{part}{'/' + model if model else ''}"
    print(f"[gpu] {label}: rc {proc.returncode} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if proc.returncode:
        return {"failed": (proc.stderr or "")[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def shares(result: dict) -> None:
    """Each throughput beside its floor: compute = matmul / FLOPs per token."""
    from floors import SHAPES  # noqa: F401  (documents where the FLOPs formulas live)

    tflops = result.get("floors", {}).get("matmul_bf16_tflops")
    if not tflops:
        return
    for name, info in result.get("models", {}).items():
        n = info.get("parameters")
        if not n:
            continue
        forward, training = tflops * 1e12 / (2 * n), tflops * 1e12 / (6 * n)
        v = result.get("vllm", {}).get(name, {})
        if "generate" in v:
            v["generate"]["share_of_compute_floor"] = round(v["generate"]["tokens_per_s"] / forward, 3)
            v["judge"]["prefill_share_of_compute_floor"] = round(v["judge"]["prompt_tokens_per_s"] / forward, 3)
        lj = result.get("local_judge", {}).get(name, {})
        if "prompt_tokens_per_s" in lj:
            lj["prefill_share_of_compute_floor"] = round(lj["prompt_tokens_per_s"] / forward, 3)
        for algorithm, t in result.get("train_throughput", {}).get(name, {}).items():
            if isinstance(t, dict) and "tokens_per_s" in t:
                t["share_of_6N_floor"] = round(t["tokens_per_s"] / training, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="the same flow on the CPU, tiny model, small sizes")
    ap.add_argument("--work", default=None, help="scratch folder for models and data (default: <out>/work)")
    ap.add_argument("--out", type=Path, default=REPO / "results/bench")
    ap.add_argument("--verbose", action="store_true", help="show the parts' own output")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work = args.work or str(args.out / "gpu-work")
    sz = sizes(args.dry_run)
    if args.part:
        print(json.dumps(PARTS[args.part](args, sz)))
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"dry_run": args.dry_run, "sizes": sz, **child("prep", args)}
    result["vllm"] = {m: child("vllm", args, m) for m in ("demo", "big")}
    result.update(child("transformers", args))
    shares(result)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    out = args.out / ("gpu-dry-run.json" if args.dry_run else "gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
