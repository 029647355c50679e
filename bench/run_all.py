"""`make bench`: every benchmark, then one table of figures beside their goals and floors.

Runs each benchmark in its own process (its wall, CPU seconds and peak RSS recorded),
writing results/bench/<name>.json, then results/bench/summary.md and summary.json: one row
per figure with the measured value, the goal, the floor it is set against (this machine's
measured matmul throughput and memory bandwidth, bench/floors.py) and whether the goal is
met. Sized to finish within ~20 minutes on 2 idle cores; ``--quick`` is a smoke run of
every piece (minutes); ``--only``/``--skip`` pick benchmarks; ``--summary-only`` rebuilds
the table from the JSON files already there.

On a shared machine the timings are noisy: every benchmark repeats and interleaves its
measurements and reports the best; the table says what the load average was.

Run: .venv/bin/python bench/run_all.py [--quick] [--only judge generate] [--noop-workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)
PAPER_TOKENS = 550 * 5 * 256  # questions x samples x new tokens per checkpoint (paper settings)


def steps(quick: bool, model: Path, out: Path, noop: Path | None) -> dict[str, list[str]]:
    q = quick
    m = ["--model-dir", str(model)]
    return {
        "floors": ["bench/floors.py", "--threads", "1", "2"],
        "judge": ["bench/judge.py", "--prompts", "4" if q else "16", "--repeats", "1" if q else "2",
                  "--one-at-a-time", "2" if q else "3", "--concurrency", *(["1", "4"] if q else ["1", "2", "4", "8"]),
                  *m],
        "generate": ["bench/generate.py", "--prompts", "4" if q else "16", "--batch-size", "4" if q else "16",
                     "--max-new-tokens", "8" if q else "48", "--one-at-a-time", "2" if q else "4",
                     "--repeats", "1" if q else "2", *m],
        "train": ["bench/train.py", "--data", "paper-samples", "--algorithms", "sft", "dpo",
                  "--examples", "8" if q else "32", "--max-length", "256", "--repeats", "1" if q else "2", *m],
        "resume": ["bench/resume.py", "--steps", "1" if q else "2", *m],
        "precision": ["bench/precision.py", "--prompts", "4" if q else "16", *m],
        "memory": ["bench/memory.py", "--questions", "8" if q else "44", *m],
        "orchestration": ["bench/orchestration.py", *(["--noop-workdir", str(noop)] if noop else [])],
    }


def run(name: str, argv: list[str], out: Path) -> dict:
    """One benchmark in a child process; its own wall, CPU and peak RSS (wait4)."""
    log = out / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, *argv, "--output", str(out / f"{name}.json")]
    print(f"[bench] {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    info = {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "ok": status == 0, "log": str(log)}
    print(f"[bench] {name}: {'ok' if status == 0 else 'FAILED'} in {wall:.0f} s (log {log})", file=sys.stderr, flush=True)
    return info


# --- the table -------------------------------------------------------------------------------

def load(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def row(area, figure, value, goal, floor="", met=None, note=""):
    return {"area": area, "figure": figure, "value": value, "goal": goal, "floor": floor,
            "met": "-" if met is None else ("yes" if met else "NO"), "note": note}


def fmt(x, digits=3):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def figures(out: Path) -> list[dict]:
    from floors import SHAPES, forward_flops_per_token, parameters, training_flops_per_token

    rows = []
    floors = load(out, "floors") or {}
    by_t = floors.get("by_threads", {})
    shape = SHAPES["smollm2-135m"]
    n = parameters(shape)["total"]

    def matmul(threads, dtype="float32"):
        return (by_t.get(str(threads)) or {}).get("matmul_gflops", {}).get(dtype)

    def bandwidth(threads):
        return (by_t.get(str(threads)) or {}).get("memory_bandwidth_gbs")

    judge = load(out, "judge")
    if judge:
        local = judge["local"]
        one = local["methods"]["one_forward"]
        tok_s = local["prompt_tokens_mean"] / one["per_response_wall_s"]
        # the judge reads one position's logits: prefill FLOPs are the layers' (no LM head per token)
        gf = matmul(local["torch_threads"])
        floor = gf * 1e9 / forward_flops_per_token(shape, context=int(local["prompt_tokens_mean"] / 2), logits=False) if gf else None
        rows.append(row("judge", "local one-forward judge: prompt tokens/s (share of prefill floor)",
                        f"{tok_s:.0f} tok/s ({tok_s / floor:.0%})" if floor else f"{tok_s:.0f} tok/s", ">= 50% of floor",
                        f"{floor:.0f} tok/s = {gf} GFLOP/s fp32 / FLOPs per token" if floor else "", floor and tok_s / floor >= 0.5))
        ratios = local["time_per_response_ratio_vs_one_forward"]
        for name, r in ratios.items():
            rows.append(row("judge", f"{name} vs one-forward (time per response, wall / CPU)",
                            f"{r['wall']}x / {r['cpu']}x", ">= 10x", "", r["cpu"] >= 10))
        api = judge.get("api", {})
        if "by_concurrency" in api:
            c = api["by_concurrency"]
            rows.append(row("judge", "API judge: completion tokens billed per response",
                            fmt(c[0].get("completion_tokens_per_response")), "<= 1 (max_tokens 1)", "1",
                            (c[0].get("completion_tokens_per_response") or 0) <= 1))
            rows.append(row("judge", "API judge: calls on a cached rerun", api["cached_rerun"]["calls"], "0", "0",
                            api["cached_rerun"]["calls"] == 0))
            base = c[0]["responses_per_s"]
            rows.append(row("judge", "API judge: responses/s by concurrency (loopback llama.cpp server)",
                            ", ".join(f"c={x['concurrency']}: {x['responses_per_s']}" for x in c),
                            ">= c=1 at every concurrency", f"c=1: {base} (the server serialises requests)",
                            all(x["responses_per_s"] >= 0.9 * base for x in c)))
        elif api:
            rows.append(row("judge", "API judge", "skipped", "", "", None, api.get("skipped", "")))
    gen = load(out, "generate")
    if gen:
        b = gen["batched"]
        rows.append(row("generation", "batched vs one-at-a-time (tokens/s)", f"{gen['ratio_tokens_per_s']}x",
                        ">= 5x", "", gen["ratio_tokens_per_s"] >= 5))
        threads = gen["machine"]["torch_threads"]
        gf, bw = matmul(threads), bandwidth(threads)
        if gf and bw:
            compute = gf * 1e9 / forward_flops_per_token(shape, context=64)
            memory = b["batch_size"] * bw * 1e9 / (4 * n)  # fp32 weights read once per decode step
            floor = min(compute, memory)
            rows.append(row("generation", "batched decode tokens/s (share of decode floor)",
                            f"{b['tokens_per_s']} tok/s ({b['tokens_per_s'] / floor:.0%})", ">= 30% of floor",
                            f"{floor:.0f} tok/s = min(compute {compute:.0f}, batch x bandwidth {memory:.0f})",
                            b["tokens_per_s"] / floor >= 0.3))
        five = gen["batched_5_samples_per_prompt"]["tokens_per_s"]
        hours = PAPER_TOKENS / five / 3600
        rows.append(row("generation", "time per checkpoint at paper settings (550 x 5 x 256, extrapolated)",
                        f"{hours:.1f} h on this CPU (demo model, {five} tok/s)", "reported (GPU: bench/gpu.sh)", "", None,
                        "the paper's models on GPUs with vLLM: bench/gpu.sh"))
    train = load(out, "train")
    if train:
        threads = train["machine"]["torch_threads"]
        gf = matmul(threads)
        floor = gf * 1e9 / training_flops_per_token(shape) if gf else None
        for algorithm, entry in train["algorithms"].items():
            off = entry["off"]["tokens_per_s"]
            rows.append(row("training", f"{algorithm}: tokens/s (share of 6 x params floor)",
                            f"{off} tok/s ({off / floor:.0%})" if floor else off, ">= 30% of floor",
                            f"{floor:.0f} tok/s = {gf} GFLOP/s / 6N" if floor else "", floor and off / floor >= 0.3))
            for key, value in entry.items():
                if key.startswith("ratio_"):
                    pad = entry["off"].get("padded_token_fraction")
                    rows.append(row("training", f"{algorithm}: {key[6:].replace('_vs_off', '')} vs padded (real samples)",
                                    f"{value}x", ">= 1.5x", f"padding share of padded batches: {pad}",
                                    value is not None and value >= 1.5))
    resume = load(out, "resume")
    if resume:
        rows.append(row("training", "one resume (weights + trainer state) as a fraction of a segment",
                        f"{resume['resume_fraction_of_segment']:.1%} ({resume['resume_s']} of {resume['segment_wall_s']} s)",
                        "<= 10%", "", resume["resume_fraction_of_segment"] <= 0.10))
    orch = load(out, "orchestration")
    if orch:
        p = orch["planning"]
        rows.append(row("orchestration", f"`snakemake -n` of {p['config']} ({p['jobs']} jobs): CPU s vs bare DAG",
                        f"{p['dry_run']['cpu_s']} s vs {p['bare_dry_run']['cpu_s']} s = {p['ratio_vs_bare_cpu']}x "
                        f"(wall {p['dry_run']['wall_s']} s)", "<= 1.5x", "bare Snakefile, same jobs and edges",
                        p["ratio_vs_bare_cpu"] <= 1.5 and p["jobs"] >= 5000))
        noop = orch.get("noop_rerun", {})
        if "wall_s" in noop:
            rows.append(row("orchestration", "demo no-op rerun (wall)", f"{noop['wall_s']} s", "<= 5 s", "",
                            noop["wall_s"] <= 5 and noop["nothing_to_do"]))
        else:
            rows.append(row("orchestration", "demo no-op rerun", "not measured", "<= 5 s", "", None, noop.get("skipped", "")))
    mem = load(out, "memory")
    if mem and "demo_peak_rss" in mem:
        for stage, v in mem["demo_peak_rss"].items():
            rows.append(row("memory", f"peak RSS of {stage} at demo scale", f"{v['peak_rss_mb']} MB",
                            f"<= config request ({v['requested_mem_mb']} MB)", "", v["within_request"]))
    prec = load(out, "precision")
    if prec:
        c = prec["auto_choice"]
        g = c.get("measured_gflops") or {}
        rows.append(row("precision", "dtype auto on this CPU (bf16 / fp32 matmul GFLOP/s)",
                        f"{c['dtype']} ({g.get('bfloat16')} / {g.get('float32')})", "bf16 where >= 1.5x", "", None, c["reason"]))
        rows.append(row("precision", "demo judge bf16 vs fp32: time per response speed-up",
                        f"{prec['judge_speedup_bf16_vs_fp32']}x", "> 1x where auto picks bf16", "",
                        prec["judge_speedup_bf16_vs_fp32"] > 1 if c["dtype"] == "bfloat16" else None))
        tol = prec["tolerance"]
        rows.append(row("precision", "demo judge bf16 vs fp32: abs. stance probability difference, max per response / of the mean",
                        f"{fmt(prec['max_abs_stance_probability_difference'])} / {fmt(prec['mean_stance_probability_difference'])}",
                        f"<= {tol['per_response']} / <= {tol['mean']}", "", prec["within_tolerance"]))
    return rows


def markdown(rows: list[dict], runs: dict, floors: dict | None) -> str:
    lines = ["# valuedrift benchmarks", ""]
    if floors:
        for t, f in floors.get("by_threads", {}).items():
            lines.append(f"- floors at {t} thread(s): matmul fp32 {f['matmul_gflops']['float32']} GFLOP/s, bf16 "
                         f"{f['matmul_gflops']['bfloat16']} GFLOP/s, memory bandwidth {f['memory_bandwidth_gbs']} GB/s "
                         f"(load average {', '.join(f'{x:.1f}' for x in f['load_average'])})")
        lines.append("")
    lines += ["| area | figure | measured | goal | floor | met | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]).replace("|", "/") for k in
                                        ("area", "figure", "value", "goal", "floor", "met", "note")) + " |")
    if runs:
        lines += ["", "| benchmark | ok | wall s | CPU s | peak RSS MB |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['ok']} | {v['wall_s']} | {v['cpu_s']} | {v['peak_rss_mb']} |" for k, v in runs.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run of every piece at small sizes")
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--skip", nargs="+", default=[])
    ap.add_argument("--noop-workdir", type=Path, help="a checkout where `make demo` has finished (no-op rerun)")
    ap.add_argument("--model-dir", type=Path, help="an imported SmolLM2 folder (default: results/bench/model)")
    ap.add_argument("--output-dir", type=Path, default=REPO / "results/bench")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    if not args.summary_only:
        model = args.model_dir or out / "model"
        if not (model / "config.json").exists():
            from valuedrift.models import import_base_model

            import_base_model(SMOLLM2, model)
        plan = steps(args.quick, model, out, args.noop_workdir)
        for name, argv in plan.items():
            if (args.only and name not in args.only) or name in args.skip:
                continue
            runs[name] = run(name, argv, out)
            runs_file.write_text(json.dumps(runs, indent=2) + "\n")
    rows = figures(out)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "runs": runs}, indent=2) + "\n")
    text = markdown(rows, runs, load(out, "floors"))
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
