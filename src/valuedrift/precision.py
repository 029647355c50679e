"""Compute precision by capability: what ``dtype: auto`` (generation, judge) and
``bf16: auto`` (training) mean on the machine a job runs on.

On a GPU: bfloat16 (float16 where the GPU has no bf16). On a CPU, bf16 matmuls are fast
only with hardware support -- AVX512-BF16 or AMX (~4x fp32 on this project's 2-core
machine) -- and several times slower than fp32 without it (emulated). So a CPU gets
bfloat16 only when its flags say so and, if asked, a short matmul measurement confirms
it (``measure``: bf16 at least ``min_speedup`` x fp32). An explicit dtype always wins.
The choice and why are returned as a record for the run's metadata (``describe``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FAST_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Choice:
    dtype: str                    # float32 | bfloat16 | float16
    setting: str                  # what the config asked for (auto or a dtype)
    device: str                   # cpu | cuda
    reason: str
    cpu_flags: tuple[str, ...] = ()
    measured_gflops: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict:
        return asdict(self)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def matmul_gflops(dtype: str, *, n: int = 512, seconds: float = 0.25) -> float:
    """Measured n x n matmul throughput in GFLOP/s at ``dtype`` on the CPU, with torch's
    current thread count (best of the repetitions that fit in ``seconds``)."""
    import torch

    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    a @ b  # warm-up (kernel selection)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return 2 * n ** 3 / best / 1e9


def choose(setting: str = "auto", *, device: str | None = None, flags: set[str] | None = None,
           measure: bool = False, min_speedup: float = 1.5) -> Choice:
    """The dtype to compute in. ``setting`` is the config's value: ``auto`` or a dtype."""
    if setting != "auto":
        if setting not in DTYPES:
            raise ValueError(f"unknown dtype {setting!r} (auto, {', '.join(DTYPES)})")
        return Choice(setting, setting, device or _device(), "set in the config")
    device = device or _device()
    if device == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return Choice("bfloat16", setting, device, "GPU with bf16")
        return Choice("float16", setting, device, "GPU without bf16")
    flags = cpu_flags() if flags is None else flags
    fast = tuple(f for f in FAST_BF16_FLAGS if f in flags)
    if not fast:
        return Choice("float32", setting, device, "CPU without AVX512-BF16/AMX: bf16 would be emulated (slower)")
    if not measure:
        return Choice("bfloat16", setting, device, f"CPU with {'/'.join(fast)}", fast)
    gflops = {d: round(matmul_gflops(d), 1) for d in ("float32", "bfloat16")}
    speedup = gflops["bfloat16"] / gflops["float32"]
    if speedup >= min_speedup:
        return Choice("bfloat16", setting, device, f"CPU with {'/'.join(fast)}; bf16 matmul {speedup:.1f}x fp32",
                      fast, gflops)
    return Choice("float32", setting, device,
                  f"CPU with {'/'.join(fast)} but bf16 matmul only {speedup:.1f}x fp32 (< {min_speedup}x)", fast, gflops)


def training_bf16(setting: bool | str | None, *, on_gpu: bool) -> bool:
    """A trainer's bf16 flag: true/false as set; None (the default) bf16 on GPU only, as
    before; ``auto`` by capability (:func:`choose`), so a CPU with AVX512-BF16/AMX trains
    with bf16 autocast."""
    if setting is None:
        return on_gpu
    if setting == "auto":
        return choose("auto", device="cuda" if on_gpu else "cpu").dtype == "bfloat16"
    return bool(setting)


def _device() -> str:
    from .models import inference_device

    return inference_device()


def describe(choice: Choice) -> str:
    return f"{choice.dtype} ({choice.reason}; setting {choice.setting}, device {choice.device})"

