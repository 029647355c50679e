"""The study a validated config describes: its runs, how they group into tables and
figures, the artifacts each stage yields, and which settings of a stage change a result.

Rules and package code share this one model: the report's inputs, the tables' specs and
the figures' groups are computed here once, so what a rule declares and what the code
reads cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from . import paths

ALGORITHM_NAMES = {"ppo": "PPO", "dpo": "DPO", "simpo": "SimPO"}


@dataclass(frozen=True)
class Run:
    """One training phase: SFT of a base model, or PO of an SFT model.

    ``every`` is the checkpoint interval and ``max_steps`` the last step built; the
    learning-rate schedule of the whole run is set separately (see training), so
    raising ``max_steps`` adds checkpoints without making the existing ones stale.
    """

    base: str
    sft: str
    every: int
    max_steps: int
    algorithm: str | None = None
    preference: str | None = None
    sft_max_steps: int | None = None  # final step of the SFT run a PO run starts from
    # training settings of this run only (``runs[i].overrides``, or a sweep's value), sorted by key
    overrides: tuple[tuple[str, Any], ...] = field(default=())
    # one seed of a run repeated over seeds (``runs[i].seeds`` or the study's ``seeds``): the
    # trainer's seed and the generation's sampling seed; None: unseeded, today's paths
    seed: int | None = None
    # the seed of the SFT run this run's chain belongs to (an SFT run's own seed; a PO run of a
    # seeded SFT run has that run's seed); None: the SFT part of the path names no seed
    sft_seed: int | None = None
    # the config entry this run comes from, for messages (``runs[2] (seed 1)``, ``sweeps[0] (beta=0.5)``)
    origin: str = field(default="", compare=False)

    @property
    def variant(self) -> str:
        """The overrides as a path part, e.g. ``beta0.05``; "" for none (today's paths)."""
        return "-".join(f"{key}{_path_value(value)}" for key, value in self.overrides)

    @property
    def algorithm_part(self) -> str:
        """The ``{algorithm}`` part of a PO run's path: ``dpo``, ``dpo-beta0.05``, or with a seed of
        its own (its SFT run unseeded) ``dpo-seed1`` / ``dpo-beta0.05-seed1``."""
        parts = [self.algorithm, *([self.variant] if self.variant else [])]
        if self.seed is not None and self.sft_seed is None:
            parts.append(f"seed{self.seed}")
        return "-".join(parts)

    @property
    def is_sft(self) -> bool:
        return self.algorithm is None

    @property
    def sft_part(self) -> str:
        """The ``{sft}`` part of the path: the SFT dataset, ``-seed<N>`` appended in a seeded chain."""
        return self.sft if self.sft_seed is None else f"{self.sft}-seed{self.sft_seed}"

    @property
    def sft_path(self) -> str:
        return f"{self.base}/sft-{self.sft_part}"

    @property
    def model_path(self) -> str:
        """``{base}/sft-{sft}`` or ``{base}/sft-{sft}/{algorithm}-{preference}``."""
        if self.is_sft:
            return self.sft_path
        return f"{self.sft_path}/{self.algorithm_part}-{self.preference}"

    @property
    def steps(self) -> list[int]:
        """Checkpoint steps after the start: every, 2*every, ..., and max_steps itself."""
        return checkpoint_steps(self.every, self.max_steps)

    @property
    def start_model(self) -> str:
        """Model key of step 0: the base model for SFT, the final SFT checkpoint for PO."""
        if self.is_sft:
            return paths.base_model_key(self.base)
        if self.sft_max_steps is None:
            raise ValueError(f"PO run {self.model_path} does not know its SFT run's final step")
        return paths.checkpoint_key(self.sft_path, self.sft_max_steps)

    @property
    def sft_final_model(self) -> str:
        """Model key of the final checkpoint of the SFT run this run belongs to."""
        if self.is_sft:
            return paths.checkpoint_key(self.sft_path, self.max_steps)
        return self.start_model

    @property
    def reward_model(self) -> str:
        """PPO's reward model folder: one per SFT model (a seeded SFT run's seed has its own)."""
        return paths.reward_model_dir(self.base, self.sft_part, self.preference)

    def model_at(self, step: int) -> str:
        """Model key of the checkpoint at ``step`` (0 = start model)."""
        return self.start_model if step == 0 else paths.checkpoint_key(self.model_path, step)

    @property
    def evaluated_models(self) -> list[str]:
        """Model keys of every point of the trajectory, step 0 first."""
        return [self.model_at(s) for s in [0, *self.steps]]

    def sampled_at(self, step: int) -> str:
        """Key of the answers (generations, stances) at ``step``: the model key, except at the
        start of a seeded run whose start model was not sampled with its seed (the base model,
        an unseeded SFT run's end), where the start is sampled again as ``<model key>/seed-<N>``."""
        key = self.model_at(step)
        if step == 0 and self.seed is not None and not (not self.is_sft and self.sft_seed == self.seed):
            return paths.seeded_sample_key(key, self.seed)
        return key

    @property
    def sampled_keys(self) -> list[str]:
        """Keys of the answers of every point of the trajectory, step 0 first."""
        return [self.sampled_at(s) for s in [0, *self.steps]]

    @property
    def unseeded(self) -> "Run":
        """The same run without its seed: its model path names the run's seed group."""
        return replace(self, seed=None, sft_seed=None)

    def previous_step(self, step: int) -> int:
        """The checkpoint a segment ending at ``step`` resumes from (0 = start model)."""
        steps = [0, *self.steps]
        if step not in steps[1:]:
            raise ValueError(f"{step} is not a checkpoint step of {self.model_path}: {steps[1:]}")
        return steps[steps.index(step) - 1]

    @property
    def label(self) -> str:
        """Short label within a table or figure: the SFT dataset, or ALGO (preference)."""
        if self.is_sft:
            return self.sft if self.seed is None else f"{self.sft} (seed {self.seed})"
        settings = "".join(f", {key}={value}" for key, value in self.overrides)
        seed = "" if self.seed is None else f", seed {self.seed}"
        return f"{algorithm_name(self.algorithm)} ({self.preference}{settings}{seed})"

    @property
    def study_label(self) -> str:
        """The run's name across the study: ``base · SFT data`` or ``base · SFT data → ALGO (preference)``."""
        if self.is_sft:
            return f"{self.base} · {self.label}"
        return f"{self.base} · {self.sft} → {self.label}"

    @property
    def identity(self) -> dict[str, str | None]:
        """The columns that name a run in the study's long tables."""
        out = {"run": self.model_path, "phase": "sft" if self.is_sft else "po", "base": self.base,
               "sft": self.sft, "algorithm": self.algorithm, "preference": self.preference}
        return out if self.seed is None else {**out, "seed": str(self.seed)}


def _path_value(value: Any) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+_]", "_", text)


