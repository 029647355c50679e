"""Bring-your-own trajectories: config, discovery (folders, a fake hub listing), import of
local folders and LoRA adapters, and the workflow scheduling only what a new checkpoint needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import planned_jobs, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import paths, tables
from valuedrift.trajectories import Checkpoint, TrajectoryError, discover, from_config, import_checkpoint


def folders(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


# --- the trajectory model ---------------------------------------------------------------

def test_listed_checkpoints_become_model_keys_per_step(tmp_path):
    folders(tmp_path, "a", "b", "lora")
    cfg = {"models": {"tiny": {}}, "trajectories": {"mine": {"checkpoints": [
        {"step": 200, "path": "b"}, {"step": 0, "path": "a"}, {"step": 100, "hub": "org/model@step100"},
        {"step": 300, "adapter": "lora", "base": "tiny"}]}}}
    (t,) = from_config(cfg, workdir=tmp_path)
    assert t.steps == [0, 100, 200, 300] and (t.start_step, t.end_step) == (0, 300)
    assert t.model_path == "external/mine"
    assert t.model_keys() == {0: "external/mine/step-0", 100: "external/mine/step-100",
                              200: "external/mine/step-200", 300: "external/mine/step-300"}
    assert t.checkpoint(100).spec() == {"source": "hub", "hub": "org/model", "revision": "step100"}
    assert t.checkpoint(300).spec() == {"source": "adapter", "adapter": "lora", "base": "tiny"}
    assert paths.is_external_model(t.model_at(200)) and paths.external_trajectory_of(t.model_at(200)) == "mine"
    with pytest.raises(TrajectoryError, match="150 is not a step"):
        t.model_at(150)
    # what its rules ask for
    assert t.import_inputs(300, ["tiny"]) == {"checkpoint": "lora", "base": "results/models/tiny/base"}
    assert t.import_inputs(100, ["tiny"]) == {}
    assert t.stances_inputs()["step_200"] == "results/stances/external/mine/step-200.parquet"
    assert t.drift_inputs()["end"] == "results/stances/external/mine/step-300.parquet"
    assert t.outputs()[0] == "results/drift/external/mine/drift.csv"


@pytest.mark.parametrize("spec, message", [
    ({"checkpoints": [{"step": 0, "path": "a"}, {"step": 0, "path": "a"}]}, r"step\(s\) \[0\] given more than once"),
    ({"checkpoints": [{"step": 0, "path": "a", "hub": "x/y"}]}, r"checkpoints\[0\]': give exactly one of"),
    ({"checkpoints": [{"step": 0, "path": "missing"}]}, "not a folder: missing"),
    ({"checkpoints": [{"step": 0, "adapter": "a"}]}, r"checkpoints\[0\].base' is required"),
    ({"checkpoints": []}, "has no checkpoints"),
])
def test_bad_trajectories_are_named(tmp_path, spec, message):
    folders(tmp_path, "a")
    with pytest.raises(TrajectoryError, match=message):
        from_config({"models": {}, "trajectories": {"mine": spec}}, workdir=tmp_path)


def test_discover_checkpoint_folders(tmp_path):
    folders(tmp_path, "out/checkpoint-500", "out/checkpoint-1000", "out/checkpoint-best", "out/other-3")
    (tmp_path / "out" / "checkpoint-7").write_text("a file, not a checkpoint")
    found = discover("k", {"folder": "out"}, workdir=tmp_path)
    assert [(c.step, c.path) for c in found] == [(500, "out/checkpoint-500"), (1000, "out/checkpoint-1000")]
    as_adapters = discover("k", {"folder": "out", "adapter_base": "tiny", "steps": [1000]}, workdir=tmp_path)
    assert as_adapters == [Checkpoint(step=1000, adapter="out/checkpoint-1000", base="tiny")]
    with pytest.raises(TrajectoryError, match="'k.folder': not a folder"):
        discover("k", {"folder": "nowhere"}, workdir=tmp_path)
    with pytest.raises(TrajectoryError, match="'k': discovered no checkpoints"):
        discover("k", {"folder": "out", "pattern": "step-*"}, workdir=tmp_path)


def test_discover_hub_branches_through_an_injected_listing(tmp_path):
    asked = []

    def fake_refs(repo):
        asked.append(repo)
        return ["main", "step143000", "step0", "step1000", "step1000-retry", "v1"]

    found = discover("k", {"hub": "EleutherAI/pythia-70m"}, workdir=tmp_path, list_refs=fake_refs)
    assert asked == ["EleutherAI/pythia-70m"]
    assert [(c.step, c.hub, c.revision) for c in found] == [
        (0, "EleutherAI/pythia-70m", "step0"), (1000, "EleutherAI/pythia-70m", "step1000"),
        (143000, "EleutherAI/pythia-70m", "step143000")]
    (t,) = from_config({"trajectories": {"pythia": {"discover": {"hub": "EleutherAI/pythia-70m", "steps": [0, 143000]}}}},
                       workdir=tmp_path, list_refs=fake_refs)
    assert t.steps == [0, 143000] and t.checkpoint(0).spec()["revision"] == "step0"
    custom = discover("k", {"hub": "r", "branches": r"stage-(\d+)"}, workdir=tmp_path,
                      list_refs=lambda repo: ["stage-2", "stage-10", "main"])
    assert [c.step for c in custom] == [2, 10]
    with pytest.raises(TrajectoryError, match="one group"):
        discover("k", {"hub": "r", "branches": "step"}, workdir=tmp_path, list_refs=fake_refs)


def test_default_hub_listing_reads_branch_names(monkeypatch):
    import huggingface_hub

    from valuedrift import trajectories

    class Ref:
        def __init__(self, name):
            self.name = name

    class Refs:
        branches = [Ref("main"), Ref("step8")]
        tags = [Ref("step9")]

    monkeypatch.setattr(huggingface_hub, "list_repo_refs", lambda repo: Refs())
    assert trajectories.list_hub_branches("any/repo") == ["main", "step8"]


def test_config_accepts_a_trajectory_only_study_and_reserves_external(tiny_model):
    cfg = tiny_config(tiny_model, runs=[], trajectories={"mine": {"checkpoints": [{"step": 0, "path": str(tiny_model)}]}})
    out = vd_config.validate(cfg)
    assert out["runs"] == []
    with pytest.raises(vd_config.ConfigError, match="at least one run"):
        vd_config.validate(tiny_config(tiny_model, runs=[]))
    bad = tiny_config(tiny_model)
    bad["models"]["external"] = dict(bad["models"]["tiny"])
    with pytest.raises(vd_config.ConfigError, match="'external' is reserved"):
        vd_config.validate(bad)


# --- importing checkpoints ----------------------------------------------------------------

def make_adapter(base_dir: Path, output: Path, seed: int) -> Path:
    """A LoRA adapter over the tiny model with non-zero weights (so merging changes the model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(output)
    return output


def logits(model_dir, text="Do you support the policy?"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(model_dir)(**tok(text, return_tensors="pt")).logits


def test_import_local_folder_and_lora_adapter(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import_checkpoint({"source": "local", "path": str(tiny_model)}, tmp_path / "local")
    assert torch.equal(logits(tmp_path / "local"), logits(tiny_model))

    adapter = make_adapter(tiny_model, tmp_path / "adapter", seed=1)
    import_checkpoint({"source": "adapter", "adapter": str(adapter), "base": "tiny"}, tmp_path / "merged",
                      base_dir=str(tiny_model))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()  # an ordinary model folder
    merged = logits(tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
        expected = peft_model(**tok("Do you support the policy?", return_tensors="pt")).logits
    assert torch.allclose(merged, expected, atol=1e-5)
    assert not torch.allclose(merged, logits(tiny_model), atol=1e-3)
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter folder"):
        import_checkpoint({"source": "adapter", "adapter": str(tiny_model), "base": "tiny"}, tmp_path / "x",
                          base_dir=str(tiny_model))


# --- the workflow ---------------------------------------------------------------------------

@pytest.mark.slow
def test_byo_trajectory_and_seeds_through_the_workflow_then_add_a_seed_and_a_checkpoint(workdir, tiny_model):
    """Two checkpoint folders discovered under ckpts/ and one LoRA adapter, evaluated by the
    same generate/judge/trajectory/drift rules, beside one SFT run trained with seed 0; then a
    second seed of each, and a new checkpoint-* folder."""
    import polars as pl

    from valuedrift.study import Study

    ckpts = workdir / "ckpts"
    for step in (0, 2):
        shutil.copytree(tiny_model, ckpts / f"checkpoint-{step}")
    make_adapter(tiny_model, workdir / "lora-6", seed=2)
    run = {"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 2, "seeds": [0]}
    cfg = tiny_config(tiny_model, runs=[run], trajectories={"mine": {
        "prompt_format": "chat", "discover": {"folder": "ckpts"}, "seed": 0, "seed_group": "g",
        "checkpoints": [{"step": 6, "adapter": "lora-6", "base": "tiny"}]}})
    cfg["generation"]["samples"] = 1
    configfile = str(write_config(workdir, cfg))
    args = ("trajectories", "seeds", "--configfile", configfile)

    planned = planned_jobs(workdir, *args)
    assert planned == {"questions": 1, "import_base_model": 1, "import_external_checkpoint": 3,
                       "prepare_dataset": 1, "sft_segment": 1, "generate": 5, "judge": 5,  # 3 external, 2 of seed 0
                       "external_trajectory": 1, "external_drift_table": 1, "external_trajectory_plot": 1,
                       "seed_group_tables": 1, "external_seed_bands_plot": 1, "trajectory": 1, "drift_table": 1,
                       "run_seed_tables": 1, "run_seed_bands_plot": 1, "trajectories": 1, "seeds": 1}

    snakemake(workdir, *args)
    drift = tables.read(workdir / paths.drift_table("external/mine"), "drift")
    assert set(drift["total_steps"]) == {6} and drift["significant"].dtype == pl.Boolean
    traj = tables.read(workdir / paths.trajectory_file("external/mine"), "trajectory")
    assert sorted(traj["step"].unique()) == [0, 2, 6]
    across = tables.read(workdir / paths.drift_across_seeds_table("g"), "drift_across_seeds")
    assert set(across["n_seeds"]) <= {0, 1} and across["exceeds_seed_spread"].is_null().all()  # one seed: no spread
    assert (workdir / paths.seed_bands_plot(paths.run_seeds_dir("tiny/sft-demo-instruct"), "png")).stat().st_size > 0
    assert planned_jobs(workdir, *args) == {}

    # a second seed of the external series: its own checkpoints' jobs and the across-seed tables, nothing of seed 0
    for step in (0, 2):
        shutil.copytree(tiny_model, workdir / "ckpts-s1" / f"checkpoint-{step}")
    with_seed = {**cfg, "trajectories": {**cfg["trajectories"], "mine-s1": {
        "discover": {"folder": "ckpts-s1"}, "seed": 1, "seed_group": "g"}}}
    seed_config = str(write_config(workdir, with_seed, "with-seed.yaml"))
    assert planned_jobs(workdir, "trajectories", "--configfile", seed_config) == {
        "import_external_checkpoint": 2, "generate": 2, "judge": 2, "external_trajectory": 1,
        "external_drift_table": 1, "external_trajectory_plot": 1, "seed_group_tables": 1,
        "external_seed_bands_plot": 1, "trajectories": 1}

    # a second seed of the trained run: its own training, sampling and judging (its base-model answers
    # sampled with seed 1) and the across-seed tables; nothing of seed 0 reruns
    run["seeds"] = [0, 1]
    configfile = str(write_config(workdir, cfg))
    args = ("trajectories", "seeds", "--configfile", configfile)
    assert planned_jobs(workdir, *args) == {"sft_segment": 1, "generate": 2, "judge": 2, "trajectory": 1,
                                            "drift_table": 1, "run_seed_tables": 1, "run_seed_bands_plot": 1,
                                            "seeds": 1}
    plan = snakemake(workdir, *args, "-n").stdout
    assert "seed0" not in "".join(line for line in plan.splitlines() if line.strip().startswith("output:"))
    snakemake(workdir, *args)
    study = Study(vd_config.validate(cfg))
    s0, s1 = (study.run(f"tiny/sft-demo-instruct-seed{s}") for s in (0, 1))
    # the seed reached the sampler (same base model, other answers) and the trainer (other weights)
    answers = [tables.read(workdir / paths.generations_file(r.sampled_at(0)), "generations")["response"].to_list()
               for r in (s0, s1)]
    assert answers[0] != answers[1]
    from safetensors.torch import load_file

    weights = [load_file(workdir / paths.model_dir(r.model_at(2)) / "model.safetensors") for r in (s0, s1)]
    assert any(not torch_equal(weights[0][k], weights[1][k]) for k in weights[0])
    across = tables.read(workdir / paths.run_drift_across_seeds("tiny/sft-demo-instruct"), "drift_across_seeds")
    assert set(across["n_seeds"]) == {2} and across["exceeds_seed_spread"].null_count() == 0

    # a new checkpoint folder: only its import, generation and judging, then the tables (and the report) after them
    shutil.copytree(tiny_model, ckpts / "checkpoint-4")
    assert planned_jobs(workdir, *args) == {"import_external_checkpoint": 1, "generate": 1, "judge": 1,
                                            "external_trajectory": 1, "external_drift_table": 1,
                                            "external_trajectory_plot": 1, "seed_group_tables": 1,
                                            "external_seed_bands_plot": 1, "trajectories": 1, "seeds": 1}


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_hub_checkpoint_is_loaded_at_its_revision(tmp_path, tiny_model, monkeypatch):
    """Offline: the hub download is replaced by the tiny model, recording what was asked for."""
    import transformers

    asked = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained

        def fake(name, *args, _real=real, _cls=cls.__name__, **kwargs):
            asked.append((_cls, name, kwargs.get("revision")))
            return _real(tiny_model, *args, **{k: v for k, v in kwargs.items() if k != "revision"})

        monkeypatch.setattr(cls, "from_pretrained", fake)
    (t,) = from_config({"trajectories": {"p": {"checkpoints": [{"step": 1000, "hub": "EleutherAI/pythia-70m@step1000"}]}}},
                       workdir=tmp_path)
    import_checkpoint(t.checkpoint(1000).spec(), tmp_path / "out")
    assert sorted(asked) == [("AutoModelForCausalLM", "EleutherAI/pythia-70m", "step1000"),
                             ("AutoTokenizer", "EleutherAI/pythia-70m", "step1000")]
    assert (tmp_path / "out" / "config.json").is_file()


def test_seed_groups(tmp_path):
    folders(tmp_path, "a", "b")
    one = {"checkpoints": [{"step": 0, "path": "a"}]}
    ts = from_config({"trajectories": {"s0": {**one, "seed": 0, "seed_group": "g"},
                                       "s1": {**one, "seed": 1, "seed_group": "g"}, "solo": one}}, workdir=tmp_path)
    from valuedrift.trajectories import seed_groups

    assert {g: {s: t.name for s, t in by_seed.items()} for g, by_seed in seed_groups(ts).items()} == \
        {"g": {0: "s0", 1: "s1"}}
    with pytest.raises(TrajectoryError, match="seed 0 of seed group 'g' is also trajectory 's0'"):
        from_config({"trajectories": {"s0": {**one, "seed": 0, "seed_group": "g"},
                                      "again": {**one, "seed": 0, "seed_group": "g"}}}, workdir=tmp_path)
    with pytest.raises(TrajectoryError, match="seed and seed_group together"):
        from_config({"trajectories": {"s0": {**one, "seed": 0}}}, workdir=tmp_path)


def test_sampling_seeds_sample_one_series_per_seed_from_one_import(tmp_path):
    folders(tmp_path, "a", "b")
    spec = {"checkpoints": [{"step": 0, "path": "a"}, {"step": 4, "path": "b"}], "sampling_seeds": [0, 1]}
    ts = from_config({"trajectories": {"mine": spec}}, workdir=tmp_path)
    from valuedrift.trajectories import imported, sampling_seeds, seed_groups

    assert [t.name for t in ts] == ["mine-seed0", "mine-seed1"]
    s1 = ts[1]
    assert s1.model_keys() == {0: "external/mine/step-0", 4: "external/mine/step-4"}  # imported once, as mine
    assert s1.sampled_keys() == {0: "external/mine/step-0/seed-1", 4: "external/mine/step-4/seed-1"}
    assert s1.drift_inputs()["end"] == "results/stances/external/mine/step-4/seed-1.parquet"
    assert s1.outputs()[0] == "results/drift/external/mine-seed1/drift.csv"
    assert list(imported(ts)) == ["mine"] and sampling_seeds(ts)["external/mine/step-0/seed-1"] == 1
    assert {g: list(by_seed) for g, by_seed in seed_groups(ts).items()} == {"mine": [0, 1]}
    with pytest.raises(TrajectoryError, match="sampling_seeds': the series is its own seed group"):
        from_config({"trajectories": {"mine": {**spec, "seed": 0, "seed_group": "g"}}}, workdir=tmp_path)
    with pytest.raises(TrajectoryError, match="mine-seed1 named twice"):
        from_config({"trajectories": {"mine": spec, "mine-seed1": {"checkpoints": [{"step": 0, "path": "a"}]}}},
                    workdir=tmp_path)


def test_sampling_seeds_plan_one_import_per_checkpoint_and_one_sample_per_seed(workdir, tiny_model):
    for step in (0, 2):
        (workdir / "ckpts" / f"checkpoint-{step}").mkdir(parents=True)
    cfg = tiny_config(tiny_model, runs=[], trajectories={"mine": {"discover": {"folder": "ckpts"},
                                                                  "sampling_seeds": [0, 1, 2]}})
    configfile = str(write_config(workdir, cfg))
    assert planned_jobs(workdir, "trajectories", "--configfile", configfile) == {
        "questions": 1, "import_base_model": 1, "import_external_checkpoint": 2,  # the judge; each checkpoint once
        "generate": 6, "judge": 6, "external_trajectory": 3,
        "external_drift_table": 3, "external_trajectory_plot": 3, "seed_group_tables": 1,
        "external_seed_bands_plot": 1, "trajectories": 1}
