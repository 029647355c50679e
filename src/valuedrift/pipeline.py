"""File-in, file-out steps, one per Snakemake rule.

Each takes plain paths and settings, so it is unit-testable without Snakemake; the
scripts in ``workflow/scripts`` only unpack ``snakemake.input/params/output`` into
these calls.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from . import atomic, tables

log = logging.getLogger("valuedrift")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def build_questions(spec: dict[str, Any], output: str, *, workdir: str | Path = ".", seed: int = 0) -> None:
    from .questions import read_question_file, sample_per_category

    df = read_question_file(Path(workdir) / spec["path"])
    df = sample_per_category(df, spec.get("per_category"), seed=seed)
    tables.write(df.sort("category", "question_id"), output, "questions")
    log.info("wrote %d questions over %d categories to %s", len(df), df["category"].n_unique(), output)


def import_model(spec: dict[str, Any], output: str, *, name: str = "<name>", needs_chat_template: bool = False) -> None:
    """``spec``'s chat_template, when a file, is an input of the rule (so editing it re-imports)."""
    from .models import chat_template_text, import_base_model

    t0 = time.perf_counter()
    template = chat_template_text(spec.get("chat_template"), key=f"models.{name}.chat_template")
    import_base_model(spec, output, name=name, chat_template=template, needs_chat_template=needs_chat_template)
    log.info("imported base model (%s) into %s in %.1f s", spec["source"], output, time.perf_counter() - t0)


def prepare_dataset(spec: dict[str, Any], output: str, *, workdir: str | Path = ".") -> None:
    from .datasets import prepare

    prepare(spec, output, workdir=workdir)  # logs and stores its row counts


def train(*, algorithm: str, settings: dict[str, Any], start_model: str, previous: str | None, data: str,
          output: str, step: int, reward_model: str | None = None, optimizer_state: str = "all",
          final: bool = False) -> None:
    from .training import registry
    from .training.segment import train_segment

    algo = registry.get(algorithm)
    resolved = algo.settings().with_overrides(settings)
    rows = pl.read_parquet(data).to_dicts()
    log.info("%s: training up to step %d from %s", algorithm, step, previous or start_model)
    t0 = time.perf_counter()
    info = train_segment(algorithm=algorithm, settings=resolved, start_model=start_model, previous=previous,
                         output=output, step=step, rows=rows, reward_model=reward_model,
                         optimizer_state=optimizer_state, final=final)
    log.info("%s segment %d -> %d (of %d) done in %.1f s", algorithm, info["start_step"], step,
             info["horizon"], time.perf_counter() - t0)
    if info.get("optimizer_state_freed_bytes"):
        log.info("optimizer_state %s: dropped %.1f MB of optimizer state", optimizer_state,
                 info["optimizer_state_freed_bytes"] / 1e6)


def train_reward(*, settings: dict[str, Any], start_model: str, data: str, output: str,
                 optimizer_state: str = "all") -> None:
    """The reward model for PPO: one run over the preference data, from the final SFT model.
    It is never extended, so its optimizer state is kept only under ``optimizer_state: all``."""
    from .training.settings import RewardSettings
    from .training.segment import train_segment

    resolved = RewardSettings().with_overrides(settings)
    rows = pl.read_parquet(data).to_dicts()
    horizon = resolved.horizon(len(rows))
    t0 = time.perf_counter()
    train_segment(algorithm="reward", settings=resolved, start_model=start_model, previous=None,
                  output=output, step=horizon, rows=rows,
                  optimizer_state="all" if optimizer_state == "all" else "none", final=True)
    log.info("reward model: %d steps on %d pairs in %.1f s", horizon, len(rows), time.perf_counter() - t0)


