"""Warnings, before any job, for settings that are valid but silently do nothing or mislead.

:func:`warnings_for` takes a validated config and returns plain sentences, each naming the run
or key concerned and what to change. Nothing here fails a study (config validation does that);
the workflow prints these at its start. The learning-rate checks use the schedule the trainer
will use: ``training/settings.py``'s horizon and warmup, and transformers' scheduler formulas.

Each check is a function ``(config, workdir) -> list[str]`` in :data:`CHECKS`; another check
(the judge's probability-mass floor, applied at scoring time) can be added there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from . import paths
from .study import runs_of as config_runs
from .training.registry import settings_for

# transformers' schedulers, as the multiplier of the lr at scheduler step s (0-based): optimizer
# step k (1-based) runs at lambda(k - 1). Others are computed through transformers itself.
_LAMBDAS = {
    "linear": lambda s, w, t: s / max(1, w) if s < w else max(0.0, (t - s) / max(1, t - w)),
    "cosine": lambda s, w, t: s / max(1, w) if s < w else max(0.0, 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, t - w)))),
    "constant": lambda s, w, t: 1.0,
    "constant_with_warmup": lambda s, w, t: s / max(1, w) if s < w else 1.0,
}


def learning_rates(settings, horizon: int, upto: int | None = None) -> list[float]:
    """The learning rate of optimizer steps 1..upto (default: the whole horizon)."""
    upto = min(horizon, upto or horizon)
    warmup = settings.warmup_steps(horizon)
    kind = settings.lr_scheduler_type
    if kind in _LAMBDAS:
        return [settings.learning_rate * _LAMBDAS[kind](k - 1, warmup, horizon) for k in range(1, upto + 1)]
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.learning_rate)
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=horizon)
    rates = []
    for _ in range(upto):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def dataset_size(name: str, spec: dict[str, Any], workdir: str | Path = ".") -> int | None:
    """Training examples of a dataset without preparing it: the prepared table if it exists,
    else the rows of a local file (capped by max_examples); None for a hub dataset not yet prepared."""
    import polars as pl

    prepared = Path(workdir) / paths.dataset_file(name)
    if prepared.is_file():
        try:
            return pl.scan_parquet(prepared).select(pl.len()).collect().item()
        except (OSError, pl.exceptions.ComputeError, pl.exceptions.PolarsError):
            return None  # unreadable (being written, or damaged): its rule or its reader says so; a warning never stops a run
    if spec["source"] == "jsonl":
        with open(Path(workdir) / spec["path"], "rb") as fh:
            count = sum(1 for line in fh if line.strip())
    elif spec["source"] == "parquet":
        count = pl.scan_parquet(Path(workdir) / spec["path"]).select(pl.len()).collect().item()
    else:
        return None
    return min(count, spec["max_examples"]) if spec.get("max_examples") else count


def run_schedules(config: dict[str, Any], workdir: str | Path = ".") -> list[dict[str, Any]]:
    """For each run: its Run, algorithm, settings, examples and horizon (None: unknown yet)."""
    out = []
    for run in config_runs(config):
        algorithm = run.algorithm or "sft"
        settings = settings_for(algorithm, config.get("training"))
        data = run.preference or run.sft
        examples = dataset_size(data, config["datasets"][data], workdir)
        horizon = settings.schedule_steps or (settings.horizon(examples) if examples else None)
        out.append({"run": run, "algorithm": algorithm, "settings": settings,
                    "examples": examples, "horizon": horizon})
    return out


def schedule_warnings(config: dict[str, Any], workdir: str | Path = ".") -> list[str]:
    """Checkpoints trained at lr 0 (warmup on a short schedule), runs that stop before a schedule
    derived from epochs x data ends (its last steps never evaluated; a ``schedule_steps`` set in
    the config is taken as meant), and runs whose max_steps lie beyond it."""
    out = []
    for s in run_schedules(config, workdir):
        run, horizon, algorithm, settings = s["run"], s["horizon"], s["algorithm"], s["settings"]
        where = f"{run.origin} ({run.model_path})"  # runs[i], runs[i] (seed N), sweeps[j] (key=v)
        key = f"training.{algorithm}"
        if horizon is None:
            continue
        origin = (f"{key}.schedule_steps" if settings.schedule_steps else
                  f"{s['examples']} examples x {settings.num_train_epochs:g} epochs / global batch {settings.global_batch_size}")
        schedule = f"{horizon}-step {settings.lr_scheduler_type} schedule ({origin})"
        if run.max_steps > horizon:
            out.append(f"{where}: max_steps {run.max_steps} lies beyond its {schedule}, so the segment for "
                       f"checkpoint-{next(c for c in run.steps if c > horizon)} will fail; raise {key}.num_train_epochs "
                       f"or set {key}.schedule_steps to at least {run.max_steps}")
        rates = learning_rates(settings, horizon, upto=min(run.max_steps, horizon))
        previous = 0
        for step in run.steps:
            segment = rates[previous:min(step, horizon)]
            if segment and all(lr == 0 for lr in segment):
                start = "its start model" if previous == 0 else f"checkpoint-{previous}"
                meaning = ("so its drift from step 0 is only the change of prompt format (plain -> chat)"
                           if run.is_sft and previous == 0 else "so it measures no training at all")
                out.append(f"{where}: checkpoint-{step} is trained at learning rate 0 (the warmup of "
                           f"{settings.warmup_steps(horizon)} step(s) of its {schedule} starts at 0): it holds the "
                           f"weights of {start}, {meaning}; set {key}.warmup_ratio: 0 or use a longer schedule")
            previous = step
        if run.max_steps < horizon and not settings.schedule_steps:  # a schedule_steps set by hand is meant
            out.append(f"{where}: stops at step {run.max_steps} of its {schedule}: its last {horizon - run.max_steps} "
                       f"steps (the end of the learning-rate schedule) are never trained or evaluated; "
                       f"fine if you will raise max_steps later, else set {key}.schedule_steps: {run.max_steps}")
    return out


def unused_settings_warnings(config: dict[str, Any], workdir: str | Path = ".") -> list[str]:
    """Trainer settings for an algorithm no run uses (a typo'd run, or a leftover) do nothing."""
    used = {"sft"} | {r["algorithm"] for r in config["runs"] if "algorithm" in r}
    if "ppo" in used:
        used.add("reward")
    return [f"config key 'training.{name}' is set but no run uses {name}, so it does nothing"
            for name, block in (config.get("training") or {}).items()
            if isinstance(block, dict) and block and name not in used]


def judge_mass_warnings(config: dict[str, Any], workdir: str | Path = ".") -> list[str]:
    """Before scoring: an API judge asked for few top logprobs may not see all three option tokens,
    so their probability mass is small and the stance shares meaningless. (A floor on the mass
    per response is applied where responses are scored.)"""
    judge = config["judge"]
    if judge["backend"] == "openai" and judge.get("top_logprobs", 20) < 10:
        return [f"config key 'judge.top_logprobs' is {judge['top_logprobs']}: the option tokens (A/B/C and "
                f"their variants) often fall outside so few alternatives, leaving too little probability mass "
                f"on the options to be meaningful; use 20 (the most an OpenAI endpoint returns)"]
    name = judge.get("model")
    if judge["backend"] == "local" and name in config["models"]:
        from .estimate import model_parameters

        count = model_parameters(name, config["models"][name], workdir)
        if count and count < SMALL_JUDGE_PARAMETERS:
            return [f"config key 'judge.model': {name!r} has {count / 1e6:.0f}M parameters; a model this small "
                    f"puts little probability mass on the option letters (Gemma-3-270M base: 0.7% on average in "
                    f"docs/own-study.md), so its stances are close to noise; use a larger judge for results"]
    return []


SMALL_JUDGE_PARAMETERS = 1e9


CHECKS: list[Callable[[dict[str, Any], str | Path], list[str]]] = [
    schedule_warnings, unused_settings_warnings, judge_mass_warnings]


def warnings_for(config: dict[str, Any], workdir: str | Path = ".") -> list[str]:
    """Every check's warnings for a validated config (see :data:`CHECKS`)."""
    return [w for check in CHECKS for w in check(config, workdir)]
