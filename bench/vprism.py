"""V-PRISM builder benchmark -> results/bench/vprism.json.

Time and peak memory of the builder's CPU-heavy stages on a PRISM-sized pool (8,100
prompts, as in the paper): sentence embedding (all-mpnet-base-v2 by default, batched),
UMAP to 20 dimensions, UMAP to 2-D (the report's scatter) and HDBSCAN with soft
membership vectors, with the settings the builder uses (valuedrift.vprism).

The full PRISM prompt texts are not available offline, so the pool is synthesised with
the length distribution of real ones: each text splices a real PRISM opening prompt
(../shared/data/prism, 115 texts) or an authored one (data/vprism-demo) with the tail of
another, truncated to a length drawn from the real prompts' word counts; every text is
unique. Each stage runs in its own process, so its peak RSS (ru_maxrss) is its own; wall
times include the process's imports and numba compilation, ``fit_s`` is the call itself.

Run: .venv/bin/python bench/vprism.py [--n 8100] [--embedder all-mpnet-base-v2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)
PRISM = REPO.parent / "shared" / "data" / "prism" / "prism_opening_prompt_clusters.jsonl"
DEMO = REPO / "data" / "vprism-demo" / "prompts.jsonl"


def real_prompts() -> list[str]:
    texts = []
    if PRISM.exists():
        for line in PRISM.read_text().splitlines():
            texts += json.loads(line)["top_texts"]
    texts += [json.loads(line)["opening_prompt"] for line in DEMO.read_text().splitlines()]
    return [" ".join(t.split()) for t in texts if t.strip()]


def synthesise(n: int, seed: int = 0) -> tuple[list[str], dict]:
    rng = random.Random(seed)
    base = real_prompts()
    lengths = [len(t.split()) for t in base]
    out, seen = [], set()
    while len(out) < n:
        a, b = rng.choice(base).split(), rng.choice(base).split()
        k = rng.choice(lengths)
        words = (a + b[rng.randrange(len(b)):])[:max(k, 3)]
        text = " ".join(words)
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    words = sorted(len(t.split()) for t in out)
    return out, {"real_texts": len(base), "real_mean_words": round(sum(lengths) / len(lengths), 1),
                 "mean_words": round(sum(words) / len(words), 1), "median_words": words[len(words) // 2],
                 "p95_words": words[int(len(words) * 0.95)], "max_words": words[-1]}


def stage(name: str, args: argparse.Namespace) -> dict:
    """Run one stage in this process (called in a child); returns its timings."""
    import numpy as np

    from valuedrift.vprism import cluster as clustering
    from valuedrift.vprism import embed, stages

    vp = stages.settings({"embedder": {"name": args.embedder, "batch_size": args.batch_size},
                          "hdbscan": {"min_cluster_size": args.min_cluster_size}})
    work = Path(args.work)
    t0 = time.perf_counter()
    info: dict = {}
    if name == "embed":
        import torch

        torch.set_num_threads(args.threads)
        texts = json.loads((work / "texts.json").read_text())
        t_load = time.perf_counter()
        model = embed.load_model(vp["embedder"])
        info["model_load_s"] = round(time.perf_counter() - t_load, 2)
        t1 = time.perf_counter()
        vectors = embed.embed(texts, vp["embedder"], model=model)
        info["fit_s"] = round(time.perf_counter() - t1, 2)
        info["texts_per_s"] = round(len(texts) / info["fit_s"], 1)
        info["dim"] = int(vectors.shape[1])
        np.save(work / "embeddings.npy", vectors)
    elif name in ("umap20", "umap2d"):
        vectors = np.load(work / "embeddings.npy")
        settings = dict(vp["umap"])
        dims = None
        if name == "umap2d":
            settings["min_dist"], dims = max(settings["min_dist"], 0.1), 2
        t1 = time.perf_counter()
        low = clustering.reduce(vectors, settings, n_components=dims)
        info["fit_s"] = round(time.perf_counter() - t1, 2)
        np.save(work / f"{name}.npy", low)
    elif name == "hdbscan":
        low = np.load(work / "umap20.npy")
        t1 = time.perf_counter()
        labels, _, membership = clustering.cluster(low, vp["hdbscan"])
        info["fit_s"] = round(time.perf_counter() - t1, 2)
        info.update(clusters=int(labels.max()) + 1, noise=int((labels < 0).sum()),
                    membership_shape=list(membership.shape))
    info["wall_in_process_s"] = round(time.perf_counter() - t0, 2)
    info["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8100)
    ap.add_argument("--embedder", default="all-mpnet-base-v2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-cluster-size", type=int, default=80, help="HDBSCAN (the builder's default)")
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "vprism.json"))
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args)))
        return

    texts, text_info = synthesise(args.n)
    result = {"n": len(texts), "embedder": args.embedder, "batch_size": args.batch_size, "threads": args.threads,
              "min_cluster_size": args.min_cluster_size,
              "texts": text_info, "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                              "python": platform.python_version()},
              "load_average_before": os.getloadavg(), "stages": {}}
    with tempfile.TemporaryDirectory(prefix="vprism-bench-") as work:
        Path(work, "texts.json").write_text(json.dumps(texts))
        for name in ("embed", "umap20", "umap2d", "hdbscan"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--stage", name, "--work", work,
                                   "--embedder", args.embedder, "--batch-size", str(args.batch_size),
                                   "--threads", str(args.threads), "--min-cluster-size", str(args.min_cluster_size)],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            if proc.returncode:
                raise SystemExit(f"stage {name} failed:\n{proc.stderr[-3000:]}")
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            info["process_wall_s"] = round(time.perf_counter() - t0, 2)
            result["stages"][name] = info
            print(name, json.dumps(info), flush=True)
    result["load_average_after"] = os.getloadavg()
    result["total_process_wall_s"] = round(sum(s["process_wall_s"] for s in result["stages"].values()), 1)
    result["peak_rss_mb"] = max(s["peak_rss_mb"] for s in result["stages"].values())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
