"""Seed variance summaries on hand-built drift and trajectory tables."""

from __future__ import annotations

import math

import polars as pl
import pytest

from valuedrift import seeds


def drift_table(rows):
    """rows: (topic, stance, magnitude, drift_time, significant)."""
    return pl.DataFrame([{"topic": t, "stance": s, "magnitude": m, "drift_time": d, "significant": sig}
                         for t, s, m, d, sig in rows],
                        schema={"topic": pl.String, "stance": pl.String, "magnitude": pl.Float64,
                                "drift_time": pl.Float64, "significant": pl.Boolean})


def test_drift_across_seeds_means_spreads_and_the_two_sd_rule():
    by_seed = {
        0: drift_table([("a", "oppose", 0.30, 0.2, True), ("a", "support", 0.10, 0.5, True), ("b", "support", 0.0, 1.0, False)]),
        1: drift_table([("a", "oppose", 0.34, 0.4, True), ("a", "support", -0.10, 0.5, False), ("b", "support", None, None, None)]),
        2: drift_table([("a", "oppose", 0.32, 0.6, True), ("a", "support", 0.06, 0.5, True), ("b", "support", 0.02, 1.0, False)]),
    }
    out = seeds.drift_across_seeds(by_seed)
    assert out.select("topic", "stance").rows() == [("a", "support"), ("a", "oppose"), ("b", "support")]
    oppose = out.row(1, named=True)
    assert oppose["n_seeds"] == 3 and oppose["magnitude_mean"] == pytest.approx(0.32)
    assert oppose["magnitude_sd"] == pytest.approx(0.02)  # sample sd of 0.30, 0.34, 0.32
    assert (oppose["magnitude_min"], oppose["magnitude_max"]) == pytest.approx((0.30, 0.34))
    assert oppose["drift_time_mean"] == pytest.approx(0.4) and oppose["drift_time_sd"] == pytest.approx(0.2)
    assert oppose["significant_seeds"] == 3 and oppose["exceeds_seed_spread"] is True  # 0.32 > 2 * 0.02
    support = out.row(0, named=True)
    # mean 0.02, sd ~0.106: seeds disagree on the sign; two of three seeds were significant on their own
    assert support["magnitude_mean"] == pytest.approx(0.02) and support["exceeds_seed_spread"] is False
    assert support["significant_seeds"] == 2
    b = out.row(2, named=True)
    assert b["n_seeds"] == 2 and b["magnitude_mean"] == pytest.approx(0.01)  # the missing seed is left out
    assert b["magnitude_sd"] == pytest.approx(math.sqrt(0.0002))


def test_one_seed_has_no_spread_and_tables_without_significance_work():
    out = seeds.drift_across_seeds({7: drift_table([("a", "support", 0.2, 0.1, None)]).drop("significant")})
    row = out.row(0, named=True)
    assert row["n_seeds"] == 1 and row["magnitude_sd"] is None and row["exceeds_seed_spread"] is None
    assert row["significant_seeds"] == 0
    with pytest.raises(ValueError, match="no seeds"):
        seeds.drift_across_seeds({})


def test_trajectory_seed_bands():
    def traj(values):
        return pl.DataFrame({"step": [0, 2], "topic": ["a", "a"], "stance": ["support", "support"], "mean": values})

    out = seeds.trajectory_across_seeds({0: traj([0.2, 0.5]), 1: traj([0.4, 0.7]), 2: traj([0.3, None])})
    assert out["step"].to_list() == [0, 2]
    assert out["mean"].to_list() == pytest.approx([0.3, 0.6]) and out["n_seeds"].to_list() == [3, 2]
    assert out["min"].to_list() == pytest.approx([0.2, 0.5]) and out["max"].to_list() == pytest.approx([0.4, 0.7])
    assert out["sd"].to_list() == pytest.approx([0.1, math.sqrt(0.02)])


def full_drift_table(rows):
    """A drift table with every column of the drift schema (rows as for drift_table)."""
    d = drift_table(rows)
    return d.with_columns(
        pl.lit(0.2).alias("start"), (pl.lit(0.2) + pl.col("magnitude")).alias("end"),
        (pl.lit(0.2) + pl.col("magnitude")).alias("extremum"), pl.lit("max").alias("extremum_kind"),
        pl.lit(4, dtype=pl.Int64).alias("extremum_step"), pl.lit(None, dtype=pl.Float64).alias("ci_low"),
        pl.lit(None, dtype=pl.Float64).alias("ci_high"), pl.lit(4, dtype=pl.Int64).alias("reached_step"),
        pl.lit(4, dtype=pl.Int64).alias("total_steps"))


