"""The whole DAG through Snakemake on a tiny random-init model (real trl, real inference)."""

from __future__ import annotations

import json

import pytest

import re

from conftest import no_network_prefix, planned_jobs, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import paths, tables
from valuedrift.study import runs_of

# rules that train or run a model; everything else is tables, figures and the report
MODEL_RULES = {"import_base_model", "prepare_dataset", "questions", "sft_segment", "po_segment",
               "reward_model", "generate", "judge"}




@pytest.mark.slow
def test_whole_study_then_rerun_then_extend(workdir, tiny_model):
    cfg = tiny_config(tiny_model)
    write_config(workdir, cfg)
    snakemake(workdir)
    results = workdir / "results"

    runs = runs_of(vd_config.validate(tiny_config(tiny_model)))
    questions = tables.read(workdir / paths.questions_file(), "questions")
    assert len(questions) == 22 and questions["topic"].n_unique() == 11
    model_keys = {run.model_at(s) for run in runs for s in [0, *run.steps]}
    assert len(model_keys) == 5  # base, SFT 2 & 4, DPO 2 & 4 (DPO step 0 is SFT step 4)
    for key in model_keys:
        assert (workdir / paths.model_dir(key) / "model.safetensors").exists()
        gens = tables.read(workdir / paths.generations_file(key), "generations")
        assert len(gens) == 22 * 2
        stances = tables.read(workdir / paths.stances_file(key), "stances")
        assert stances["scorable"].all()
        probs = stances.select("p_support", "p_neutral", "p_oppose").sum_horizontal()
        assert ((probs - 1).abs() < 1e-6).all()
        assert json.loads((workdir / paths.judge_accounting_file(key)).read_text())["responses"] == 44
    for run in runs:
        traj = tables.read(workdir / paths.trajectory_file(run.model_path), "trajectory")
        assert sorted(traj["step"].unique()) == [0, 2, 4]
        drift = tables.read(workdir / paths.drift_table(run.model_path), "drift")
        assert len(drift) == 11 * 3
        assert (workdir / paths.trajectory_plot(run.model_path, "png")).stat().st_size > 0
    segment = json.loads((results / "models/tiny/sft-demo-instruct/checkpoint-4/valuedrift_segment.json").read_text())
    assert segment["start_step"] == 2 and segment["horizon"] == 12
    assert "tiny model judging itself" in (workdir / paths.report_index()).read_text() or \
        "judges the stances of its own responses" in (workdir / paths.report_index()).read_text()

    # Run again: nothing to do.
    assert planned_jobs(workdir) == {}

    # One more SFT checkpoint interval: only the new checkpoint and what depends on it.
    cfg["runs"][0]["max_steps"] = 6
    write_config(workdir, cfg)
    jobs = planned_jobs(workdir)
    model_jobs = {rule: n for rule, n in jobs.items() if rule in MODEL_RULES}
    assert model_jobs == {
        "sft_segment": 1,           # checkpoint-6 only; 2 and 4 are kept
        "po_segment": 2,            # DPO starts from the final SFT checkpoint, which changed
        "generate": 3, "judge": 3,  # SFT checkpoint-6 (= DPO step 0), DPO checkpoints 2 and 4
    }, jobs
    assert jobs["trajectory"] == jobs["drift_table"] == 2 and jobs["report"] == 1
    assert "import_base_model" not in jobs and "prepare_dataset" not in jobs and "questions" not in jobs
    plan = snakemake(workdir, "-n").stdout
    assert "output: results/models/tiny/sft-demo-instruct/checkpoint-6" in plan
    for kept in (2, 4):
        assert f"output: results/models/tiny/sft-demo-instruct/checkpoint-{kept}\n" not in plan


def test_paper_config_plans_the_expected_chain_offline(workdir):
    """`snakemake -n --configfile config/paper.yaml <one drift.csv>` needs neither hub nor network."""
    import shutil

    from conftest import REPO

    shutil.copytree(REPO / "config", workdir / "config", dirs_exist_ok=True)
    target = "results/drift/llama3-3b/sft-wildchat/dpo-ultrafeedback/drift.csv"
    jobs = planned_jobs(workdir, target, "--configfile", "config/paper.yaml", prefix=no_network_prefix())
    # SFT: WildChat checkpoints every 500 up to 5,500 (the paper's 11; its schedule spans
    # 5,997 steps) -> 11 segments; DPO: 5,712 steps every 100 -> 58 segments; generation +
    # judging of the DPO start (= final SFT checkpoint) and of every DPO checkpoint; the
    # V-PRISM builder for the questions.
    assert jobs["sft_segment"] == 11 and jobs["po_segment"] == 58
    assert jobs["generate"] == jobs["judge"] == 59
    assert jobs["import_base_model"] == 1 and jobs["prepare_dataset"] == 2
    assert jobs["trajectory"] == jobs["drift_table"] == 1
    assert jobs["vprism_sample"] == 1
    assert "reward_model" not in jobs  # DPO needs none; PPO runs would


def test_a_given_configfile_replaces_the_demo_config(workdir, tiny_model):
    write_config(workdir, tiny_config(tiny_model), name="other.yaml")
    (workdir / "config" / "config.yaml").write_text("this: is not a valid study\n")
    assert planned_jobs(workdir, "--configfile", "config/other.yaml")["all"] == 1


