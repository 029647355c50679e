"""Downstream capability evals through lm-evaluation-harness (paper Appendix I, Table 17).

Config ``evals`` names lm_eval tasks (a registered name, or a task YAML of one's own in
``file``), the shot count and which checkpoints of each run are evaluated. One job runs one
task on one checkpoint through ``lm_eval.simple_evaluate`` and writes one JSON results file;
every model call goes through lm_eval's own sqlite cache (``use_cache``), one cache per
checkpoint and task, so a rerun of a deleted result recomputes nothing. The Table 17-shaped
table (rows: model/checkpoint, columns: tasks) is built from those files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from . import paths
from .study import Study, canonical

# Settings of the block that change how fast an eval runs, never its numbers (not rerun
# triggers). ``metric`` picks the table's column from a results file that holds them all.
EXECUTION_KEYS = frozenset({"batch_size", "max_batch_size"})
TABLE_ONLY_KEYS = frozenset({"metric", "label"})
BACKENDS = {"hf": "hf", "vllm": "vllm"}


class EvalsError(ValueError):
    """A problem with the ``evals`` config block or an eval's input, naming the key or file."""


# --- the config block -----------------------------------------------------------------

def task_entries(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Each configured task as a mapping (``task``, ``metric``, optional ``file``, ``num_fewshot``)."""
    entries = []
    for i, item in enumerate(block.get("tasks") or []):
        entry = {"task": item} if isinstance(item, str) else dict(item)
        if not entry.get("task"):
            raise EvalsError(f"config key 'evals.tasks[{i}]' needs a task name")
        entry.setdefault("metric", "acc")
        entries.append(entry)
    return entries


def task_entry(block: dict[str, Any], task: str) -> dict[str, Any]:
    for entry in task_entries(block):
        if entry["task"] == task:
            return entry
    raise EvalsError(f"{task} is not a task of config key 'evals.tasks'")


def evaluated_models(study: Study, block: dict[str, Any]) -> list[str]:
    """Model keys evaluated, each once, in run order: ``checkpoints`` final (each run's start
    and final checkpoint: Table 17's base, SFT and PO rows), all, or a list of steps (0 = a
    run's start model; steps a run lacks are skipped)."""
    wanted = set(block.get("runs") or [r.model_path for r in study.runs])
    which = block.get("checkpoints", "final")
    keys = []
    for run in study.runs:
        if run.model_path not in wanted:
            continue
        steps = [0, *run.steps]
        if which == "final":
            chosen = [0, run.max_steps]
        elif which == "all":
            chosen = steps
        else:
            chosen = [s for s in which if s in steps]
        keys += [run.model_at(s) for s in chosen]
    return list(dict.fromkeys(keys))


def check_config(config: dict[str, Any], workdir: str | os.PathLike = ".") -> None:
    """Reject a bad ``evals`` block before any job: duplicate tasks, a missing task file or one
    defining another task, unknown runs, a backend lm_eval lacks, steps no run has."""
    block = config.get("evals") or {}
    if not block.get("enabled"):
        return
    entries = task_entries(block)
    if not entries:
        raise EvalsError("config key 'evals.tasks' is empty")
    names = [e["task"] for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalsError(f"config key 'evals.tasks' names {', '.join(dupes)} more than once")
    for i, entry in enumerate(entries):
        if "file" in entry:
            path = Path(workdir) / entry["file"]
            if not path.is_file():
                raise EvalsError(f"config key 'evals.tasks[{i}].file': {entry['file']} not found")
            defined = (yaml.safe_load(path.read_text()) or {}).get("task")
            if defined != entry["task"]:
                raise EvalsError(f"config key 'evals.tasks[{i}]': {entry['file']} defines task {defined!r}, "
                                 f"not {entry['task']!r}")
    if block.get("backend", "hf") not in BACKENDS:
        raise EvalsError(f"config key 'evals.backend': {block['backend']!r} is not one of {sorted(BACKENDS)}")
    study = Study(config)
    study.require_runs(block.get("runs"), "evals.runs", EvalsError)
    if not evaluated_models(study, block):
        raise EvalsError(f"config key 'evals.checkpoints': {block.get('checkpoints')!r} selects no checkpoint")


def result_files(models: list[str], tasks: list[str]) -> dict[str, dict[str, str]]:
    """Model key -> task -> its results file."""
    return {m: {t: paths.eval_result(m, t) for t in tasks} for m in models}


def rule_inputs(block: dict[str, Any], model_key: str, task: str) -> dict[str, Any]:
    """An eval job's inputs: the model, and the task's own YAML with its data files when it has one."""
    inputs: dict[str, Any] = {"model": paths.model_dir(model_key)}
    entry = task_entry(block, task)
    if "file" in entry:
        inputs["task_file"] = entry["file"]
        inputs["task_data"] = task_data_files(entry["file"])
    return inputs


def result_settings(block: dict[str, Any], task: str) -> dict[str, Any]:
    """What changes one task's numbers (the rule's params): the task, shots, limit, backend,
    dtype, seed; canonical, so key order, batch size or the table's metric never rerun it."""
    entry = {k: v for k, v in task_entry(block, task).items() if k not in TABLE_ONLY_KEYS}
    shots = entry.pop("num_fewshot", block.get("num_fewshot", 5))
    return canonical({"task": entry, "num_fewshot": shots, "limit": block.get("limit"),
                      "backend": block.get("backend", "hf"), "dtype": block.get("dtype", "auto"),
                      "seed": block.get("seed", 0)})


def execution_settings(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k in EXECUTION_KEYS}


# --- one eval -------------------------------------------------------------------------

def task_spec(entry: dict[str, Any], task_file: str | None) -> str | dict[str, Any]:
    """The task as lm_eval takes it: a registered name, or the task file's config with its
    ``data_files`` made absolute (they are relative to the file's folder)."""
    if task_file is None:
        return entry["task"]
    path = Path(task_file)
    spec = yaml.safe_load(path.read_text())
    files = (spec.get("dataset_kwargs") or {}).get("data_files")
    if files is not None:
        def resolve(f: str) -> str:
            full = (path.parent / f).resolve()
            if not full.is_file():
                raise EvalsError(f"{task_file}: data file {f} not found (looked at {full})")
            return str(full)
        spec["dataset_kwargs"]["data_files"] = (
            {split: resolve(f) for split, f in files.items()} if isinstance(files, dict)
            else [resolve(f) for f in ([files] if isinstance(files, str) else files)])
    return spec


def task_data_files(task_file: str) -> list[str]:
    """The data files a task YAML names, as paths beside it (the rule's inputs)."""
    spec = yaml.safe_load(Path(task_file).read_text()) or {}
    files = (spec.get("dataset_kwargs") or {}).get("data_files") or []
    files = list(files.values()) if isinstance(files, dict) else [files] if isinstance(files, str) else files
    return [str(Path(task_file).parent / f) for f in files]


def run_eval(*, model_dir: str, output: str, cache: str, settings: dict[str, Any],
             task_file: str | None = None, model_key: str | None = None) -> None:
    """Evaluate the model in ``model_dir`` on one task (``settings``: ``result_settings`` plus
    the execution settings) and write lm_eval's results for it to ``output`` (JSON).

    ``cache``: the sqlite file prefix of lm_eval's response cache for this model and task.
    """
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    if not Path(model_dir, "config.json").is_file():
        raise EvalsError(f"{model_dir}: not a model folder (no config.json)")
    entry = settings["task"]
    backend = BACKENDS[settings["backend"]]
    model_args: dict[str, Any] = {"pretrained": str(model_dir), "dtype": settings["dtype"]}
    if backend == "vllm":
        model_args["seed"] = settings["seed"]
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    cached_before = cache_entries(cache)
    seed = settings["seed"]
    out = lm_eval.simple_evaluate(
        model=backend, model_args=model_args, tasks=[task_spec(entry, task_file)],
        num_fewshot=settings["num_fewshot"], limit=settings["limit"], batch_size=settings.get("batch_size", 1),
        max_batch_size=settings.get("max_batch_size"),
        device="cuda" if torch.cuda.is_available() else "cpu", use_cache=cache, task_manager=TaskManager(),
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        log_samples=False)
    if out is None or entry["task"] not in out["results"]:
        raise EvalsError(f"lm_eval returned no results for task {entry['task']} on {model_dir}")
    # accounting: new entries = model calls made; a rerun over a full cache makes none
    cached_after = cache_entries(cache)
    record = {"model": model_key or str(model_dir), "task": entry["task"], "settings": settings,
              "lm_eval_version": lm_eval.__version__,
              "cache": {"file": cache_file(cache), "entries_before": cached_before, "entries_after": cached_after,
                        "model_calls": cached_after - cached_before},
              **{k: out.get(k) for k in ("results", "groups", "group_subtasks", "versions", "n-shot",
                                         "higher_is_better", "n-samples")}}
    _write_text(output, json.dumps(record, indent=2, sort_keys=True, default=str))


def cache_file(cache: str) -> str:
    """The sqlite file lm_eval makes of a ``use_cache`` prefix (one process: rank 0)."""
    return f"{cache}_rank0.db"


def cache_entries(cache: str) -> int:
    """Responses held in an lm_eval cache (0 if none yet)."""
    from sqlitedict import SqliteDict

    if not Path(cache_file(cache)).is_file():
        return 0
    with SqliteDict(cache_file(cache), flag="r") as db:
        return len(db)


# --- Table 17 ---------------------------------------------------------------------------

def metric_of(record: dict[str, Any], metric: str, source: str = "<memory>") -> tuple[float, float | None]:
    """(value, stderr) of ``metric`` for the record's task (a group such as mmlu: its aggregate)."""
    scores = (record.get("results") or {}).get(record["task"]) or {}
    key = next((k for k in scores if k.split(",")[0] == metric), None)
    if key is None:
        have = sorted({k.split(",")[0] for k in scores if "_stderr" not in k and k != "alias"})
        raise EvalsError(f"{source}: task {record['task']} has no metric {metric!r}; it has {have}")
    stderr = scores.get(key.replace(metric, f"{metric}_stderr", 1))
    return float(scores[key]), (float(stderr) if isinstance(stderr, (int, float)) else None)


TABLE_COLUMNS = {"model": pl.String, "label": pl.String, "task": pl.String, "task_label": pl.String,
                 "metric": pl.String, "num_fewshot": pl.Int64, "value": pl.Float64, "stderr": pl.Float64, "n": pl.Int64}


def table_data(results: dict[str, dict[str, str]], labels: dict[str, str], block: dict[str, Any]) -> pl.DataFrame:
    """Table 17 in long form: one row per model and task (``results``: model key -> task -> file)."""
    entries = {e["task"]: e for e in task_entries(block)}
    rows = []
    for model, files in results.items():
        for task, path in files.items():
            record = json.loads(Path(path).read_text())
            value, stderr = metric_of(record, entries[task]["metric"], path)
            shots = (record.get("n-shot") or {}).get(task, record["settings"]["num_fewshot"])
            rows.append({"model": model, "label": labels.get(model, model), "task": task,
                         "task_label": entries[task].get("label", task), "metric": entries[task]["metric"],
                         "num_fewshot": shots, "value": value, "stderr": stderr, "n": (record.get("n-samples") or {}).get(task, {}).get("effective")})
    return pl.DataFrame(rows, schema=TABLE_COLUMNS)


def model_labels(study: Study, models: list[str]) -> dict[str, str]:
    """A row label per model key: ``base (base)`` or the first run holding it, at its step."""
    from .sample_tables import checkpoint_label

    return {m: checkpoint_label(study, m) for m in models}


def wide(long: pl.DataFrame, decimals: int = 4) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the shaped table: model, then one ``value ± stderr`` column per task
    (in the config's order, which the long table keeps)."""
    tasks = long.select("task", "task_label", "metric").unique(maintain_order=True).iter_rows()
    tasks = list(tasks)
    header = ["model", *[f"{label} ({metric}, {_shots(long, task)}-shot)" for task, label, metric in tasks]]
    rows = []
    for model in long["model"].unique(maintain_order=True):
        part = long.filter(pl.col("model") == model)
        cells = [part["label"][0]]
        for task, _, _ in tasks:
            hit = part.filter(pl.col("task") == task)
            cells.append(_value(hit["value"][0], hit["stderr"][0], decimals) if hit.height else "")
        rows.append(cells)
    return header, rows


def _shots(long: pl.DataFrame, task: str) -> str:
    shots = long.filter(pl.col("task") == task)["num_fewshot"].unique().to_list()
    return "/".join(map(str, sorted(shots))) or "?"


def _value(value: float, stderr: float | None, decimals: int) -> str:
    return f"{value:.{decimals}f}" + ("" if stderr is None else f" ± {stderr:.{decimals}f}")


def to_markdown(header: list[str], rows: list[list[str]], caption: str) -> str:
    lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_latex(header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    from .paper_tables import latex_escape

    def cell(text: str) -> str:
        return latex_escape(text).replace("±", "$\\pm$")

    lines = ["% requires \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering", "\\small",
             f"\\caption{{{latex_escape(caption)}}}", f"\\label{{{label}}}", "\\resizebox{\\linewidth}{!}{%",
             f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", "\\toprule",
             " & ".join(cell(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(cell(c) for c in r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


CAPTION = "Downstream task evaluation of the trained models (lm-evaluation-harness; value ± standard error)"


def write_table(*, results: dict[str, dict[str, str]], labels: dict[str, str], block: dict[str, Any],
                outputs: dict[str, str], decimals: int = 4) -> None:
    """Write the Table 17-shaped table: ``outputs`` format (csv, md, tex) -> path. The CSV is
    the long form (full precision), Markdown and LaTeX the wide, rounded one."""
    long = table_data(results, labels, block)
    header, rows = wide(long, decimals)
    for ext, path in outputs.items():
        if ext == "csv":
            _write_text(path, long.write_csv())
        elif ext == "md":
            _write_text(path, to_markdown(header, rows, CAPTION))
        else:
            _write_text(path, to_latex(header, rows, CAPTION, "tab:downstream-evals"))


def read_table(path: str, decimals: int = 4) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table from its CSV (what the report shows)."""
    return wide(pl.read_csv(path, schema=TABLE_COLUMNS), decimals)


def _write_text(path: str, text: str) -> None:
    from . import atomic

    atomic.write_text(path, text)