def algorithm_name(algorithm: str) -> str:
    return ALGORITHM_NAMES.get(algorithm, algorithm.upper())


def checkpoint_steps(every: int, max_steps: int) -> list[int]:
    if every <= 0 or max_steps <= 0:
        raise ValueError(f"every ({every}) and max_steps ({max_steps}) must be positive")
    steps = list(range(every, max_steps + 1, every))
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps


def runs_of(config: dict[str, Any]) -> list[Run]:
    """The training phases of a validated config, PO runs linked to their SFT run's end,
    each sweep (``sweeps``) expanded into one run per value after the run it varies.

    Seeds: an SFT run with ``seeds`` (its own, else the study's ``seeds``) is one run per seed,
    and so is every PO run of it (seed N starting from the SFT run's seed N); a PO run of an
    unseeded SFT run may list ``seeds`` of its own (every seed starting from the one SFT model)."""
    study_seeds = config.get("seeds") or None
    sft_end = {(r["base"], r["sft"]): r["max_steps"] for r in config["runs"] if "algorithm" not in r}
    sft_seeds = {(r["base"], r["sft"]): r.get("seeds") or study_seeds
                 for r in config["runs"] if "algorithm" not in r}
    runs = []
    for i, r in enumerate(config["runs"]):
        is_sft = "algorithm" not in r
        chain = sft_seeds.get((r["base"], r["sft"]))
        one = Run(base=r["base"], sft=r["sft"], every=r["every"], max_steps=r["max_steps"],
                  algorithm=r.get("algorithm"), preference=r.get("preference"),
                  sft_max_steps=None if is_sft else sft_end.get((r["base"], r["sft"])),
                  overrides=tuple(sorted((r.get("overrides") or {}).items())), origin=f"runs[{i}]")
        if chain:  # the SFT run is seeded: this run (SFT or PO) follows each of its seeds
            runs += [replace(one, seed=seed, sft_seed=seed, origin=f"runs[{i}] (seed {seed})") for seed in chain]
        elif not is_sft and r.get("seeds"):
            runs += [replace(one, seed=seed, origin=f"runs[{i}] (seed {seed})") for seed in r["seeds"]]
        else:
            runs.append(one)
    by_path = {run.model_path: run for run in runs}
    for j, sweep in enumerate(config.get("sweeps") or []):
        of = by_path.get(sweep["of"])
        if of is None:
            continue  # config.validate names the missing run
        for value in sweep["values"]:
            runs.append(replace(of, overrides=tuple(sorted({**dict(of.overrides), sweep["key"]: value}.items())),
                                origin=f"sweeps[{j}] ({sweep['key']}={value!r})"))
    return runs