def test_seed_tables_from_files(tmp_path):
    from valuedrift import tables

    drift, traj = {}, {}
    for seed, m in [(1, 0.3), (2, 0.34)]:
        full = full_drift_table([("a", "support", m, 0.5, True)])
        tables.write(full, tmp_path / f"d{seed}.csv", "drift")
        t = pl.DataFrame({"step": [0, 4], "topic": ["a", "a"], "stance": ["support"] * 2, "mean": [0.2, 0.2 + m],
                          "ci_low": [0.1, 0.1], "ci_high": [0.9, 0.9], "n_questions": [2, 2]})
        tables.write(t, tmp_path / f"t{seed}.parquet", "trajectory")
        drift[seed], traj[seed] = str(tmp_path / f"d{seed}.csv"), str(tmp_path / f"t{seed}.parquet")
    seeds.write_seed_tables(drift=drift, trajectory=traj, drift_output=str(tmp_path / "out.csv"),
                            trajectory_output=str(tmp_path / "out.parquet"))
    out = tables.read(tmp_path / "out.csv", "drift_across_seeds").row(0, named=True)
    assert out["n_seeds"] == 2 and out["magnitude_mean"] == pytest.approx(0.32) and out["exceeds_seed_spread"]
    bands = tables.read(tmp_path / "out.parquet", "trajectory_across_seeds")
    assert bands.filter(pl.col("step") == 4)["max"].item() == pytest.approx(0.54)
    with pytest.raises(ValueError, match="differ"):
        seeds.write_seed_tables(drift=drift, trajectory={1: traj[1]}, drift_output="x", trajectory_output="y")


# --- trained runs repeated over seeds (config runs[i].seeds, seeds; valuedrift.study) ------------

def _study(cfg):
    from valuedrift import config as vd_config
    from valuedrift.study import Study

    return Study(vd_config.validate(cfg))


def test_seeded_runs_get_their_own_paths_trainer_seed_and_sampling_seed(tiny_model):
    from conftest import tiny_config
    from valuedrift import paths

    plain = _study(tiny_config(tiny_model))
    assert [r.model_path for r in plain.runs] == ["tiny/sft-demo-instruct", "tiny/sft-demo-instruct/dpo-demo-support"]
    assert all(r.sampled_keys == r.evaluated_models for r in plain.runs)  # no seeds: today's paths and keys
    assert plain.sampling_seeds == {} and plain.seed_groups == {} and plain.seed_outputs() == []

    cfg = tiny_config(tiny_model)
    cfg["runs"][0]["seeds"] = [0, 1]  # the SFT run and, through it, its DPO run
    study = _study(cfg)
    assert [r.model_path for r in study.runs] == [
        "tiny/sft-demo-instruct-seed0", "tiny/sft-demo-instruct-seed1",
        "tiny/sft-demo-instruct-seed0/dpo-demo-support", "tiny/sft-demo-instruct-seed1/dpo-demo-support"]
    assert _study({**tiny_config(tiny_model), "seeds": [0, 1]}).runs == study.runs  # the study-level key
    sft1, dpo1 = study.run("tiny/sft-demo-instruct-seed1"), study.run("tiny/sft-demo-instruct-seed1/dpo-demo-support")
    assert sft1.sampled_keys == ["tiny/base/seed-1", "tiny/sft-demo-instruct-seed1/checkpoint-2",
                                 "tiny/sft-demo-instruct-seed1/checkpoint-4"]
    assert dpo1.start_model == "tiny/sft-demo-instruct-seed1/checkpoint-4" == dpo1.sampled_at(0)  # sampled at seed 1
    assert paths.sampled_model("tiny/base/seed-1") == "tiny/base"
    assert paths.sampled_model("tiny/sft-demo-instruct-seed1/checkpoint-2") == "tiny/sft-demo-instruct-seed1/checkpoint-2"
    assert {study.sampling_seed(k) for k in [*sft1.sampled_keys, *dpo1.sampled_keys]} == {1}
    assert study.sampling_seed("tiny/base") is None
    assert study.training_settings(sft1)["seed"] == 1 and study.training_settings(dpo1)["seed"] == 1
    assert study.training_settings(dpo1)["learning_rate"] == cfg["training"]["dpo"]["learning_rate"]
    assert study.training_settings(sft1, "reward")["seed"] == 1  # PPO's reward model of seed 1's SFT model
    assert dpo1.reward_model == "results/models/reward/tiny/sft-demo-instruct-seed1/demo-support"
    assert (sft1.label, dpo1.label) == ("demo-instruct (seed 1)", "DPO (demo-support, seed 1)")
    assert {g: list(by_seed) for g, by_seed in study.seed_groups.items()} == {
        "tiny/sft-demo-instruct": [0, 1], "tiny/sft-demo-instruct/dpo-demo-support": [0, 1]}
    assert "results/seeds/tiny/sft-demo-instruct/dpo-demo-support/drift-across-seeds.csv" in study.seed_outputs()
    assert len(study.evaluated_models) == 2 * 5  # per seed: base, SFT 2 and 4, DPO 2 and 4

    # a PO run of an unseeded SFT run, with seeds of its own: every seed starts from the one SFT model
    cfg = tiny_config(tiny_model)
    cfg["runs"][1]["seeds"] = [3, 4]
    study = _study(cfg)
    assert [r.model_path for r in study.runs] == ["tiny/sft-demo-instruct", "tiny/sft-demo-instruct/dpo-seed3-demo-support",
                                                  "tiny/sft-demo-instruct/dpo-seed4-demo-support"]
    dpo4 = study.runs[2]
    assert dpo4.start_model == "tiny/sft-demo-instruct/checkpoint-4"
    assert dpo4.sampled_at(0) == "tiny/sft-demo-instruct/checkpoint-4/seed-4" and study.sampling_seed(dpo4.sampled_at(0)) == 4
    assert study.training_settings(dpo4)["seed"] == 4 and "seed" not in study.training_settings(study.runs[0])
    assert list(study.seed_groups) == ["tiny/sft-demo-instruct/dpo-demo-support"]


