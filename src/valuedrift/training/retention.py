"""Optimizer-state retention: which checkpoints keep what resuming a segment needs.

Adam keeps two fp32 moments per parameter, 8 bytes per parameter: 1.1 GB for a 135M
model, 64 GB for an 8B one, against 0.27 / 16 GB of bf16 weights. So on disk a checkpoint
with optimizer state is about 5x one without. Config ``training.optimizer_state``:

``all``   every checkpoint keeps it (any segment can be retrained from its predecessor);
          disk = checkpoints x (weights + 8 B/param).
``last``  (default) only the newest checkpoint of each run keeps it: a segment drops it
          from the checkpoint it resumed from once its own checkpoint is published. Enough
          to extend a run; rebuilding an older segment needs ``all``.
          disk = checkpoints x weights + runs x 8 B/param.
``none``  the final checkpoint of a run drops it too; extending the run then fails with
          an error naming this key. disk = checkpoints x weights.

Scheduler and RNG states (kilobytes) are always kept. Dropping files inside an input
folder never makes Snakemake rerun anything: a directory output's age is that of the
``.snakemake_timestamp`` Snakemake writes into it when the job finishes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

POLICIES = ("all", "last", "none")
# HF Trainer: optimizer.pt; FSDP with sharded state: optimizer_0/; DeepSpeed: global_step*/
_PATTERNS = ("optimizer.pt", "optimizer_*", "global_step*")


def optimizer_state_paths(checkpoint: str | Path) -> list[Path]:
    checkpoint = Path(checkpoint)
    return sorted({p for pattern in _PATTERNS for p in checkpoint.glob(pattern)})


def has_optimizer_state(checkpoint: str | Path) -> bool:
    return bool(optimizer_state_paths(checkpoint))


def size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def drop_optimizer_state(checkpoint: str | Path) -> int:
    """Delete a checkpoint's optimizer state; returns the bytes freed."""
    freed = 0
    for path in optimizer_state_paths(checkpoint):
        freed += size_bytes(path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return freed


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"training.optimizer_state must be one of {', '.join(POLICIES)}, not {policy!r}")


def check_resumable(previous: str | Path, policy: str) -> None:
    """A segment cannot resume exactly without the optimizer state of its predecessor."""
    if not has_optimizer_state(previous):
        raise RuntimeError(
            f"{previous} holds no optimizer state (training.optimizer_state: {policy}), so the next "
            f"segment cannot resume it exactly. Its state was dropped once a later segment was trained "
            f"from it ('last') or because it was a run's final checkpoint ('none'). Set "
            f"training.optimizer_state: all to keep every checkpoint resumable, and rebuild this "
            f"checkpoint (snakemake --forcerun on it) so it is saved with its state")


def after_segment(*, policy: str, previous: str | Path | None, output: str | Path, final: bool) -> int:
    """Apply the policy once ``output`` is published; returns the bytes freed."""
    check_policy(policy)
    freed = 0
    if policy != "all" and previous is not None:
        freed += drop_optimizer_state(previous)
    if policy == "none" and final:
        freed += drop_optimizer_state(output)
    return freed
