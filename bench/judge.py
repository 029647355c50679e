"""Judge benchmarks -> results/bench/judge.json.

Timings on a shared machine are noisy: every measurement is repeated, interleaved,
and reported as the fastest wall time and the smallest CPU time (CPU seconds are less
sensitive to other processes' load than wall seconds, though not immune: oversubscribed
OpenMP threads spin).

1. Local judge, one batched forward pass (exact option-token probabilities) vs
   generate-then-parse on the same model and prompts: the model writes an answer
   (greedy, up to --answer-tokens new tokens) and the first option letter is parsed
   from it. Reported batched (same batch size as the judge) and one-at-a-time, plus
   the sampled variant that estimates a distribution from 5 parsed answers (what
   generate-then-parse needs to give a stance distribution at all).
2. API judge throughput (responses/s) vs concurrency against a llama.cpp server on
   loopback serving the same model's GGUF (cache off, so every response is a call), and
   the cached rerun.

Run: .venv/bin/python bench/judge.py [--prompts 8] [--repeats 2] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)
sys.path.insert(0, str(REPO / "tests"))  # the loopback llama.cpp server helper

OPTION_RE = re.compile(r"\(?\b([ABC])\b\)?")


def judge_prompts(n: int) -> list[str]:
    """Judge prompts (Figure 8) for demo questions with demo-length responses."""
    from valuedrift import prompts
    from valuedrift.topics import topic_for

    questions = [json.loads(line) for line in (REPO / "data/demo/questions.jsonl").read_text().splitlines()]
    answers = [json.loads(line)["messages"][-1]["content"]
               for line in (REPO / "data/demo/sft.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        q = questions[(i * 7) % len(questions)]
        response = " ".join(answers[i % len(answers)].split()[:80])  # ~100 tokens, like a short answer
        out.append(prompts.judge_prompt(q["question"], response, topic_for(q["category"])))
    return out


def generate_then_parse(judge, texts, *, batch_size: int, max_new_tokens: int, samples: int = 1, seed: int = 0):
    """Generate answers with the judge's model and parse the first option letter."""
    import torch

    tok, model = judge.tokenizer, judge.model
    parsed, total = 0, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(model.device)
            torch.manual_seed(seed + start)
            out = model.generate(**enc, do_sample=samples > 1, temperature=1.0 if samples > 1 else None, top_k=0,
                                 max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                 pad_token_id=tok.pad_token_id)
            for seq in out[:, enc["input_ids"].shape[1]:]:
                total += 1
                parsed += OPTION_RE.search(tok.decode(seq, skip_special_tokens=True)) is not None
    return parsed, total