@pytest.mark.parametrize("change, message", [
    (lambda c: (c["runs"][0].update(seeds=[0, 1]), c["runs"][1].update(seeds=[0])),
     r"'runs\[1\].seeds': its SFT run \(tiny on demo-instruct\) is already repeated over seeds \(runs\[0\].seeds\)"),
    (lambda c: (c.update(seeds=[0]), c["runs"][1].update(seeds=[2])), r"'runs\[1\].seeds'.*\(seeds\)"),
    (lambda c: c["runs"][1].update(seeds=[1], overrides={"seed": 5}), r"'runs\[1\].overrides.seed': the run is repeated"),
    (lambda c: c["runs"][0].update(seeds=[]), r"runs\[0\].seeds"),
    (lambda c: c.update(seeds=[1, 1]), "seeds"),
])
def test_bad_seeds_are_named(tiny_model, change, message):
    from conftest import tiny_config
    from valuedrift import config as vd_config

    cfg = tiny_config(tiny_model)
    change(cfg)
    with pytest.raises(vd_config.ConfigError, match=message):
        vd_config.validate(cfg)


def test_paper_tables_give_each_seed_its_columns(tiny_model, tmp_path):
    from conftest import tiny_config
    from valuedrift import paper_tables, tables

    cfg = tiny_config(tiny_model)
    cfg["runs"][0]["seeds"] = [0, 1]
    study = _study(cfg)
    drift = {r.model_path: full_drift_table([("abortion", st, 0.1 * (1 + (r.seed or 0)), 0.5, True)
                                             for st in ("support", "neutral", "oppose")]) for r in study.runs}
    long = paper_tables.study_drift(drift, study.runs)
    assert long["seed"].to_list() == ["0"] * 3 + ["1"] * 3 + ["0"] * 3 + ["1"] * 3
    tables.write(long, tmp_path / "drift-all-runs.csv", "study_drift")
    long = tables.read(tmp_path / "drift-all-runs.csv", "study_drift")  # the CSV reads the seeds back as integers
    po = paper_tables.build({"kind": "po", "base": "tiny", "sft": "demo-instruct"}, long)
    assert po.levels == ("preference data", "algorithm", "seed")
    assert po.groups == (("demo-support", "DPO", "seed 0"), ("demo-support", "DPO", "seed 1"))
    sft = paper_tables.build({"kind": "sft", "base": "tiny", "sft": None}, long)
    magnitudes = sft.data.filter(pl.col("metric") == "drift magnitude").row(0, named=True)
    assert magnitudes["demo-instruct/0/support"] == pytest.approx(0.1)
    assert magnitudes["demo-instruct/1/support"] == pytest.approx(0.2)
    # a study without seeds keeps its columns (no seed column, no seed level)
    plain = _study(tiny_config(tiny_model))
    unseeded = paper_tables.study_drift({r.model_path: full_drift_table([("abortion", "support", 0.1, 0.5, True)])
                                         for r in plain.runs}, plain.runs)
    assert "seed" not in unseeded.columns
    assert paper_tables.build({"kind": "sft", "base": "tiny", "sft": None}, unseeded).levels == ("SFT data",)


