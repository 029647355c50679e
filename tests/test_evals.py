"""Downstream evals through lm-evaluation-harness (Table 17) and the sample tables (Tables 5-8).

The lm_eval tests run the real harness (HF backend, CPU) on the tiny model and on the task the
project authored (data/evals/), so no hub is needed; the sample tables are built from
generations and stances tables written through the project's own table writer.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, planned_jobs, snakemake, tiny_config, write_config
from valuedrift import evals, paths, sample_tables, tables
from valuedrift.config import ConfigError
from valuedrift.report import evals_view
from valuedrift.report.page import Links, render
from valuedrift.study import Study

DEMO_TASK = {"task": "valuedrift_demo_mc", "file": "data/evals/valuedrift_demo_mc.yaml", "metric": "acc",
             "label": "Demo MC"}
RUNS = [{"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 4},
        {"base": "tiny", "sft": "demo-instruct", "algorithm": "dpo", "preference": "demo-support", "every": 2,
         "max_steps": 4}]


def evals_config(**block) -> dict:
    cfg = tiny_config(Path("unused-model"), runs=copy.deepcopy(RUNS))
    cfg["evals"] = {"enabled": True, "tasks": [dict(DEMO_TASK)], "num_fewshot": 2, "limit": 3, **block}
    return cfg


# --- config: which checkpoints, which settings rerun an eval, bad blocks -----------------------

def test_checkpoints_select_models_each_once():
    study = Study(evals_config())
    final = evals.evaluated_models(study, {"checkpoints": "final"})
    # base, final SFT (= DPO start, listed once), final DPO: Table 17's rows
    assert final == ["tiny/base", "tiny/sft-demo-instruct/checkpoint-4",
                     "tiny/sft-demo-instruct/dpo-demo-support/checkpoint-4"]
    assert len(evals.evaluated_models(study, {"checkpoints": "all"})) == 5
    assert evals.evaluated_models(study, {"checkpoints": [0, 2]}) == [
        "tiny/base", "tiny/sft-demo-instruct/checkpoint-2", "tiny/sft-demo-instruct/checkpoint-4",
        "tiny/sft-demo-instruct/dpo-demo-support/checkpoint-2"]
    only_dpo = {"checkpoints": "final", "runs": ["tiny/sft-demo-instruct/dpo-demo-support"]}
    assert evals.evaluated_models(study, only_dpo) == final[1:]


def test_only_result_settings_are_rule_params():
    block = evals_config()["evals"]
    settings = evals.result_settings(block, "valuedrift_demo_mc")
    assert settings == {"backend": "hf", "dtype": "auto", "limit": 3, "num_fewshot": 2, "seed": 0,
                        "task": {"file": DEMO_TASK["file"], "task": "valuedrift_demo_mc"}}
    faster = {**block, "batch_size": 32, "max_batch_size": 64,
              "tasks": [{**DEMO_TASK, "metric": "acc_norm", "label": "other"}]}
    assert evals.result_settings(faster, "valuedrift_demo_mc") == settings  # table-only and speed settings
    per_task = {**block, "tasks": [{**DEMO_TASK, "num_fewshot": 0}]}
    assert evals.result_settings(per_task, "valuedrift_demo_mc")["num_fewshot"] == 0
    assert list(evals.result_settings(block, "valuedrift_demo_mc")) == sorted(settings)  # canonical


@pytest.mark.parametrize("change, message", [
    ({"tasks": [DEMO_TASK, DEMO_TASK]}, "more than once"),
    ({"tasks": [{**DEMO_TASK, "file": "data/evals/missing.yaml"}]}, "evals.tasks[0].file"),
    ({"tasks": [{**DEMO_TASK, "task": "other_name"}]}, "defines task 'valuedrift_demo_mc'"),
    ({"runs": ["tiny/sft-nope"]}, "evals.runs"),
    ({"checkpoints": [7]}, "selects no checkpoint"),
])
def test_bad_evals_blocks_are_rejected_naming_the_key(change, message):
    with pytest.raises(evals.EvalsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evals.check_config(evals_config(**change), workdir=REPO)


def test_the_authored_task_file_resolves_its_data_beside_it():
    spec = evals.task_spec(DEMO_TASK, str(REPO / DEMO_TASK["file"]))
    data = Path(spec["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data.is_file()
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) >= 10 and all(0 <= r["answer"] < len(r["choices"]) for r in rows)
    assert evals.task_data_files(DEMO_TASK["file"]) == ["data/evals/valuedrift_demo_mc.jsonl"]


# --- the rule, the cache and Table 17, on the real harness -------------------------------------

@pytest.mark.slow
def test_lm_eval_rule_then_cached_rerun_then_table_in_the_report(workdir, tiny_model, tmp_path_factory):
    """Two base models (the tiny model and another seed of it) on the authored task: one job per
    model and task, a Table 17-shaped table, no model call on a rerun, and its report section."""
    from tiny_model import build_tiny_model

    from conftest import demo_texts

    other = build_tiny_model(tmp_path_factory.mktemp("tiny-other") / "model", demo_texts(), seed=1)
    cfg = tiny_config(tiny_model, runs=[{"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 2},
                                        {"base": "other", "sft": "demo-instruct", "every": 2, "max_steps": 2}])
    cfg["models"]["other"] = {"source": "local", "path": str(other), "prompt_format": "plain"}
    cfg["evals"] = {"enabled": True, "tasks": [DEMO_TASK], "num_fewshot": 2, "limit": 3, "checkpoints": [0],
                    "dtype": "float32", "batch_size": 4}
    write_config(workdir, cfg)
    target = paths.evals_table("md")
    assert planned_jobs(workdir, target) == {"import_base_model": 2, "downstream_eval": 2, "evals_table": 1}
    snakemake(workdir, target)

    result = workdir / paths.eval_result("tiny/base", "valuedrift_demo_mc")
    record = json.loads(result.read_text())
    scores = record["results"]["valuedrift_demo_mc"]
    assert 0 <= scores["acc,none"] <= 1 and record["n-samples"]["valuedrift_demo_mc"]["effective"] == 3
    assert record["n-shot"]["valuedrift_demo_mc"] == 2
    # 3 questions x 4 choices, each a log-likelihood request, all new and now in the cache
    assert record["cache"]["model_calls"] == 12 and record["cache"]["entries_after"] == 12
    cache = workdir / evals.cache_file(paths.eval_cache("tiny/base", "valuedrift_demo_mc"))
    assert cache.is_file()

    md = (workdir / target).read_text()
    assert "| tiny (base) |" in md and "| other (base) |" in md and "Demo MC (acc, 2-shot)" in md
    tex = (workdir / paths.evals_table("tex")).read_text()
    assert "\\begin{tabular}{lr}" in tex and "$\\pm$" in tex
    long = pl.read_csv(workdir / paths.evals_table("csv"))
    assert long["model"].to_list() == ["tiny/base", "other/base"]
    assert long.filter(pl.col("model") == "tiny/base")["value"][0] == pytest.approx(scores["acc,none"])

    # nothing to redo; speed settings rerun nothing; a result setting reruns exactly the evals
    assert planned_jobs(workdir, target) == {}
    write_config(workdir, {**cfg, "evals": {**cfg["evals"], "batch_size": 1, "tasks": [{**DEMO_TASK, "label": "x"}]}})
    assert planned_jobs(workdir, target).get("downstream_eval") is None
    write_config(workdir, {**cfg, "evals": {**cfg["evals"], "limit": 2}})
    assert planned_jobs(workdir, target) == {"downstream_eval": 2, "evals_table": 1}

    # a deleted result is recomputed from the cache: no model call, the same numbers
    write_config(workdir, cfg)
    result.unlink()
    snakemake(workdir, paths.eval_result("tiny/base", "valuedrift_demo_mc"))
    again = json.loads(result.read_text())
    assert again["cache"]["model_calls"] == 0 and again["cache"]["entries_before"] == 12
    assert again["results"] == record["results"]

    # the report's section shows the table
    index = workdir / paths.report_index()
    files = [str(workdir / paths.evals_table(ext)) for ext in paths.TABLE_FORMATS]
    view = evals_view.evals_view(files, Links(str(index)))
    html = render("evals_section.html.j2", evals=view)
    assert '<section id="evals">' in html and "<td>tiny (base)</td>" in html and "<td>other (base)</td>" in html
    assert f"{scores['acc,none']:.4f} ± " in html and 'href="../tables/downstream-evals.tex"' in html


@pytest.mark.slow
def test_paper_config_plans_the_downstream_evals_offline(workdir):
    """config/paper.yaml's evals block: the paper's 4 tasks on every run's start and final checkpoint."""
    from conftest import no_network_prefix

    shutil.copytree(REPO / "config", workdir / "config", dirs_exist_ok=True)
    jobs = planned_jobs(workdir, paths.evals_table("md"), "--configfile", "config/paper.yaml",
                        prefix=no_network_prefix())
    import yaml

    from valuedrift import config as vd_config

    cfg = vd_config.validate(yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    models = evals.evaluated_models(Study(cfg), cfg["evals"])
    assert jobs["downstream_eval"] == 4 * len(models) and jobs["evals_table"] == 1


# --- sample tables (Tables 5-8) ------------------------------------------------------------

def write_sample_inputs(root: Path, study: Study, models: list[str]) -> tuple[str, dict[str, dict[str, str]]]:
    """Questions (2 topics x 2) and, per model, 2 samples per question with known stances."""
    q = pl.DataFrame({"question_id": ["abortion-2", "abortion-1", "immigration-1", "immigration-2"],
                      "category": ["Discussions on Abortion"] * 2 + ["Immigration Policies"] * 2,
                      "topic": ["abortion", "abortion", "immigration", "immigration"],
                      "question": ["Q a2?", "Q a1?", "Q i1?", "Q i2?"]})
    questions = str(root / "questions.parquet")
    tables.write(q, questions, "questions")
    files = {}
    for m_i, model in enumerate(models):
        ids = [qid for qid in q["question_id"] for _ in range(2)]
        gens = pl.DataFrame({"question_id": ids, "sample": [0, 1] * 4, "prompt": ["p"] * 8,
                             "response": [f"{model} says {qid}/{s} " + "word " * 50 for qid, s in zip(ids, [0, 1] * 4)],
                             "n_tokens": [52] * 8})
        support = [round(0.1 * (m_i + 1), 2)] * 8
        stances = pl.DataFrame({"question_id": ids, "sample": [0, 1] * 4, "p_support": support,
                                "p_neutral": [0.5] * 8, "p_oppose": [round(0.5 - s, 2) for s in support],
                                "option_mass": [0.9] * 8, "scorable": [True] * 8})
        if m_i == 0:  # one unscorable response (abortion-1, sample 0): shown without probabilities
            hit = (pl.col("question_id") == "abortion-1") & (pl.col("sample") == 0)
            stances = stances.with_columns(
                scorable=~hit, **{c: pl.when(hit).then(None).otherwise(pl.col(c))
                                  for c in ("p_support", "p_neutral", "p_oppose", "option_mass")})
        g_path, s_path = str(root / f"g{m_i}.parquet"), str(root / f"s{m_i}.parquet")
        tables.write(gens, g_path, "generations")
        tables.write(stances, s_path, "stances")
        files[model] = {"generations": g_path, "stances": s_path}
    return questions, files


def test_sample_tables_show_chosen_checkpoints_beside_their_stances(tmp_path):
    study = Study(evals_config())
    block = {"enabled": True, "topics": ["abortion"], "questions_per_topic": 1, "samples_per_question": 1,
             "checkpoints": ["start", "end"], "max_chars": 40}
    labels = sample_tables.chosen_models(study, block)
    # SFT start = base; SFT end = DPO start (once); DPO end
    assert list(labels) == ["tiny/base", "tiny/sft-demo-instruct/checkpoint-4",
                            "tiny/sft-demo-instruct/dpo-demo-support/checkpoint-4"]
    assert labels["tiny/base"] == "tiny (base)"
    assert labels["tiny/sft-demo-instruct/dpo-demo-support/checkpoint-4"].endswith("DPO (demo-support) @ step 4")
    questions, files = write_sample_inputs(tmp_path, study, list(labels))
    outputs = {ext: str(tmp_path / f"samples.{ext}") for ext in paths.TABLE_FORMATS}
    sample_tables.write_tables(questions=questions, models=files, labels=labels, block=block, outputs=outputs)

    data = pl.read_csv(outputs["csv"])
    assert data["question_id"].unique().to_list() == ["abortion-1"]  # the first by question_id
    assert data["model"].to_list() == list(labels) and (data["sample"] == 0).all()
    assert data["response"][1].endswith("word ")  # the CSV keeps whole responses
    assert data["p_support"].to_list()[1:] == [0.2, 0.3] and data["scorable"].to_list() == [False, True, True]
    md = Path(outputs["md"]).read_text()
    assert "Prompt (abortion-1): Q a1?" in md and "| tiny (base) |" in md
    assert "| – | – | – |" in md and "| 0.20 | 0.50 | 0.30 |" in md and "…" in md
    tex = Path(outputs["tex"]).read_text()
    assert tex.count("\\begin{table}") == 1 and "Prompt: Q a1?" in tex and "-- & -- & --" in tex

    view = evals_view.samples_view(list(outputs.values()), block, Links(str(tmp_path / "report/index.html")))
    html = render("samples_section.html.j2", samples=view)
    assert '<section id="samples">' in html and "<h3>abortion</h3>" in html and "<td>0.30</td>" in html
    assert "tiny (base)" in html and 'href="../samples.csv"' in html

    two = {**block, "topics": [], "questions_per_topic": 2, "samples_per_question": 2, "checkpoints": [4]}
    data = sample_tables.build(questions=questions, models=files, labels=labels, block=two)
    assert data["topic"].unique(maintain_order=True).to_list() == ["abortion", "immigration"]
    assert data.height == 2 * 2 * 2 * 3


def test_sample_tables_reject_unknown_topics_and_checkpoints(tmp_path):
    study = Study(evals_config())
    labels = sample_tables.chosen_models(study, {"checkpoints": ["end"]})
    questions, files = write_sample_inputs(tmp_path, study, list(labels))
    with pytest.raises(ConfigError, match="'report.samples.topics': abortoin not a topic of .*questions.parquet"):
        sample_tables.build(questions=questions, models=files, labels=labels, block={"topics": ["abortoin"]})
    cfg = evals_config()
    cfg["report"] = {"samples": {"enabled": True, "checkpoints": [3]}}
    with pytest.raises(ConfigError, match="selects no checkpoint"):
        sample_tables.check_config(cfg)
