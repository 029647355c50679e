"""What workflow/rules/controlled.smk asks of a config: the checks of the `synthetic` and
`dataset_stance` blocks, and each rule's inputs, params and targets (so the rules hold no
code). The stages themselves: ``synthetic``, ``dataset_stance``, ``value_gap``.
"""

from __future__ import annotations

import copy
from typing import Any

from . import paths


def synthetic_datasets(config: dict[str, Any]) -> dict[str, str]:
    """Datasets of source synthetic: name -> aligned stance."""
    return {n: ds.get("aligned", "") for n, ds in config["datasets"].items() if ds["source"] == "synthetic"}


def stance_datasets(config: dict[str, Any]) -> list[str]:
    return list((config.get("dataset_stance") or {}).get("datasets") or [])


def gap_datasets(config: dict[str, Any]) -> list[str]:
    """The preference datasets of the stance analysis (they get a value gap)."""
    return [n for n in stance_datasets(config) if config["datasets"][n]["kind"] == "preference"]


def check(config: dict[str, Any], problems: list[str]) -> None:
    """Config problems of the controlled experiment, each naming its key (appended to ``problems``)."""
    datasets = config["datasets"]
    synth = config.get("synthetic")
    for name, aligned in synthetic_datasets(config).items():
        if datasets[name]["kind"] != "preference":
            problems.append(f"config key 'datasets.{name}.kind': a synthetic dataset is a preference dataset")
        if aligned not in ("support", "oppose"):
            problems.append(f"config key 'datasets.{name}.aligned' is required for source synthetic (support or oppose)")
        if synth is None:
            problems.append(f"config key 'synthetic' is required: dataset {name!r} has source synthetic")
    for name, ds in datasets.items():
        if ds["source"] != "synthetic" and ds.get("aligned"):
            problems.append(f"config key 'datasets.{name}.aligned' is for source synthetic only")
    if synth is not None:
        for i, source in enumerate(synth["sources"]):
            ds = datasets.get(source)
            if ds is None:
                problems.append(f"config key 'synthetic.sources[{i}]': unknown dataset {source!r}; datasets: {', '.join(datasets)}")
            elif ds["kind"] != "preference" or ds["source"] == "synthetic":
                problems.append(f"config key 'synthetic.sources[{i}]': {source!r} must be a (non-synthetic) preference dataset")
        if not (synth["llm"].get("model") or synth["llm"].get("model_dir")):
            problems.append("config key 'synthetic.llm.model' is required (a key of models, a model folder or a served model name)")
    for i, name in enumerate(stance_datasets(config)):
        if name not in datasets:
            problems.append(f"config key 'dataset_stance.datasets[{i}]': unknown dataset {name!r}; datasets: {', '.join(datasets)}")


# synthetic rules ----------------------------------------------------------------------