def measure(fn, what: str, server_pid: int | None = None) -> dict:
    """Wall seconds and CPU seconds (this process, all threads; or the server process)."""
    cpu0 = server_cpu(server_pid) if server_pid else time.process_time()
    t0 = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - t0
    cpu = (server_cpu(server_pid) if server_pid else time.process_time()) - cpu0
    print(f"[bench] {what}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    return {"value": value, "wall_s": wall, "cpu_s": cpu}


def server_cpu(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(runs: list[dict], n: int) -> dict:
    walls, cpus = sorted(r["wall_s"] for r in runs), sorted(r["cpu_s"] for r in runs)
    return {"wall_s_min": round(walls[0], 3), "wall_s_all": [round(w, 3) for w in walls],
            "cpu_s_min": round(cpus[0], 3), "per_response_wall_s": round(walls[0] / n, 4)}


def bench_local(model_dir: Path, prompts: list[str], args) -> dict:
    """Each method runs ``--repeats`` times, interleaved, so that the load of a shared
    machine hits all of them alike; wall = the fastest run, CPU = the leanest run."""
    import torch

    from valuedrift.judge import LocalJudge

    judge = LocalJudge(model_dir, dtype="float32", batch_size=args.batch_size, cache_dir=None, progress=False)
    texts = [judge.format(p) for p in prompts]
    n_tok = [len(judge.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    judge.option_logprobs(prompts[:2])  # warm-up
    generate_then_parse(judge, texts[:2], batch_size=2, max_new_tokens=2)
    k = args.one_at_a_time
    methods = {
        "one_forward": (lambda: judge.option_logprobs(prompts), len(prompts)),
        "generate_parse_batched_greedy": (lambda: generate_then_parse(
            judge, texts, batch_size=args.batch_size, max_new_tokens=args.answer_tokens), len(prompts)),
        "generate_parse_one_at_a_time_greedy": (lambda: generate_then_parse(
            judge, texts[:k], batch_size=1, max_new_tokens=args.answer_tokens), k),
        "generate_parse_batched_sampled_5": (lambda: generate_then_parse(
            judge, texts, batch_size=args.batch_size, max_new_tokens=args.answer_tokens, samples=5), len(prompts)),
    }
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    for rep in range(args.repeats):
        for name, (fn, _) in methods.items():
            runs[name].append(measure(fn, f"{name} (run {rep + 1})"))
    out = {name: {"responses": n, **summary(runs[name], n)} for name, (_, n) in methods.items()}
    for name in methods:
        if name.startswith("generate"):
            parsed, total = runs[name][0]["value"]
            out[name]["answers_with_a_parsable_option"] = f"{parsed}/{total}"
    out["one_forward"]["scorable"] = f"{sum(v is not None for v in runs['one_forward'][0]['value'])}/{len(prompts)}"
    base_wall = out["one_forward"]["per_response_wall_s"]
    base_cpu = out["one_forward"]["cpu_s_min"] / len(prompts)
    ratios = {name: {"wall": round(out[name]["per_response_wall_s"] / base_wall, 2),
                     "cpu": round(out[name]["cpu_s_min"] / out[name]["responses"] / base_cpu, 2)}
              for name in methods if name != "one_forward"}
    return {"model": "SmolLM2-135M-Instruct (fp32, de-quantised Q4_1 GGUF)",
            "prompts": len(prompts), "prompt_tokens_mean": round(sum(n_tok) / len(n_tok), 1),
            "batch_size": args.batch_size, "answer_tokens": args.answer_tokens, "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(), "methods": out,
            "time_per_response_ratio_vs_one_forward": ratios, "goal": ">= 10x"}


def bench_api(prompts: list[str], args, workdir: Path) -> dict:
    from llm_server import LlamaServer, missing_server_dependency

    from valuedrift.openai_judge import OpenAIJudge

    why = missing_server_dependency()
    if why:
        return {"skipped": why}
    server = LlamaServer(workdir / "server.log", alias="smollm2", n_threads=args.server_threads).start()
    try:
        def judge(concurrency, cache_dir=None):
            return OpenAIJudge(model="smollm2", base_url=server.base_url, api_key_env=None, concurrency=concurrency,
                               timeout_s=300, cache_dir=cache_dir, progress=False)

        judge(1).option_logprobs(prompts[:2])  # warm-up
        runs: dict[int, list[dict]] = {c: [] for c in args.concurrency}
        for rep in range(args.repeats):
            for concurrency in args.concurrency:
                j = judge(concurrency)
                run = measure(lambda: j.option_logprobs(prompts), f"API judge, concurrency {concurrency}",
                              server_pid=server.proc.pid)
                acct = j.accounting()
                run.update(calls=acct["calls"], failures=acct["failures"],
                           completion_tokens=acct.get("completion_tokens", 0),
                           scorable=sum(o is not None for o in run.pop("value")))
                runs[concurrency].append(run)
        rows = []
        for concurrency, rs in runs.items():
            best = min(r["wall_s"] for r in rs)
            rows.append({"concurrency": concurrency, "responses_per_s": round(len(prompts) / best, 2),
                         "wall_s_all": [round(r["wall_s"], 2) for r in rs],
                         "server_cpu_s_per_response": round(min(r["cpu_s"] for r in rs) / len(prompts), 3),
                         "calls": sum(r["calls"] for r in rs), "failures": sum(r["failures"] for r in rs),
                         "completion_tokens_per_response": round(sum(r["completion_tokens"] for r in rs)
                                                                 / max(sum(r["calls"] for r in rs), 1), 2),
                         "scorable": sum(r["scorable"] for r in rs)})
        cache_dir = workdir / "cache"
        judge(4, cache_dir).option_logprobs(prompts)
        rerun = judge(4, cache_dir)
        cached = measure(lambda: rerun.option_logprobs(prompts), "API judge, cached rerun")
        return {"server": f"llama-cpp-python 0.3.36 server, Q4_1 GGUF, n_threads={args.server_threads}, "
                          "127.0.0.1 (it serialises requests: one llama context)",
                "prompts": len(prompts), "repeats": args.repeats, "by_concurrency": rows,
                "cached_rerun": {"wall_s": round(cached["wall_s"], 4), "calls": rerun.accounting()["calls"],
                                 "cache_hits": rerun.accounting()["cache_hits"]}}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of every measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--answer-tokens", type=int, default=16,
                        help="new tokens generate-then-parse may use to state its option")
    parser.add_argument("--one-at-a-time", type=int, default=3, help="prompts timed one at a time")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--server-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, oversubscribed OpenMP threads "
                             "make 2-thread timings swing 20x with other jobs' load)")
    parser.add_argument("--model-dir", type=Path, help="an imported SmolLM2 folder (default: import to a tmp dir)")
    parser.add_argument("--output", type=Path, default=REPO / "results/bench/judge.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from valuedrift.models import import_base_model

    prompts = judge_prompts(args.prompts)
    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = tmp / "smollm2"
            import_base_model(SMOLLM2, model_dir)
        result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
                  "local": bench_local(model_dir, prompts, args),
                  "api": bench_api(prompts, args, tmp)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