def generate(*, model_dir: str, questions: str, output: str, settings: dict[str, Any], prompt_format: str) -> None:
    """Sample answers to every question; ``settings``: the ``generation`` config block."""
    from .generation import SamplingSettings, format_prompt, generate_table, make_generator

    qs = tables.read(questions, "questions")
    gen = make_generator(settings["backend"], model_dir, dtype=settings["dtype"], batch_size=settings["batch_size"])
    if getattr(gen, "precision", None) is not None:
        from .precision import describe

        log.info("generation precision: %s", describe(gen.precision))
    prompts = [format_prompt(gen.tokenizer, q, prompt_format, settings["base_prompt_template"])
               for q in qs["question"]]
    sampling = SamplingSettings(**{k: settings[k] for k in ("samples", "temperature", "top_p", "max_new_tokens", "seed")})
    t0 = time.perf_counter()
    table = generate_table(gen, qs, prompts, sampling)
    elapsed = time.perf_counter() - t0
    tables.write(table, output, "generations")
    log.info("%d responses, %d tokens in %.1f s (%.1f tok/s) -> %s", len(table), table["n_tokens"].sum(),
             elapsed, table["n_tokens"].sum() / max(elapsed, 1e-9), output)


def judge(*, generations: str, questions: str, output: str, accounting: str, backend: str,
          judge_kwargs: dict[str, Any], max_unscorable_fraction: float, calibration: bool = False,
          min_option_mass: float = 0.0) -> None:
    from .judge import judge_table, make_judge

    gens = tables.read(generations, "generations")
    qs = tables.read(questions, "questions")
    judge_obj = make_judge(backend, **judge_kwargs)
    t0 = time.perf_counter()
    table = judge_table(judge_obj, gens, qs, max_unscorable_fraction=max_unscorable_fraction,
                        calibration=calibration, min_option_mass=min_option_mass)
    elapsed = time.perf_counter() - t0
    tables.write(table, output, "stances")
    stats = {"backend": backend, "responses": len(table), "unscorable": int((~table["scorable"]).sum()),
             "mean_option_mass": table["option_mass"].mean(), "seconds": round(elapsed, 2),
             "calibration": calibration, "min_option_mass": min_option_mass}
    stats.update(getattr(judge_obj, "accounting", lambda: {})())
    atomic.write_json(accounting, stats)
    log.info("judged %d responses in %.1f s -> %s", len(table), elapsed, output)


def trajectory(*, stances: dict[int, str], questions: str, output: str, resamples: int, confidence: float,
               seed: int) -> None:
    from . import metrics

    qs = tables.read(questions, "questions")
    by_step = {int(step): tables.read(path, "stances") for step, path in stances.items()}
    table = metrics.trajectory(by_step, qs, resamples=resamples, confidence=confidence, seed=seed)
    tables.write(table, output, "trajectory")


def drift(*, trajectory: str, output: str, start: str | None = None, end: str | None = None,
          questions: str | None = None, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> None:
    """drift.csv from a trajectory; with the start and end stance tables (and the questions)
    also the magnitude's paired-bootstrap CI, p-value and significance (valuedrift.significance)."""
    from . import metrics, significance

    table = metrics.drift(tables.read(trajectory, "trajectory"))
    if start is not None and end is not None and questions is not None:
        sig = significance.magnitude_significance(tables.read(start, "stances"), tables.read(end, "stances"),
                                                  tables.read(questions, "questions"), resamples=resamples,
                                                  confidence=confidence, seed=seed)
        table = significance.with_significance(table, sig)
    tables.write(table, output, "drift")


def start_job(log_path: str | os.PathLike | None, threads: int | None = None) -> None:
    """What every rule script does first: log to the rule's log file, use the job's threads."""
    configure_logging(log_path)
    set_threads(threads)


def configure_logging(log_path: str | os.PathLike | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)

    def log_uncaught(kind, value, tb):
        # so that the rule's log file (which Snakemake points users to) holds the traceback
        log.error("failed: %s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught


def judge_kwargs(cfg: dict[str, Any], judge_model_dir: str | None) -> dict[str, Any]:
    """Backend constructor arguments from the ``judge`` config section."""
    if cfg["backend"] in ("local", "vllm"):
        return {"model_dir": judge_model_dir or cfg["model"], "dtype": cfg["dtype"], "batch_size": cfg["batch_size"],
                "cache_dir": cfg.get("cache_dir")}
    keys = ("base_url", "model", "api_key_env", "top_logprobs", "max_tokens", "concurrency", "max_retries",
            "timeout_s", "price_per_million_prompt_tokens", "price_per_million_completion_tokens", "cache_dir",
            "allow_http", "cache_namespace")
    return {k: cfg[k] for k in keys if k in cfg}
