"""The study model: runs, groupings, target lists, and which settings are rerun triggers."""

from __future__ import annotations

import copy

import pytest

from conftest import planned_jobs, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import paths
from valuedrift.study import EXECUTION_KEYS, Study, canonical, job_settings, result_settings


def test_canonical_ignores_key_order_at_every_depth():
    a = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": 2}}
    b = {"a": {"x": 2, "y": [{"p": 2, "q": 1}]}, "b": 1}
    assert a != b or list(a) != list(b)
    assert repr(canonical(a)) == repr(canonical(b))


def test_result_settings_drop_execution_keys_and_job_settings_add_them_back():
    judge = {"backend": "openai", "model": "gpt-4o", "top_logprobs": 20, "concurrency": 8, "timeout_s": 60,
             "price_per_million_prompt_tokens": 2.5, "cache_dir": "results/cache/llm", "batch_size": 16}
    trigger = result_settings(judge, "judge")
    assert trigger == {"backend": "openai", "model": "gpt-4o", "top_logprobs": 20}
    assert job_settings(trigger, judge, "judge") == judge
    assert set(result_settings({"temperature": 0.7, "batch_size": 4}, "generation")) == {"temperature"}
    assert {"per_device_batch_size", "gradient_checkpointing"} <= EXECUTION_KEYS["training"]