def run_collisions(runs: list[Run]) -> list[tuple[int, int, str]]:
    """(first index, second index, path) of runs whose artifacts would share one path."""
    seen: dict[str, int] = {}
    out = []
    for i, run in enumerate(runs):
        if run.model_path in seen:
            out.append((seen[run.model_path], i, run.model_path))
        seen.setdefault(run.model_path, i)
    return out


@dataclass(frozen=True)
class Sweep:
    """One training setting varied over values for one run (``sweeps[i]``; paper Appendix J)."""

    of: Run
    key: str
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        """The sweep's figure name within its SFT model's folder: ``dpo-beta-<preference>``, with
        the swept run's seed (``dpo-seed1-beta-<preference>``) when it is one seed of a seeded
        run, so that sweeps of two seeds of one run get a figure each."""
        algorithm = self.of.algorithm if self.of.seed is None else f"{self.of.algorithm}-seed{self.of.seed}"
        return f"{algorithm}-{self.key}-{self.of.preference}"

    @property
    def values(self) -> list[Any]:
        return [dict(r.overrides)[self.key] for r in self.runs]

    def lines(self, training: dict[str, Any] | None) -> list[tuple[str, Run]]:
        """(value label, run) of the sweep's figure: the run it varies (its own value) first."""
        from .training.registry import settings_for

        own = dict(self.of.overrides).get(self.key, getattr(settings_for(self.of.algorithm, training), self.key, None))
        return [(f"{own} (as configured)", self.of), *[(str(v), r) for v, r in zip(self.values, self.runs)]]


def run_key(wildcards: dict[str, str]) -> str:
    """The model path of the run a rule's wildcards belong to. A reward model
    (base, sft, preference; no algorithm) belongs to the SFT run it starts from."""
    if "run" in wildcards:
        return wildcards["run"]
    key = f"{wildcards['base']}/sft-{wildcards['sft']}"
    if "algorithm" in wildcards:
        key += f"/{wildcards['algorithm']}-{wildcards['preference']}"
    return key


# --- settings that change a result ---------------------------------------------------------
# A rule's params are its rerun trigger (Snakemake compares their repr), so they hold only
# what changes the rule's output, in a canonical form. The keys below change how fast or
# where a job runs, never what it writes; scripts read them from the config directly.
EXECUTION_KEYS: dict[str, frozenset[str]] = {
    "generation": frozenset({"batch_size"}),
    "judge": frozenset({"batch_size", "concurrency", "max_retries", "timeout_s", "cache_dir", "api_key_env",
                        "base_url", "max_unscorable_fraction", "price_per_million_prompt_tokens",
                        "price_per_million_completion_tokens", "allow_http", "cache_namespace"}),
    # an LLM client (V-PRISM stages and later LLM stages): the model and sampling are results
    "llm": frozenset({"batch_size", "concurrency", "max_retries", "timeout_s", "cache_dir", "api_key_env",
                      "base_url", "backoff_base_s", "backoff_max_s", "progress", "desc", "allow_http",
                      "cache_namespace", "config_key",
                      "price_per_million_prompt_tokens", "price_per_million_completion_tokens"}),
    # global_batch_size fixes the optimisation; per-device batch and accumulation only split it
    "training": frozenset({"per_device_batch_size", "gradient_checkpointing", "logging_steps"}),
}


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively: its repr ignores key order."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def result_settings(block: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    """The part of a config block that changes a stage's results, canonical."""
    drop = EXECUTION_KEYS.get(stage, frozenset())
    return canonical({k: v for k, v in (block or {}).items() if k not in drop})