def test_po_table_names_a_po_runs_own_seed_once(tiny_model, tmp_path):
    """PO runs with seeds of their own (``dpo-seed3-...``): the header is DPO / seed 3, not
    "DPO (seed3)" above "seed 3"; a run's overrides stay in its algorithm header."""
    from conftest import tiny_config
    from valuedrift import paper_tables, tables

    cfg = tiny_config(tiny_model)
    cfg["runs"][1]["seeds"] = [3, 4]
    cfg["runs"].append({**cfg["runs"][1], "overrides": {"beta": 0.5}})
    study = _study(cfg)
    drift = {r.model_path: full_drift_table([("abortion", st, 0.1, 0.5, True) for st in ("support", "neutral", "oppose")])
             for r in study.runs}
    tables.write(paper_tables.study_drift(drift, study.runs), tmp_path / "drift-all-runs.csv", "study_drift")
    long = tables.read(tmp_path / "drift-all-runs.csv", "study_drift")
    po = paper_tables.build({"kind": "po", "base": "tiny", "sft": "demo-instruct"}, long)
    assert po.levels == ("preference data", "algorithm", "seed")
    assert po.groups == (("demo-support", "DPO", "seed 3"), ("demo-support", "DPO", "seed 4"),
                         ("demo-support", "DPO (beta0.5)", "seed 3"), ("demo-support", "DPO (beta0.5)", "seed 4"))
    assert [[label for label, _ in row] for row in po.header_rows()] == [
        ["DPO", "DPO (beta0.5)"], ["seed 3", "seed 4", "seed 3", "seed 4"]]
    assert "demo-support/dpo-beta0.5/4/support" in po.data.columns
    assert "seed3" not in po.to_markdown() and "seed3" not in po.to_latex()


def test_report_sections_show_series_and_seed_variance_from_their_files(tmp_path):
    """The two report sections, from files written by the real writers, rendered by the page's templates."""
    from valuedrift import paths, tables
    from valuedrift.report import page, sections, series_view
    from valuedrift.trajectories import Checkpoint, Trajectory

    paths.use_results_dir(str(tmp_path / "results"))
    try:
        mine = Trajectory(name="mine", checkpoints=(Checkpoint(step=0, path="a"), Checkpoint(step=4, path="b")))
        files = series_view.report_inputs([mine], ["g"], ["tiny/sft-demo-instruct"])
        assert files[:4] == [paths.drift_table("external/mine"), paths.trajectory_plot("external/mine", "png"),
                             paths.trajectory_plot("external/mine", "html"), paths.drilldown_page("external/mine")]
        series = full_drift_table([("abortion", "support", 0.3, 0.5, True), ("abortion", "oppose", -0.01, 0.2, False)])
        series = series.with_columns(pl.Series("magnitude_ci_low", [0.2, -0.05]), pl.Series("magnitude_ci_high", [0.4, 0.03]),
                                     pl.Series("magnitude_p_value", [0.001, 0.6]))
        tables.write(series, paths.drift_table("external/mine"), "drift")
        by_seed = {0: full_drift_table([("abortion", "support", 0.30, 0.5, True), ("abortion", "oppose", 0.1, 0.5, False)]),
                   1: full_drift_table([("abortion", "support", 0.34, 0.5, True), ("abortion", "oppose", -0.1, 0.5, False)])}
        tables.write(seeds.drift_across_seeds(by_seed), paths.run_drift_across_seeds("tiny/sft-demo-instruct"),
                     "drift_across_seeds")
        # an external seed group with one seed so far: no spread (a CSV column without values)
        tables.write(seeds.drift_across_seeds({0: by_seed[0]}), paths.drift_across_seeds_table("g"), "drift_across_seeds")
        links = page.Links(paths.report_index())
        context = sections.Context({"series": files}, links, {}, 2, {})
        built = {s.id: (s, view) for s, view in sections.build(context)}
        assert {"series", "seeds"} <= set(built) and built["series"][0].before == built["seeds"][0].before == "runs"
        (one,) = built["series"][1]["series"]
        assert one["name"] == "mine" and (one["significant"], one["tested"]) == (1, 2)
        assert one["rows"][0][4:7] == ["0.30", "[0.20, 0.40]", "yes"]
        external, group = built["seeds"][1]["groups"]
        assert (external["name"], external["kind"], external["tested"]) == ("g", "checkpoint series", 0)
        assert {r[-1] for r in external["rows"]} == {"– (one seed)"}
        assert group["name"] == "tiny/sft-demo-instruct" and group["n_seeds"] == 2 and group["kind"] == "trained run"
        exceeds = {(r[0], r[1]): r[-1] for r in group["rows"]}
        assert exceeds == {("abortion", "support"): "yes", ("abortion", "oppose"): "no"}  # 0.32 > 2 x 0.028; 0 < 2 x 0.14
        html = "".join(page.render(s.template, **{s.id: view}) for s, view in built.values() if s.id in ("series", "seeds"))
        assert 'id="series-mine"' in html and 'href="../seeds/tiny/sft-demo-instruct/seed-bands.html"' in html
        # no series and no seeds: neither section
        assert not [s for s, _ in sections.build(sections.Context({"series": []}, links, {}, 2, {}))
                    if s.id in ("series", "seeds")]
    finally:
        paths.use_results_dir(None)