def synthetic_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `synthetic` block with every schema default, its LLM's model key resolved to the
    imported base model folder (what the generation rule depends on)."""
    from .config import _fill_defaults, schema

    synth = copy.deepcopy(config["synthetic"])
    _fill_defaults(synth, schema()["properties"]["synthetic"])
    llm = synth["llm"]
    if llm.get("model") in config["models"] and not llm.get("base_url"):
        llm["model"] = paths.model_dir(paths.base_model_key(llm["model"]))
    return synth


def retrieval_params(config: dict[str, Any]) -> dict[str, Any]:
    synth = synthetic_settings(config)
    return {k: synth[k] for k in ("embedder", "min_similarity", "per_category")}


def generation_params(config: dict[str, Any]) -> dict[str, Any]:
    synth = synthetic_settings(config)
    keep = ("llm", "max_tokens", "temperature", "seed", "values", "refusal_patterns", "drop", "max_pairs")
    return {k: synth[k] for k in keep}


def generation_model_input(config: dict[str, Any]) -> list[str]:
    model = (config.get("synthetic") or {}).get("llm", {}).get("model")
    return [paths.model_dir(paths.base_model_key(model))] if model in config["models"] else []


def source_files(config: dict[str, Any]) -> dict[str, str]:
    return {name: paths.dataset_file(name) for name in config["synthetic"]["sources"]}


# dataset stance rules -----------------------------------------------------------------

def stance_settings(config: dict[str, Any]) -> dict[str, Any]:
    from .config import _fill_defaults, schema

    block = copy.deepcopy(config["dataset_stance"])
    _fill_defaults(block, schema()["properties"]["dataset_stance"])
    return block


def targets(config: dict[str, Any]) -> list[str]:
    """Everything the controlled experiment adds to a study (the `controlled` target rule)."""
    out = []
    if config.get("synthetic") is not None:
        out += [paths.synthetic_pairs_file(), *(paths.dataset_file(n) for n in synthetic_datasets(config))]
    if stance_datasets(config):
        out += [paths.dataset_stance_table(), paths.dataset_stance_plot("html"), paths.dataset_stance_plot("png")]
    if gap_datasets(config):
        out += [paths.value_gap_table(), paths.value_gap_plot("html"), paths.value_gap_plot("png")]
    return out


def report_layout(config: dict[str, Any], *, every_role: bool = False) -> dict[str, Any]:
    """The controlled experiment's files the report shows, by role (empty roles: not in this study).

    ``every_role``: also the files of the synthetic, stance and gap roles when the config has no
    such block (the report job's study holds only ``study.STUDY_BLOCKS``: its view shows a role
    whose files are all among the rule's inputs)."""
    synth = every_role or config.get("synthetic") is not None
    return {
        "synthetic": ({"retrieval": paths.synthetic_stats_file("retrieval"),
                       "generation": paths.synthetic_stats_file("generation")} if synth else {}),
        "alignments": [{**g, "files": alignment_files(g)} for g in alignment_groups(config)],
        "tables": [{"spec": spec, "files": aligned_table_files(spec)} for spec in aligned_table_specs(config)],
        "stance": ({"table": paths.dataset_stance_table(), "html": paths.dataset_stance_plot("html"),
                    "png": paths.dataset_stance_plot("png")} if every_role or stance_datasets(config) else {}),
        "gap": ({"table": paths.value_gap_table(), "html": paths.value_gap_plot("html"),
                 "png": paths.value_gap_plot("png")} if every_role or gap_datasets(config) else {}),
    }


def report_inputs(config: dict[str, Any]) -> list[str]:
    """Every file of ``report_layout`` (the report rule's input ``controlled``)."""
    lay = report_layout(config)
    files = [*lay["synthetic"].values(), *lay["stance"].values(), *lay["gap"].values()]
    files += [f for part in ("alignments", "tables") for item in lay[part] for f in item["files"].values()]
    return files


def llm_is_api(llm: dict[str, Any]) -> bool:
    """Whether an LLM block calls an endpoint (valuedrift.llm.make_client's choice of backend)."""
    return (llm.get("backend") or ("openai" if llm.get("base_url") else "transformers")) == "openai"


def embeds_on_gpu(settings: dict[str, Any]) -> bool:
    """Whether a retrieval stage's embedder runs on an accelerator (a GPU job); else a CPU job."""
    return settings["embedder"].get("device", "cpu") != "cpu"


def aligned_runs(config: dict[str, Any]) -> list:
    """PO runs on the synthetic data without training overrides (a sweep's runs are in its own
    figure), in config order."""
    from .study import runs_of

    synth = synthetic_datasets(config)
    return [r for r in runs_of(config) if r.preference in synth and not r.overrides]


def aligned_table_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One Tables 13-16 table per SFT model with runs on synthetic data: its spec for
    ``paper_tables.build`` (kind ``aligned``; ``runs``: run path -> chosen stance)."""
    synth = synthetic_datasets(config)
    specs: dict[tuple[str, str], dict[str, Any]] = {}
    for run in aligned_runs(config):
        spec = specs.setdefault((run.base, run.sft), {"kind": "aligned", "base": run.base, "sft": run.sft, "runs": {}})
        spec["runs"][run.model_path] = synth[run.preference]
    return list(specs.values())


def aligned_table_files(spec: dict[str, Any]) -> dict[str, str]:
    return {ext: paths.aligned_table(spec["base"], spec["sft"], ext) for ext in paths.TABLE_FORMATS}


def alignment_groups(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Section 6's comparison: per SFT model, algorithm and seed, its support-aligned and its
    oppose-aligned run (same base, SFT checkpoint, algorithm and seed; base, sft, algorithm, seed,
    ``name``: the figure's and table's path part, e.g. ``dpo`` or ``dpo-seed1``, support and oppose
    model paths), where the study has both. Each seed of a seeded study is a pair of its own."""
    synth = synthetic_datasets(config)
    by_key: dict[tuple[str, str, str, int | None], dict[str, str]] = {}
    for run in aligned_runs(config):
        by_key.setdefault((run.base, run.sft, run.algorithm, run.seed), {})[synth[run.preference]] = run.model_path
    return [{"base": b, "sft": s, "algorithm": a, "seed": seed, "name": paths.alignment_name(a, seed),
             "support": v["support"], "oppose": v["oppose"]}
            for (b, s, a, seed), v in by_key.items() if {"support", "oppose"} <= set(v)]


def alignment_group(config: dict[str, Any], wildcards) -> dict[str, Any]:
    """The alignment group of an alignment_plot target (its base, sft and alignment wildcards)."""
    key = (wildcards.base, wildcards.sft, wildcards.alignment)
    for group in alignment_groups(config):
        if (group["base"], group["sft"], group["name"]) == key:
            return group
    raise ValueError(f"no support- and oppose-aligned {key[2]} runs of {key[0]}/sft-{key[1]}")


def alignment_pair(config: dict[str, Any], wildcards) -> list[str]:
    """[support-aligned, oppose-aligned] run paths of an alignment_plot target."""
    group = alignment_group(config, wildcards)
    return [group["support"], group["oppose"]]


def alignment_label(group: dict[str, Any]) -> str:
    """``base SFT on sft, ALGO`` (``, seed N`` for one seed of a seeded study)."""
    from .study import algorithm_name

    seed = "" if group["seed"] is None else f", seed {group['seed']}"
    return f"{group['base']} SFT on {group['sft']}, {algorithm_name(group['algorithm'])}{seed}"


def alignment_files(group: dict[str, Any]) -> dict[str, str]:
    """The figure (html, png) and the drift-contrast table of an alignment group."""
    b, s, n = group["base"], group["sft"], group["name"]
    return {"html": paths.alignment_plot(b, s, n, "html"), "png": paths.alignment_plot(b, s, n, "png"),
            "table": paths.alignment_contrast_table(b, s, n)}


ALIGNED_LABELS = ("support-aligned", "oppose-aligned")


def write_alignment(*, trajectories: list[str], drift_tables: list[str], title: str, html: str, png: str,
                    table: str, options: dict[str, Any] | None = None) -> None:
    """Figures 7, 11-14: the support-aligned and the oppose-aligned run side by side, one row
    per topic (``trajectories``, ``drift_tables``: support first), and their drift contrast."""
    from . import atomic
    from .report import figures

    figures.comparison_figure(trajectories, list(ALIGNED_LABELS), html=html, png=png, title=title,
                              column_title="synthetic preference data", options=options)
    atomic.write_csv(alignment_contrast(*drift_tables), table)


def alignment_contrast(support_drift: str, oppose_drift: str):
    """Per topic and stance: drift magnitude of the support-aligned and of the oppose-aligned
    run (their drift.csv files), and the difference support-aligned minus oppose-aligned."""
    import polars as pl

    from . import tables

    cols = ["topic", "stance", "start", "magnitude", "drift_time"]
    s = tables.read(support_drift, "drift").select(cols)
    o = tables.read(oppose_drift, "drift").select(cols)
    both = s.join(o, on=["topic", "stance"], suffix="_oppose_aligned").rename(
        {"start": "start_support_aligned", "magnitude": "magnitude_support_aligned",
         "drift_time": "drift_time_support_aligned"})
    return both.with_columns((pl.col("magnitude_support_aligned") - pl.col("magnitude_oppose_aligned"))
                             .alias("magnitude_difference")).sort("topic", "stance")
