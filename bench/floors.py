"""The floors every benchmark figure is set against: what this machine's hardware allows.

- matmul throughput (GFLOP/s, fp32 and bf16, at the torch thread count of the benchmarks),
- memory bandwidth (GB/s, a large tensor copy),
- a model's FLOPs per token from its shape (transformers config): forward = 2 x the
  parameters its matmuls use per token (+ the attention scores over the context),
  training = 6 x parameters per token (forward + backward), the usual estimate.

The floors: prefill tokens/s <= matmul / forward FLOPs per token; decode tokens/s at batch
B <= min(matmul / forward FLOPs, B x bandwidth / weight bytes); training tokens/s <=
matmul / (6 x parameters).

Run: .venv/bin/python bench/floors.py [--threads 1 2] -> results/bench/floors.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)

# Shapes of the paper's models (their configs on the hub; offline here) and the demo's.
SHAPES = {
    "smollm2-135m": dict(hidden=576, layers=30, intermediate=1536, vocab=49152, heads=9, kv_heads=3, tied=True),
    "llama3-3b": dict(hidden=3072, layers=28, intermediate=8192, vocab=128256, heads=24, kv_heads=8, tied=True),
    "qwen3-4b": dict(hidden=2560, layers=36, intermediate=9728, vocab=151936, heads=32, kv_heads=8, tied=True,
                     head_dim=128),
    "llama3-8b": dict(hidden=4096, layers=32, intermediate=14336, vocab=128256, heads=32, kv_heads=8, tied=False),
    "qwen3-8b": dict(hidden=4096, layers=36, intermediate=12288, vocab=151936, heads=32, kv_heads=8, tied=False,
                     head_dim=128),
}


def shape_of(config) -> dict:
    """The SHAPES entry of a transformers config (or of a dict with the same keys)."""
    if isinstance(config, dict):
        return config
    return dict(hidden=config.hidden_size, layers=config.num_hidden_layers, intermediate=config.intermediate_size,
                vocab=config.vocab_size, heads=config.num_attention_heads,
                kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                tied=bool(getattr(config, "tie_word_embeddings", False)),
                head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def parameters(shape: dict) -> dict:
    """Parameter counts: per layer (attention + gated MLP), embedding, LM head, total."""
    d, head_dim = shape["hidden"], shape.get("head_dim") or shape["hidden"] // shape["heads"]
    attn = d * head_dim * shape["heads"] * 2 + d * head_dim * shape["kv_heads"] * 2  # q, o + k, v
    mlp = 3 * d * shape["intermediate"]
    layers = shape["layers"] * (attn + mlp)
    embedding = shape["vocab"] * d
    head = 0 if shape["tied"] else embedding
    return {"layers": layers, "embedding": embedding, "lm_head": head, "total": layers + embedding + head}


def forward_flops_per_token(shape: dict, *, context: int = 0, logits: bool = True) -> float:
    """Matmul FLOPs of one token's forward pass: 2 x (layer weights [+ LM head]) + attention
    over ``context`` earlier tokens (QK^T and AV: 4 x layers x context x heads x head_dim)."""
    p = parameters(shape)
    head_dim = shape.get("head_dim") or shape["hidden"] // shape["heads"]
    attention = 4 * shape["layers"] * context * shape["heads"] * head_dim
    return 2 * (p["layers"] + (p["embedding"] if logits else 0)) + attention


def training_flops_per_token(shape: dict) -> float:
    return 6 * parameters(shape)["total"]


def matmul_gflops(dtype: str, *, n: int = 1024, seconds: float = 1.0) -> float:
    from valuedrift.precision import matmul_gflops as measure

    return measure(dtype, n=n, seconds=seconds)


def memory_bandwidth_gbs(*, megabytes: int = 256, repeats: int = 5) -> float:
    """Best copy bandwidth of a large fp32 tensor (read + write counted)."""
    import torch

    a = torch.empty(megabytes * 2 ** 20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(_timed(lambda: b.copy_(a)) for _ in range(repeats))
    return 2 * a.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    return {"torch_threads": threads,
            "matmul_gflops": {d: round(matmul_gflops(d), 1) for d in ("float32", "bfloat16")},
            "memory_bandwidth_gbs": round(memory_bandwidth_gbs(), 1), "load_average": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="thread counts to measure at (the benchmarks run at 1 or 2)")
    ap.add_argument("--output", type=Path, default=REPO / "results/bench/floors.json")
    args = ap.parse_args()
    result = {"cpus": os.cpu_count(), "by_threads": {str(t): measure(t) for t in args.threads}}
    result["models"] = {name: {"parameters": parameters(s), "forward_flops_per_token": forward_flops_per_token(s),
                               "training_flops_per_token": training_flops_per_token(s)} for name, s in SHAPES.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