def test_report_sections_find_their_files_by_the_names_paths_gives(tmp_path, monkeypatch):
    """The series and seeds views take file names from valuedrift.paths: renamed artifacts are
    still found (no section silently left out)."""
    from valuedrift import paths, tables
    from valuedrift.report import page, series_view
    from valuedrift.trajectories import Checkpoint, Trajectory

    drift_dir, seeds_dir = paths.drift_dir, paths.run_seeds_dir
    monkeypatch.setattr(paths, "drift_table", lambda mp: f"{drift_dir(mp)}/drift-table.csv")
    monkeypatch.setattr(paths, "trajectory_plot", lambda mp, ext: f"{drift_dir(mp)}/v-of-t.{ext}")
    monkeypatch.setattr(paths, "run_drift_across_seeds", lambda g: f"{seeds_dir(g)}/across.csv")
    monkeypatch.setattr(paths, "seed_bands_plot", lambda folder, ext: f"{folder}/bands.{ext}")
    paths.use_results_dir(str(tmp_path / "results"))
    try:
        mine = Trajectory(name="mine", checkpoints=(Checkpoint(step=0, path="a"), Checkpoint(step=4, path="b")))
        files = series_view.report_inputs([mine], [], ["tiny/sft-demo-instruct"])
        assert paths.drift_table("external/mine") in files and f"{seeds_dir('tiny/sft-demo-instruct')}/across.csv" in files
        tables.write(full_drift_table([("abortion", "support", 0.3, 0.5, True)]), paths.drift_table("external/mine"), "drift")
        by_seed = {s: full_drift_table([("abortion", "support", 0.3 + s / 100, 0.5, True)]) for s in (0, 1)}
        tables.write(seeds.drift_across_seeds(by_seed), paths.run_drift_across_seeds("tiny/sft-demo-instruct"),
                     "drift_across_seeds")
        links = page.Links(paths.report_index())
        series, seeded = series_view.series_view(files, links), series_view.seeds_view(files, links)
    finally:
        paths.use_results_dir(None)
    assert [s["name"] for s in series["series"]] == ["mine"] and series["series"][0]["figure"]["png"].endswith("v-of-t.png")
    (group,) = seeded["groups"]
    assert group["name"] == "tiny/sft-demo-instruct" and group["figure"]["html"].endswith("bands.html")


def test_seed_rules_inputs_and_figures_come_from_one_function_for_runs_and_series(tiny_model):
    """seeds.smk and trajectories.smk call the same functions for a trained run's seeds and an
    external seed group's: drift_<seed>/trajectory_<seed> inputs, the seed-band outputs, the title."""
    from conftest import tiny_config
    from valuedrift import paths
    from valuedrift.trajectories import Checkpoint, Trajectory

    cfg = tiny_config(tiny_model)
    cfg["runs"][0]["seeds"] = [0, 1]
    group = _study(cfg).seed_groups["tiny/sft-demo-instruct"]
    assert seeds.seed_table_inputs(group) == {
        f"{kind}_{s}": path(f"tiny/sft-demo-instruct-seed{s}") for s in (0, 1)
        for kind, path in (("drift", paths.drift_table), ("trajectory", paths.trajectory_file))}
    series = {2: Trajectory(name="mine", checkpoints=(Checkpoint(step=0, path="a"),))}
    assert seeds.seed_table_inputs(series) == {"drift_2": paths.drift_table("external/mine"),
                                               "trajectory_2": paths.trajectory_file("external/mine")}
    assert seeds.seed_bands_outputs(paths.seed_group_dir("g")) == {
        ext: paths.seed_bands_plot(paths.seed_group_dir("g"), ext) for ext in ("html", "png")}
    assert seeds.seed_bands_title("g", ["mine", "mine-s1"]) == "v(T) over the seeds of g: mine, mine-s1"
