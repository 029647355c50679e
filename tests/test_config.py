"""Config errors are reported with the key's name, before any job runs."""

from __future__ import annotations

import copy

import pytest

from conftest import REPO, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift.study import Run, runs_of


@pytest.fixture
def cfg(tmp_path):
    model = tmp_path / "model"  # a model folder's marks, enough for validation (config.json, weights, a chat template)
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "chat_template.jinja").write_text("{{ messages }}")
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, str(model / "model.safetensors"))  # whole weights: integrity checks pass
    return tiny_config(model)


def test_valid_config_fills_defaults(cfg):
    out = vd_config.validate(copy.deepcopy(cfg))
    assert out["generation"]["temperature"] == 0.7  # paper default
    assert out["drift"]["confidence"] == 0.95
    assert out["judge"]["max_unscorable_fraction"] == 0.05


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["generation"].update(temprature=0.5), "unknown config key 'temprature' in 'generation'"),
    (lambda c: c.update(extra_section={}), "unknown config key 'extra_section' at the top level"),
    (lambda c: c["generation"].update(samples="five"), "config key 'generation.samples': 'five' is not of type 'integer'"),
    (lambda c: c["runs"][1].update(every=0), "config key 'runs[1].every'"),
    (lambda c: c["datasets"]["demo-instruct"].update(path="nope/missing.jsonl"),
     "config key 'datasets.demo-instruct.path': file not found: nope/missing.jsonl"),
    (lambda c: c["runs"][0].update(base="llama"), "config key 'runs[0].base': unknown model 'llama'"),
    (lambda c: c["runs"][1].update(algorithm="dop"), "config key 'runs[1].algorithm': unknown algorithm 'dop'"),
    (lambda c: c["runs"][1].update(preference="demo-instruct"), "is a sft dataset, a preference dataset is needed"),
    (lambda c: c["runs"].pop(0), "PO run needs an SFT run"),
    (lambda c: c["questions"].pop("path"), "config key 'questions.path' is required"),
    (lambda c: c["training"]["dpo"].update(lora={"r": 8, "alpha": 16}), "unknown config key 'alpha' in 'training.dpo.lora'"),
    (lambda c: c["training"]["sft"].update(lora={"r": 0}), "config key 'training.sft.lora.r'"),
])
def test_config_errors_name_the_key(cfg, mutate, message):
    mutate(cfg)
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg)
    assert message in str(err.value)


def test_dataset_stance_with_a_classifier_judge_is_refused_before_any_job(cfg):
    """The dataset-stance stage asks the primary judge the Figure 18 prompt: a classifier judge,
    which reads no prompt, is an error at config time naming judge.backend and dataset_stance."""
    cfg["judge"] = {"backend": "classifier", "train": {"path": str(REPO / "data/demo/sft.jsonl")}}
    cfg["dataset_stance"] = {"datasets": ["demo-instruct"]}
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(copy.deepcopy(cfg))
    assert "config key 'judge.backend': 'classifier' cannot judge the 'dataset_stance' datapoints" in str(err.value)
    assert "make `judge` a local, vllm or openai judge" in str(err.value)
    cfg["judges"] = {"probe": cfg["judge"]}  # the fix it suggests: an LLM judge, the classifier on the panel
    cfg["judge"] = {"backend": "local", "model": "tiny"}
    vd_config.validate(cfg)


def test_runs_link_po_to_final_sft_checkpoint(cfg):
    runs = runs_of(vd_config.validate(cfg))
    sft, dpo = runs
    assert sft == Run(base="tiny", sft="demo-instruct", every=2, max_steps=4)
    assert dpo.start_model == "tiny/sft-demo-instruct/checkpoint-4"
    assert dpo.model_at(0) == "tiny/sft-demo-instruct/checkpoint-4"
    assert dpo.model_at(2) == "tiny/sft-demo-instruct/dpo-demo-support/checkpoint-2"
    assert sft.model_at(0) == "tiny/base"
    assert sft.previous_step(4) == 2 and sft.previous_step(2) == 0


def test_checkpoint_steps_end_at_max_steps():
    assert Run("b", "s", every=500, max_steps=1200).steps == [500, 1000, 1200]
    assert Run("b", "s", every=2, max_steps=6).steps == [2, 4, 6]
    with pytest.raises(ValueError, match="not a checkpoint step"):
        Run("b", "s", every=2, max_steps=6).previous_step(3)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["generation"].update(temprature=0.5), "unknown config key 'temprature' in 'generation'"),
    (lambda c: c["judge"].update(batch_size="big"), "config key 'judge.batch_size'"),
    (lambda c: c["questions"].update(path="missing/questions.jsonl"), "config key 'questions.path': file not found"),
])
def test_snakemake_reports_config_error_before_any_job(workdir, tiny_model, mutate, message):
    cfg = tiny_config(tiny_model)
    mutate(cfg)
    write_config(workdir, cfg)
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (workdir / "results").exists(), "no job may run on an invalid config"


def test_shipped_configs_are_valid():
    vd_config.load(REPO / "config/config.yaml", workdir=REPO)
