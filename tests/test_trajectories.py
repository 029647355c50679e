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
def test_byo_trajectory_through_the_workflow_then_add_one_checkpoint(workdir, tiny_model):
    """Two checkpoint folders discovered under ckpts/ and one LoRA adapter, evaluated by the
    same generate/judge/trajectory/drift rules; then a new checkpoint-* folder appears."""
    ckpts = workdir / "ckpts"
    for step in (0, 2):
        shutil.copytree(tiny_model, ckpts / f"checkpoint-{step}")
    make_adapter(tiny_model, workdir / "lora-6", seed=2)
    cfg = tiny_config(tiny_model, runs=[], trajectories={"mine": {
        "prompt_format": "chat", "discover": {"folder": "ckpts"}, "seed": 0, "seed_group": "g",
        "checkpoints": [{"step": 6, "adapter": "lora-6", "base": "tiny"}]}})
    cfg["generation"]["samples"] = 1
    configfile = str(write_config(workdir, cfg))
    args = ("trajectories", "--configfile", configfile)

    planned = planned_jobs(workdir, *args)
    assert planned == {"questions": 1, "import_base_model": 1, "import_external_checkpoint": 3, "generate": 3,
                       "judge": 3, "external_trajectory": 1, "external_drift_table": 1,
                       "external_trajectory_plot": 1, "seed_group_tables": 1, "trajectories": 1}
    assert not any(rule.endswith("_segment") for rule in planned)  # nothing is trained

    snakemake(workdir, *args)
    drift = tables.read(workdir / paths.drift_table("external/mine"), "drift")
    assert set(drift["total_steps"]) == {6} and drift["significant"].dtype == pl.Boolean
    traj = tables.read(workdir / paths.trajectory_file("external/mine"), "trajectory")
    assert sorted(traj["step"].unique()) == [0, 2, 6]
    across = tables.read(workdir / paths.drift_across_seeds_table("g"), "drift_across_seeds")
    assert set(across["n_seeds"]) <= {0, 1} and across["exceeds_seed_spread"].is_null().all()  # one seed: no spread
    assert planned_jobs(workdir, *args) == {}

    # a second seed of the same study: its own checkpoints' jobs and the across-seed tables, nothing of seed 0
    for step in (0, 2):
        shutil.copytree(tiny_model, workdir / "ckpts-s1" / f"checkpoint-{step}")
    with_seed = {**cfg, "trajectories": {**cfg["trajectories"], "mine-s1": {
        "discover": {"folder": "ckpts-s1"}, "seed": 1, "seed_group": "g"}}}
    seed_config = str(write_config(workdir, with_seed, "with-seed.yaml"))
    assert planned_jobs(workdir, "trajectories", "--configfile", seed_config) == {
        "import_external_checkpoint": 2, "generate": 2, "judge": 2, "external_trajectory": 1,
        "external_drift_table": 1, "external_trajectory_plot": 1, "seed_group_tables": 1, "trajectories": 1}

    # its drill-down page: one light job over the answers and stances already there
    page = paths.drilldown_page("external/mine")
    assert planned_jobs(workdir, page, "--configfile", configfile) == {"external_drilldown": 1}
    snakemake(workdir, page, "--configfile", configfile)
    data = (workdir / paths.drilldown_data("external/mine")).read_text()
    assert data.startswith("window.DRILLDOWN = ") and '"steps":[0,2,6]' in data

    # a new checkpoint folder: only its import, generation and judging, then the tables after them
    shutil.copytree(tiny_model, ckpts / "checkpoint-4")
    assert planned_jobs(workdir, *args) == {"import_external_checkpoint": 1, "generate": 1, "judge": 1,
                                            "external_trajectory": 1, "external_drift_table": 1,
                                            "external_trajectory_plot": 1, "seed_group_tables": 1,
                                            "trajectories": 1}


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
