"""The judge-evaluation rules through Snakemake on a tiny study: validation and floor, a
classifier judge in the panel, panel agreement, option mass, the human review round trip,
the report's Judge quality section read from those artifacts, and what reruns when the judges change."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import polars as pl
import pytest

from conftest import REPO, planned_jobs, snakemake, tiny_config, write_config
from test_judge_trained import subset
from valuedrift import config as vd_config
from valuedrift import judge_report, judge_specs, paths, tables
from valuedrift.topics import STANCES

MODELS = ["tiny/base", "tiny/sft-demo-instruct/checkpoint-2"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_judge_eval_on_a_tiny_study(workdir, tiny_model, monkeypatch):
    if not (REPO / "data/judge/train.jsonl").exists():
        pytest.skip("data/judge not present")
    small = workdir / "data" / "judge-small"
    small.mkdir()
    subset(REPO / "data/judge/validation.jsonl", 2, small / "validation.jsonl")
    subset(REPO / "data/judge/train.jsonl", 3, small / "train.jsonl")
    cfg = tiny_config(tiny_model, runs=[{"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 2}])
    cfg["questions"]["per_category"] = 1
    cfg["generation"]["samples"] = 1
    cfg["judge"]["calibration"] = "auto"
    cfg["judges"] = {"minilm": {"backend": "classifier",
                                "train": {"path": "data/judge-small/train.jsonl", "C": [1.0], "folds": 3}}}
    # measured on this subset: the classifier 0.66, the random tiny judge 0.17 raw, 0.46 calibrated
    cfg["judge_validation"] = {"path": "data/judge-small/validation.jsonl", "min_macro_f1": 0.56, "enabled": True}
    cfg["human_review"] = {"items": 8}
    write_config(workdir, cfg)

    # The random tiny judge is below the floor: the study fails, naming the key that accepts it.
    proc = snakemake(workdir, "judge_eval", "--keep-going", check=False)
    assert proc.returncode != 0
    log = (workdir / paths.log_file("judge_floor", "primary")).read_text()
    assert "judge 'primary' (local tiny, contextual calibration (auto))" in log
    assert "judge_validation.accept_below_floor: [primary]" in log
    assert (workdir / paths.judge_floor_check("minilm")).exists()  # the classifier passes

    cfg["judge_validation"]["accept_below_floor"] = ["primary"]
    write_config(workdir, cfg)
    snakemake(workdir, "judge_eval")

    primary = json.loads((workdir / paths.judge_validation_metrics("primary")).read_text())
    assert set(primary["variants"]) == {"raw", "calibrated"}
    raw, cal = primary["variants"]["raw"]["accuracy"], primary["variants"]["calibrated"]["accuracy"]
    assert primary["calibration_used"] == (cal > raw)
    accounting = json.loads((workdir / paths.judge_accounting_file(MODELS[0])).read_text())
    assert accounting["calibration"] == primary["calibration_used"]  # the study's judge uses that choice

    section = judge_report.validation_section(
        {n: workdir / paths.judge_validation_metrics(n) for n in ("primary", "minilm")},
        {n: workdir / paths.judge_floor_check(n) for n in ("primary", "minilm")})
    by_name = {r["judge"]: r for r in section.to_dicts()}
    assert by_name["minilm"]["passes_floor"] and by_name["minilm"]["macro_f1"] >= 0.56
    assert by_name["primary"]["accepted_below_floor"] and by_name["primary"]["chance_macro_f1"] == pytest.approx(1 / 3)

    for model in MODELS:
        st = tables.read(workdir / paths.judge_stances_file("minilm", model), "stances")
        assert len(st) == 11 and st["scorable"].all() and (st["option_mass"] - 1).abs().max() < 1e-9
    agreement = pl.read_csv(workdir / paths.panel_agreement())
    assert set(agreement["topic"]) >= {"all", "abortion"} and set(agreement["judge_b"]) == {"minilm"}
    assert agreement.filter(pl.col("topic") == "all")["n"].item() == 22
    assert len(pl.read_csv(workdir / paths.panel_disagreements())) == 20
    mass = judge_report.option_mass_section({n: workdir / paths.judge_option_mass(n) for n in ("primary", "minilm")})
    assert mass.filter(pl.col("judge") == "minilm")["min"].item() == pytest.approx(1.0)
    assert mass.filter(pl.col("judge") == "primary")["max"].item() < 1.0
    trained = judge_report.trained_judge_section(workdir / paths.judge_classifier_report("minilm"))
    assert trained["headline"]["items"] == 99

    # Human review: label the sheet as the classifier did (one item 'unclear'), read it back.
    sheet = pl.read_csv(workdir / paths.human_review_sheet(), infer_schema=False)
    key = pl.read_csv(workdir / paths.human_review_key())
    assert len(sheet) == 8 and "model" not in sheet.columns
    minilm = pl.concat([tables.read(workdir / paths.judge_stances_file("minilm", m), "stances")
                        .with_columns(pl.lit(m).alias("model")) for m in MODELS])
    picked = key.join(minilm, on=["model", "question_id", "sample"], how="left", maintain_order="left")
    labels = [STANCES[int(np.argmax(r))] for r in picked.select("p_support", "p_neutral", "p_oppose").to_numpy()]
    labels[0] = "unclear"
    with open(workdir / "filled.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(sheet.columns)
        for row, label in zip(sheet.iter_rows(), labels):
            writer.writerow([*row[:4], label])
    cfg["human_review"]["filled"] = "filled.csv"
    write_config(workdir, cfg)
    assert planned_jobs(workdir, "judge_eval") == {"human_review_agreement": 1, "judge_eval": 1}
    snakemake(workdir, "judge_eval")
    human = {r["judge"]: r for r in judge_report.human_review_section(workdir / paths.human_review_agreement()).to_dicts()}
    assert human["minilm"]["accuracy"] == 1.0 and human["minilm"]["n"] == 7 and human["minilm"]["unclear"] == 1
    assert set(human) == {"primary", "minilm"}

    # The report's Judge quality section: the report job reads exactly these files (its `judges`
    # input), and the view lays out what they hold.
    files = judge_specs.report_files(vd_config.validate(copy.deepcopy(cfg), workdir))
    report_job = snakemake(workdir, paths.report_index(), "-n").stdout
    report_job = report_job[report_job.index("rule report:"):]
    assert all(f in report_job for f in files) and paths.human_review_agreement() in files
    _check_judges_section(workdir, files, monkeypatch)

    # Adding a judge to the panel reruns nothing of the others ...
    cfg["judges"]["tiny-floor"] = {"backend": "local", "model": "tiny", "min_option_mass": 0.5}
    cfg["judge_validation"]["accept_below_floor"] = ["primary", "tiny-floor"]
    write_config(workdir, cfg)
    jobs = planned_jobs(workdir, "judge_eval")
    assert "judge" not in jobs and "generate" not in jobs and "judge_classifier" not in jobs
    assert jobs["panel_judge"] == 2 and jobs["judge_validation"] == 1 and jobs["judge_option_mass"] == 1
    assert jobs["judge_panel"] == 1 and jobs["human_review_agreement"] == 1
    # ... and changing the primary judge reruns its judge jobs and what follows, no generation.
    del cfg["judges"]["tiny-floor"]
    cfg["judge_validation"]["accept_below_floor"] = ["primary"]
    cfg["judge"]["calibration"] = "none"
    write_config(workdir, cfg)
    jobs = planned_jobs(workdir, "judge_eval", *[paths.drift_table(r) for r in ["tiny/sft-demo-instruct"]])
    assert jobs["judge"] == 2 and jobs["judge_validation"] == 1 and jobs["trajectory"] == 1
    assert "generate" not in jobs and "panel_judge" not in jobs and "judge_classifier" not in jobs
    # Another backend for the primary (a classifier of its own): its classifier, its judge jobs and what
    # follows; the panel's classifier, its stances and every generation stay.
    cfg["judge"] = {"backend": "classifier", "train": {"path": "data/judge-small/train.jsonl", "C": [1.0], "folds": 3}}
    write_config(workdir, cfg)
    jobs = planned_jobs(workdir, "judge_eval", *[paths.drift_table(r) for r in ["tiny/sft-demo-instruct"]])
    assert jobs["judge_classifier"] == 1 and jobs["judge"] == 2 and jobs["judge_validation"] == 1
    assert jobs["trajectory"] == 1 and jobs["judge_panel"] == 1
    assert "generate" not in jobs and "panel_judge" not in jobs


def _check_judges_section(workdir, files, monkeypatch):
    from valuedrift.report import judges_view, page

    monkeypatch.chdir(workdir)
    view = judges_view.judges_view(files, page.Links(paths.report_index()))
    assert [j["name"] for j in view["judges"]] == ["primary", "minilm"]
    by_name = {j["name"]: j for j in view["judges"]}
    for name, j in by_name.items():
        overall = json.loads((workdir / paths.judge_validation_metrics(name)).read_text())["overall"]
        [row] = j["headline"]
        assert row[1] == overall["n"] == 66 and row[2] == round(overall["accuracy"], 3)
        assert row[4] == round(overall["macro_f1"], 3) and row[5] == round(overall["chance_macro_f1"], 3)
        assert row[6] == 0.56 and row[8] == round(overall["ece"], 3)
        assert [r[0] for r in j["confusion"]] == list(STANCES) and all(sum(r[1:]) == 22 for r in j["confusion"])
        assert len(j["topics"]) == 11
    assert by_name["primary"]["verdict"] == "below the floor, accepted by the config"
    assert by_name["minilm"]["verdict"] == "passes" and by_name["minilm"]["mass"][0][2] == 1.0
    assert by_name["minilm"]["trained"]["headline"]["items"] == 99 and by_name["primary"]["trained"] is None
    agreement = pl.read_csv(workdir / paths.panel_agreement())
    assert len(view["panel"]["agreement"]) == len(agreement) and len(view["panel"]["disagreed"]) == 10
    assert view["panel"]["disagreed_header"][-2:] == ["primary", "minilm"]
    assert view["review"]["sheet"]["href"] == "../judges/human-review/sheet.csv"
    assert {r[0] for r in view["review"]["agreement"]} == {"primary", "minilm"}
    html = page.render("judges_section.html.j2", judges=view)
    assert html.startswith("<section id=\"judges\"><h2>Judge quality</h2>") and html.count("<article") == 2
    assert "Panel agreement" in html and "Human review" in html and "Trained on 99 authored" in html
    primary = judges_view.primary_quality(files)
    caveat = page.caveat({"judge": {"backend": "local", "model": "tiny"}, "models": {"tiny": {}}}, primary)
    assert f"macro-F1 {primary['macro_f1']:.2f} (chance {primary['chance_macro_f1']:.2f}" in caveat
    assert judges_view.judges_view([], page.Links(paths.report_index())) is None
