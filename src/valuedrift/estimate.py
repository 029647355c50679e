"""Disk and time a study will take, from its config alone, so it can be sized before it starts.

Disk: every model folder (the imported base, each checkpoint, PPO's reward model) holds its
weights at ``models.<name>.dtype`` (parameters read from the weights' headers, or
``models.<name>.parameters``); Adam's optimizer state is 8 bytes per trained parameter, kept per
``training.optimizer_state`` (``training/retention.py``); PPO checkpoints also hold the value
model (a second copy of the weights, trained too). LoRA trains few parameters: its optimizer
state is left out. Generations and stances are small by comparison (an upper bound per row).

Time: FLOPs (6 x parameters x tokens trained, 2 x parameters x tokens generated or judged; an
upper bound: every sequence counted at its max length) divided by an effective throughput the
caller gives, plus a fixed cost per job that loads a model (process start, imports, loading the
weights); only as good as those two numbers (calibrate them on a small run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import models as vd_models
from . import paths
from .study import runs_of as config_runs
from .preflight import run_schedules
from .topics import CATEGORY_TOPICS

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ADAM_BYTES_PER_PARAMETER = 8
ROW_OVERHEAD_BYTES = 200  # question id, question text, sample index, parquet framing
BYTES_PER_TOKEN = 4  # of generated text, before compression


@dataclass
class Estimate:
    items: list[tuple[str, float]] = field(default_factory=list)  # (what, bytes)
    peak_extra_bytes: float = 0.0  # transient: a segment's new state exists before the old one is dropped
    flops: float = 0.0
    model_jobs: int = 0  # jobs that load a model (import, segment, reward model, generate, judge)
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> float:
        return sum(b for _, b in self.items)


def model_parameters(name: str, spec: dict[str, Any], workdir: str | Path = ".") -> int | None:
    """Parameters of a base model: the imported folder if built, else its weights' headers,
    else ``models.<name>.parameters``."""
    imported = Path(workdir) / paths.model_dir(paths.base_model_key(name))
    count = vd_models.safetensors_parameters(imported) if imported.is_dir() else None
    if count is None:
        try:
            count = vd_models.parameter_count(vd_models.resolve_weights(name, spec, workdir))
        except (OSError, ValueError):
            count = None
    return count or (int(spec["parameters"]) if spec.get("parameters") else None)


def question_count(config: dict[str, Any], workdir: str | Path = ".") -> int | None:
    q = config["questions"]
    if q["source"] == "vprism":
        vp = q.get("vprism") or {}
        return ((vp.get("sample") or {}).get("per_category", 50)) * len(vp.get("categories") or CATEGORY_TOPICS)
    from .questions import read_question_file

    try:
        df = read_question_file(Path(workdir) / q["path"])
    except Exception:  # a broken file is the questions rule's error to report
        return None
    if q.get("per_category"):
        return q["per_category"] * df["category"].n_unique()
    return df.height


def estimate(config: dict[str, Any], workdir: str | Path = ".", *, tflops: float = 0.1,
             job_overhead_s: float = 30.0) -> Estimate:
    """Disk and FLOPs of a validated config. Time: FLOPs at ``tflops`` (effective TFLOP/s) plus
    ``job_overhead_s`` per job that loads a model (process start, imports, loading weights)."""
    est = Estimate()
    policy = config["training"]["optimizer_state"]
    params = {name: model_parameters(name, spec, workdir) for name, spec in config["models"].items()}
    for name, count in params.items():
        if count is None:
            est.notes.append(f"model {name!r}: parameter count unknown before import (set models.{name}.parameters "
                             f"to include it); its models are left out")
    width = {name: DTYPE_BYTES[spec.get("dtype", "float32")] for name, spec in config["models"].items()}

    for name, count in params.items():
        if count:
            est.items.append((f"{name}: imported base model ({count / 1e6:.0f}M parameters x {width[name]} B)",
                              count * width[name]))
    reward_models = set()
    for s in run_schedules(config, workdir):
        run, settings = s["run"], s["settings"]
        count = params.get(run.base)
        if not count:
            continue
        copies = 2 if run.algorithm == "ppo" else 1  # policy + value model
        n = len(run.steps)
        est.items.append((f"{run.model_path}: {n} checkpoints x {copies * count * width[run.base] / 1e9:.2f} GB weights",
                          n * copies * count * width[run.base]))
        state = 0 if settings.lora else copies * count * ADAM_BYTES_PER_PARAMETER
        kept = {"all": n, "last": 1, "none": 0}[policy]
        if state and kept:
            est.items.append((f"{run.model_path}: optimizer state of {kept} checkpoint(s) ({policy}) x "
                              f"{state / 1e9:.2f} GB", kept * state))
        est.peak_extra_bytes = max(est.peak_extra_bytes, state)
        if run.algorithm == "ppo":
            reward_models.add((run.base, run.sft_part, run.preference))
        tokens = min(run.max_steps, s["horizon"] or run.max_steps) * settings.global_batch_size * settings.max_length
        est.flops += 6 * copies * count * tokens
        est.model_jobs += len(run.steps)
        if s["horizon"] is None:
            est.notes.append(f"{run.model_path}: dataset size unknown before it is prepared; FLOPs assume max_steps")
    est.model_jobs += sum(1 for c in params.values() if c) + len(reward_models)
    for base, sft, preference in sorted(reward_models):
        count = params[base]
        est.items.append((f"reward model {base}/sft-{sft}/{preference}", count * width[base]
                          + (count * ADAM_BYTES_PER_PARAMETER if policy == "all" else 0)))

    n_questions = question_count(config, workdir)
    gen = config["generation"]
    evaluated = {}
    for run in config_runs(config):
        for step in [0, *run.steps]:
            evaluated[run.sampled_at(step)] = run.base
    if n_questions is None:
        est.notes.append("questions: count unknown (unreadable file); generations left out")
    else:
        rows = n_questions * gen["samples"]
        per_model = rows * (ROW_OVERHEAD_BYTES + gen["max_new_tokens"] * BYTES_PER_TOKEN)
        est.items.append((f"generations + stances: {len(evaluated)} models x {rows} responses (upper bound)",
                          len(evaluated) * per_model))
        judge_params = params.get(config["judge"].get("model")) if config["judge"]["backend"] == "local" else None
        est.model_jobs += 2 * len(evaluated)  # generate + judge
        for key, base in evaluated.items():
            count = params.get(base) or 0
            prompt = 64  # question + template tokens
            est.flops += 2 * count * rows * (prompt + gen["max_new_tokens"])
            if judge_params:
                est.flops += 2 * judge_params * rows * (prompt + gen["max_new_tokens"] + 300)  # judge prompt
    compute_min = est.flops / (tflops * 1e12) / 60
    overhead_min = est.model_jobs * job_overhead_s / 60
    est.notes.append(f"time, one job at a time: about {compute_min + overhead_min:.0f} min = {est.flops:.2e} FLOPs "
                     f"at an effective {tflops:g} TFLOP/s ({compute_min:.0f} min, an upper bound) + {est.model_jobs} "
                     f"model-loading jobs x {job_overhead_s:g} s; pass --tflops / --job-overhead-s for your hardware")
    return est


def format_estimate(est: Estimate) -> str:
    lines = ["Disk (estimate):"]
    width = max((len(what) for what, _ in est.items), default=10)
    for what, size in est.items:
        lines.append(f"  {what:<{width}}  {size / 1e9:8.2f} GB")
    lines.append(f"  {'total':<{width}}  {est.total_bytes / 1e9:8.2f} GB")
    if est.peak_extra_bytes:
        lines.append(f"  {'peak while a segment runs (+ one optimizer state)':<{width}}  "
                     f"{(est.total_bytes + est.peak_extra_bytes) / 1e9:8.2f} GB")
    lines += [f"Note: {n}" for n in est.notes]
    return "\n".join(lines)