def test_workflow_is_lint_clean():
    """`snakemake --lint` on the demo config (the snakemake-workflows bar) finds nothing."""
    from conftest import REPO

    proc = snakemake(REPO, "--lint", "--configfile", "config/config.yaml", check=False, timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, \
        (proc.stdout + proc.stderr)[-3000:]


def _reversed_keys(value):
    """The same config with every mapping's keys in reverse order (YAML written as is)."""
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


# rules downstream of the stances of every evaluated model (3 here: base, SFT-2, DPO-2)
AFTER_STANCES = {"trajectory": 2, "drift_table": 2, "drilldown": 2, "trajectory_plot": 2, "study_drift_table": 1, "paper_tables": 1,
                 "sft_comparison_plot": 1, "po_comparison_plot": 1, "drift_heatmap": 1, "report": 1, "all": 1}


@pytest.mark.slow
def test_only_settings_that_change_a_result_rerun_jobs(tiny_model, workdir):
    """Params are canonical and hold only result-changing settings (issue: key order, batch
    sizes or prices must never rerun a model job); plot options rerun only report jobs."""
    import copy

    runs = [{"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 2},
            {"base": "tiny", "sft": "demo-instruct", "algorithm": "dpo", "preference": "demo-support",
             "every": 2, "max_steps": 2}]
    cfg = tiny_config(tiny_model, runs=runs)
    cfg["questions"]["per_category"] = 1
    write_config(workdir, cfg)
    snakemake(workdir)
    assert planned_jobs(workdir) == {}

    # the same config with every key in another order, and with its defaults written out
    write_config(workdir, _reversed_keys(cfg))
    assert planned_jobs(workdir) == {}
    filled = vd_config.validate(copy.deepcopy(cfg))
    write_config(workdir, filled)
    assert planned_jobs(workdir) == {}

    # execution settings: how fast or where, never what
    execution = {("generation", "batch_size"): 3, ("judge", "batch_size"): 5, ("judge", "concurrency"): 2,
                 ("judge", "max_retries"): 1, ("judge", "timeout_s"): 5, ("judge", "max_unscorable_fraction"): 0.5,
                 ("judge", "price_per_million_prompt_tokens"): 2.5, ("judge", "cache_dir"): "elsewhere/cache",
                 ("training", "sft", "per_device_batch_size"): 4, ("training", "dpo", "gradient_checkpointing"): True,
                 ("training", "dpo", "logging_steps"): 2, ("resources", "infer"): {"mem_mb": 1234}}
    for keys, value in execution.items():
        changed = copy.deepcopy(cfg)
        block = changed
        for k in keys[:-1]:
            block = block.setdefault(k, {})
        block[keys[-1]] = value
        write_config(workdir, changed)
        assert planned_jobs(workdir) == {}, keys

    # result settings: exactly the jobs whose output they change
    def plan(**blocks):
        changed = copy.deepcopy(cfg)
        for name, update in blocks.items():
            changed[name] = {**changed.get(name, {}), **update}
        write_config(workdir, changed)
        return planned_jobs(workdir)

    assert plan(generation={"temperature": 0.9}) == {"generate": 3, "judge": 3, **AFTER_STANCES}
    assert plan(generation={"samples": 1}) == {"generate": 3, "judge": 3, **AFTER_STANCES}
    assert plan(judge={"dtype": "bfloat16"}) == {"judge": 3, **AFTER_STANCES}
    assert plan(judge={"model": str(tiny_model)}) == {"judge": 3, **AFTER_STANCES}  # another judge model
    sft_change = plan(training={**cfg["training"], "sft": {**cfg["training"]["sft"], "learning_rate": 5e-4}})
    assert sft_change["sft_segment"] == 1 and sft_change["po_segment"] == 1 and sft_change["generate"] == 2

    # a 3-value sweep of one key: exactly the new runs, and the cross-run tables and figures
    write_config(workdir, {**cfg, "sweeps": [{"of": "tiny/sft-demo-instruct/dpo-demo-support", "key": "beta",
                                              "values": [0.05, 0.2, 0.5]}]})
    new_runs = {"po_segment": 3, "generate": 3, "judge": 3, "trajectory": 3, "drift_table": 3, "trajectory_plot": 3,
                "training_log": 3, "drilldown": 3, "sweep_plot": 1}
    assert planned_jobs(workdir) == {**new_runs, "study_drift_table": 1, "paper_tables": 1, "po_comparison_plot": 1,
                                     "drift_heatmap": 1, "training_plot": 1, "report": 1, "all": 1}

    # plot options: only the report's jobs
    from test_report import CHROMIUM, REPORT_RULES, check_report

    write_config(workdir, cfg)
    assert planned_jobs(workdir) == {}
    cfg["report"] = {"figures": {"panel_width": 150, "png_scale": 1.0}}
    write_config(workdir, cfg)
    planned = planned_jobs(workdir)
    assert planned == {"trajectory_plot": 2, "sft_comparison_plot": 1, "po_comparison_plot": 1,
                       "drift_heatmap": 1, "training_plot": 1, "report": 1, "all": 1}

    cfg["report"] = {**cfg["report"], "tables": {"decimals": 3}, "title": "retitled"}
    write_config(workdir, cfg)
    planned = planned_jobs(workdir)
    assert set(planned) <= REPORT_RULES and {"paper_tables", "report"} <= set(planned)
    snakemake(workdir)
    md = (workdir / paths.sft_table("tiny", "md")).read_text()
    assert re.search(r"\| drift magnitude \| \S[^|]* \| -?\d\.\d{3} \|", md)
    assert "retitled" in (workdir / paths.report_index()).read_text()
    assert planned_jobs(workdir) == {}
    if CHROMIUM:
        result = check_report(workdir / paths.report_index(), None)
        assert len(result["images"]) == len(runs) + 4