def test_study_groups_runs_and_lists_report_inputs(tiny_model):
    cfg = vd_config.validate(tiny_config(tiny_model, runs=[
        {"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 4},
        {"base": "tiny", "sft": "demo-instruct", "algorithm": "dpo", "preference": "demo-support", "every": 1,
         "max_steps": 2},
        {"base": "tiny", "sft": "demo-instruct", "algorithm": "simpo", "preference": "demo-support", "every": 2,
         "max_steps": 2}]))
    study = Study(cfg)
    assert [r.model_path for r in study.sft_groups["tiny"]] == ["tiny/sft-demo-instruct"]
    assert [r.label for r in study.po_groups[("tiny", "demo-instruct")]] == ["DPO (demo-support)",
                                                                          "SimPO (demo-support)"]
    # base, SFT 2 and 4, DPO 1 and 2, SimPO 2: PO step 0 is the SFT run's last checkpoint, once
    assert len(study.evaluated_models) == 6
    inputs = study.report_inputs()
    assert inputs["accounting"] == [paths.judge_accounting_file(m) for m in study.evaluated_models]
    assert len(inputs["drift_tables"]) == len(inputs["trajectories"]) == 3
    assert inputs["tables"] == [paths.sft_table("tiny", e) for e in paths.TABLE_FORMATS] + \
        [paths.po_table("tiny", "demo-instruct", e) for e in paths.TABLE_FORMATS]
    with pytest.raises(vd_config.ConfigError, match="not a run of this config"):
        study.run("tiny/sft-other")


def test_results_dir_keeps_two_studies_apart(tiny_model, workdir):
    """A second study reusing the first one's model and dataset names plans everything anew in its
    own folder, and none of its outputs (logs included) lies in the first one's."""
    write_config(workdir, tiny_config(tiny_model), name="a.yaml")
    write_config(workdir, tiny_config(tiny_model, results_dir="study-b",
                                      generation={"samples": 1, "max_new_tokens": 8, "dtype": "float32"}),
                 name="b.yaml")
    plan_a = snakemake(workdir, "-n", "--configfile", "config/a.yaml").stdout
    plan_b = snakemake(workdir, "-n", "--configfile", "config/b.yaml").stdout
    outputs_b = [line.split(":", 1)[1].strip() for line in plan_b.splitlines() if line.strip().startswith(("output:", "log:"))]
    assert outputs_b and all(o.startswith("study-b/") for part in outputs_b for o in part.split(", ")), outputs_b
    assert "output: results/report/index.html" in plan_a and "study-b/" not in plan_a
    assert planned_jobs(workdir, "--configfile", "config/b.yaml") == planned_jobs(workdir, "--configfile", "config/a.yaml")
    assert "study-b/logs/" in plan_b


def test_overrides_name_their_paths_and_sweeps_expand_into_runs(tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["runs"].append({**cfg["runs"][1], "overrides": {"beta": 0.05}})
    cfg["sweeps"] = [{"of": "tiny/sft-demo-instruct/dpo-demo-support", "key": "beta", "values": [0.2, 0.5]}]
    study = Study(vd_config.validate(cfg))
    assert [r.model_path for r in study.runs] == [
        "tiny/sft-demo-instruct", "tiny/sft-demo-instruct/dpo-demo-support",  # no override: today's paths
        "tiny/sft-demo-instruct/dpo-beta0.05-demo-support",
        "tiny/sft-demo-instruct/dpo-beta0.2-demo-support", "tiny/sft-demo-instruct/dpo-beta0.5-demo-support"]
    swept = study.run("tiny/sft-demo-instruct/dpo-beta0.5-demo-support")
    assert swept.algorithm == "dpo" and study.training_settings(swept)["beta"] == 0.5
    assert study.training_settings(swept)["learning_rate"] == cfg["training"]["dpo"]["learning_rate"]
    assert study.sweeps[0].values == [0.2, 0.5] and swept.label == "DPO (demo-support, beta=0.5)"


def test_sweeps_of_two_seeds_of_one_run_get_a_figure_each(tiny_model):
    for seeded, of in (("sft", "tiny/sft-demo-instruct-seed{}/dpo-demo-support"),
                       ("po", "tiny/sft-demo-instruct/dpo-seed{}-demo-support")):
        cfg = tiny_config(tiny_model)
        cfg["runs"][0 if seeded == "sft" else 1]["seeds"] = [0, 1]
        cfg["sweeps"] = [{"of": of.format(s), "key": "beta", "values": [0.2]} for s in (0, 1)]
        study = Study(vd_config.validate(cfg))
        assert [s.name for s in study.sweeps] == ["dpo-seed0-beta-demo-support", "dpo-seed1-beta-demo-support"]
        figures = [f for f in study.study_figures("png") if "/sweep-" in f]
        assert figures == [paths.sweep_plot("tiny", "demo-instruct", s.name, "png") for s in study.sweeps]
        assert len(set(figures)) == 2, seeded
        one = study.sweep("tiny", "demo-instruct", "dpo-seed1-beta-demo-support")
        assert one.of.seed == 1 and [r.seed for _, r in one.lines(cfg["training"])] == [1, 1]
    plain = tiny_config(tiny_model)
    plain["sweeps"] = [{"of": "tiny/sft-demo-instruct/dpo-demo-support", "key": "beta", "values": [0.2]}]
    assert [s.name for s in Study(vd_config.validate(plain)).sweeps] == ["dpo-beta-demo-support"]  # unseeded: today's


@pytest.mark.parametrize("change,message", [
    (lambda c: c["runs"].append({**c["runs"][1], "overrides": {"beta": 0.1}}) or
     c.update(sweeps=[{"of": "tiny/sft-demo-instruct/dpo-demo-support", "key": "beta", "values": [0.1]}]),
     r"'runs\[2\]' and 'sweeps\[0\] \(beta=0.1\)' both write the run tiny/sft-demo-instruct/dpo-beta0.1-demo-support"),
    (lambda c: c.update(sweeps=[{"of": "tiny/sft-demo-instruct/dpo-other", "key": "beta", "values": [1]}]),
     r"'sweeps\[0\].of': 'tiny/sft-demo-instruct/dpo-other' is not a run"),
    (lambda c: c.update(sweeps=[{"of": "tiny/sft-demo-instruct/dpo-demo-support", "key": "kl_coef", "values": [1]}]),
     r"'sweeps\[0\].key': 'kl_coef' is not a setting of training.dpo"),
    (lambda c: c["runs"][0].update(overrides={"learning_rate": 1e-4}), r"'runs\[0\].overrides.learning_rate': overrides are for PO runs"),
])
def test_bad_overrides_and_colliding_runs_are_rejected_naming_both(tiny_model, change, message):
    cfg = tiny_config(tiny_model)
    change(cfg)
    with pytest.raises(vd_config.ConfigError, match=message):
        vd_config.validate(cfg)