# the config blocks the report shows
STUDY_BLOCKS = ("models", "datasets", "questions", "training", "runs", "sweeps", "seeds", "generation", "judge",
                "drift")


def report_trigger(config: dict[str, Any]) -> dict[str, Any]:
    """What of the study the report's params compare: every shown block without its execution
    settings (the page itself shows the whole config, read from it by the job)."""
    out = {}
    for block in STUDY_BLOCKS:
        if block not in config:
            continue
        value = config[block]
        if block == "training":
            value = {k: result_settings(v, "training") if isinstance(v, dict) else v for k, v in value.items()}
        elif block in EXECUTION_KEYS:
            value = result_settings(value, block)
        out[block] = value
    return canonical(out)


def execution_settings(block: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    """The part of a config block that only changes how a stage runs (never a rerun trigger)."""
    keep = EXECUTION_KEYS.get(stage, frozenset())
    return {k: v for k, v in (block or {}).items() if k in keep}


def job_settings(params_block: dict[str, Any], config_block: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    """What a job runs with: its rule's params (the result settings) plus the execution
    settings of the same config block, which a job reads from the config itself."""
    return {**params_block, **execution_settings(config_block, stage)}


# --- the study ---------------------------------------------------------------------------

class Study:
    """Runs of a validated config, their groupings for tables and figures, and target lists."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.runs: list[Run] = runs_of(config)
        self._by_path = {run.model_path: run for run in self.runs}

    def run(self, model_path: str) -> Run:
        try:
            return self._by_path[model_path]
        except KeyError:
            from .config import ConfigError

            raise ConfigError(f"{model_path} is not a run of this config; runs: {', '.join(self._by_path)}") from None

    def run_for(self, wildcards: dict[str, str]) -> Run:
        return self.run(run_key(wildcards))

    def require_runs(self, names: list[str] | None, key: str, error: type[Exception] | None = None) -> None:
        """``names`` (a config list at ``key``) are all runs of this study, else ``error`` naming them."""
        from .config import ConfigError

        known = {r.model_path for r in self.runs}
        unknown = [r for r in names or [] if r not in known]
        if unknown:
            raise (error or ConfigError)(f"config key '{key}': {', '.join(unknown)} not a run of this config; "
                                         f"runs: {', '.join(sorted(known))}")

    @cached_property
    def sweeps(self) -> list[Sweep]:
        out = []
        for sweep in self.config.get("sweeps") or []:
            of = self.run(sweep["of"])
            runs = [self.run(replace(of, overrides=tuple(sorted({**dict(of.overrides), sweep["key"]: v}.items())))
                             .model_path) for v in sweep["values"]]
            out.append(Sweep(of=of, key=sweep["key"], runs=tuple(runs)))
        return out

    def sweep(self, base: str, sft: str, name: str) -> Sweep:
        for sweep in self.sweeps:
            if (sweep.of.base, sweep.of.sft, sweep.name) == (base, sft, name):
                return sweep
        raise KeyError(f"no sweep {name} of {base}/sft-{sft}")

    def training_settings(self, run: Run, algorithm: str | None = None) -> dict[str, Any]:
        """The config's ``training.<algorithm>`` block with the run's overrides (all keys)."""
        algorithm = algorithm or ("sft" if run.is_sft else run.algorithm)
        block = dict(self.config.get("training", {}).get(algorithm) or {})
        if algorithm == (run.algorithm or "sft"):
            block = {**block, **dict(run.overrides)}
        # a seeded run trains with its seed (and so does the reward model of a seeded SFT run)
        return block if run.seed is None else {**block, "seed": run.seed}

    @property
    def algorithm_parts(self) -> list[str]:
        """Every ``{algorithm}`` path part of the PO runs (``dpo``, ``dpo-beta0.05``, ...)."""
        return sorted({r.algorithm_part for r in self.runs if not r.is_sft})

    @property
    def labels(self) -> dict[str, str]:
        return {r.model_path: r.study_label for r in self.runs}

    @cached_property
    def sft_groups(self) -> dict[str, list[Run]]:
        """SFT runs per base model (compared side by side: one column per SFT dataset)."""
        groups: dict[str, list[Run]] = {}
        for run in self.runs:
            if run.is_sft:
                groups.setdefault(run.base, []).append(run)
        return groups

    @cached_property
    def po_groups(self) -> dict[tuple[str, str], list[Run]]:
        """PO runs per SFT model (base, sft): one column per algorithm and preference data."""
        groups: dict[tuple[str, str], list[Run]] = {}
        for run in self.runs:
            if not run.is_sft:
                groups.setdefault((run.base, run.sft), []).append(run)
        return groups

    @cached_property
    def table_specs(self) -> list[dict[str, Any]]:
        """The paper-shaped tables the runs give: one SFT table per base, one PO table per SFT model."""
        specs = [{"kind": "sft", "base": base, "sft": None} for base in self.sft_groups]
        return specs + [{"kind": "po", "base": base, "sft": sft} for base, sft in self.po_groups]

    @cached_property
    def evaluated_models(self) -> list[str]:
        """Every model generated from and judged, each once (step 0 of PO runs is shared), by the
        key of its answers (``Run.sampled_at``: a seeded run's start has its own)."""
        return list(dict.fromkeys(m for run in self.runs for m in run.sampled_keys))

    @cached_property
    def sampling_seeds(self) -> dict[str, int]:
        """The sampling seed of every answer key of a seeded run (other keys use generation.seed)."""
        return {key: run.seed for run in self.runs if run.seed is not None for key in run.sampled_keys}

    def sampling_seed(self, sample_key: str) -> int | None:
        return self.sampling_seeds.get(sample_key)

    @cached_property
    def seed_groups(self) -> dict[str, dict[int, Run]]:
        """Runs repeated over seeds, by the unseeded run's model path, then seed (config order)."""
        groups: dict[str, dict[int, Run]] = {}
        for run in self.runs:
            if run.seed is not None:
                groups.setdefault(run.unseeded.model_path, {})[run.seed] = run
        return groups

    def seed_outputs(self) -> list[str]:
        """The across-seed tables and seed-band figures of every seed group."""
        return [f for group in self.seed_groups for f in (
            paths.run_drift_across_seeds(group), paths.run_trajectory_across_seeds(group),
            paths.seed_bands_plot(paths.run_seeds_dir(group), "png"),
            paths.seed_bands_plot(paths.run_seeds_dir(group), "html"))]

    # target lists ------------------------------------------------------------------------

    def drift_outputs(self) -> list[str]:
        out = []
        for run in self.runs:
            mp = run.model_path
            out += [paths.drift_table(mp), paths.trajectory_plot(mp, "png"), paths.trajectory_plot(mp, "html")]
        return out

    def study_figures(self, ext: str) -> list[str]:
        """The cross-run figures: heatmap, comparisons, training curves."""
        out = [paths.drift_heatmap(ext)]
        out += [paths.sft_comparison_plot(base, ext) for base in self.sft_groups]
        out += [paths.po_comparison_plot(base, sft, ext) for base, sft in self.po_groups]
        out += [paths.sweep_plot(s.of.base, s.of.sft, s.name, ext) for s in self.sweeps]
        return out + [paths.training_plot(ext)]

    def table_files(self) -> list[str]:
        return [paths.paper_table(spec, ext) for spec in self.table_specs for ext in paths.TABLE_FORMATS]

    def report_inputs(self, extra: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Every file the report reads, by role: the report rule's named input, and the
        only files ``report.write_report`` opens."""
        runs = self.runs
        inputs: dict[str, Any] = {
            "questions": paths.questions_file(),
            "study_drift": paths.study_drift_table(),
            "drift_tables": [paths.drift_table(r.model_path) for r in runs],
            "trajectories": [paths.trajectory_file(r.model_path) for r in runs],
            "training_logs": [paths.training_log(r.model_path) for r in runs],
            "run_figures": [f for r in runs for f in (paths.trajectory_plot(r.model_path, "png"),
                                                      paths.trajectory_plot(r.model_path, "html"))],
            "study_figures": self.study_figures("png") + self.study_figures("html"),
            "tables": self.table_files(),
            "accounting": [paths.judge_accounting_file(m) for m in self.evaluated_models],
            "drilldowns": [paths.drilldown_page(r.model_path) for r in runs],
        }
        inputs.update(extra or {})
        return inputs
