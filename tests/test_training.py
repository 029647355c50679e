"""Training at checkpoint granularity: paper defaults, resume equivalence, atomic writes."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from valuedrift.training import registry, retention
from valuedrift.paths import SEGMENT_INFO
from valuedrift.training.segment import train_segment
from valuedrift.training.settings import (DPOSettings, PPOSettings, RewardSettings, SFTSettings,
                                          SimPOSettings)


def test_defaults_are_the_papers_appendix_b():
    sft = SFTSettings()
    assert (sft.learning_rate, sft.global_batch_size, sft.max_length, sft.lr_scheduler_type,
            sft.warmup_ratio, sft.num_train_epochs, sft.weight_decay) == (2e-5, 128, 2048, "cosine", 0.03, 3, 0.0)
    rm = RewardSettings()
    assert (rm.num_train_epochs, rm.learning_rate, rm.global_batch_size) == (1, 1e-5, 128)
    ppo = PPOSettings()
    assert (ppo.learning_rate, ppo.lr_scheduler_type, ppo.warmup_ratio, ppo.global_batch_size, ppo.max_length,
            ppo.response_length, ppo.kl_coef, ppo.temperature, ppo.num_train_epochs, ppo.weight_decay) == \
        (5e-7, "cosine", 0.1, 32, 2048, 1024, 0.05, 0.7, 3, 0.0)
    assert ppo.missing_eos_penalty is not None  # the EOS trick
    dpo = DPOSettings()
    assert (dpo.learning_rate, dpo.beta, dpo.lr_scheduler_type, dpo.warmup_ratio, dpo.global_batch_size,
            dpo.num_train_epochs, dpo.max_length) == (1e-5, 0.1, "cosine", 0.1, 32, 3, 2048)
    simpo = SimPOSettings()
    assert (simpo.learning_rate, simpo.beta, simpo.simpo_gamma, simpo.cpo_alpha, simpo.lr_scheduler_type,
            simpo.warmup_ratio, simpo.global_batch_size, simpo.num_train_epochs) == \
        (5e-7, 2.0, 0.5, 0.0, "cosine", 0.1, 32, 3)


def test_global_batch_is_computed_not_hand_set():
    s = SFTSettings(per_device_batch_size=4)
    assert s.accumulation_steps(world_size=4) == 8  # 4 x 8 x 4 = 128
    assert s.accumulation_steps(world_size=1) == 32
    with pytest.raises(ValueError, match="not a multiple"):
        SFTSettings(per_device_batch_size=3).accumulation_steps(1)


def test_schedule_spans_the_whole_run():
    s = SFTSettings()
    # the paper's WildChat run: 255,751 examples, 3 epochs, batch 128
    assert s.horizon(255_751) == 3 * 1999
    assert s.warmup_steps(5997) == 180
    assert SFTSettings(schedule_steps=10).horizon(255_751) == 10


def test_registry_settings_take_config_overrides():
    s = registry.settings_for("dpo", {"dpo": {"beta": 0.3}})
    assert s.beta == 0.3 and s.learning_rate == 1e-5
    with pytest.raises(ValueError, match="unknown DPOSettings keys"):
        registry.settings_for("dpo", {"dpo": {"betta": 0.3}})
    with pytest.raises(KeyError, match="unknown algorithm"):
        registry.get("rlhf")


SFT_ROWS = [{"messages": [{"role": "user", "content": f"Say {i}."},
                          {"role": "assistant", "content": f"I say {i}, which is {i * 3} divided by three."}]}
            for i in range(32)]
PREF_ROWS = [{"prompt": [{"role": "user", "content": f"Is {i} a good number?"}],
              "chosen": f"Yes, {i} is a fine number.", "rejected": f"No. {i} is bad."} for i in range(32)]


def _max_diff(a_dir, b_dir) -> float:
    a, b = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _losses(ckpt, key):
    return [h[key] for h in json.loads((ckpt / "trainer_state.json").read_text())["log_history"] if key in h]


@pytest.fixture(scope="module")
def reward_model(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "reward"
    s = RewardSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, learning_rate=1e-3)
    train_segment(algorithm="reward", settings=s, start_model=tiny_model, previous=None, output=out,
                  step=s.horizon(len(PREF_ROWS)), rows=PREF_ROWS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sft", "dpo", "simpo", "ppo"])
def test_two_segments_equal_one(algorithm, tiny_model, tmp_path, request):
    """Resume equivalence: N steps as 2 + 2 equal N = 4 uninterrupted steps.

    Tolerance: weights within 1e-6 (observed: 0 for SFT/DPO/SimPO, ~1e-8 for PPO), the
    logged loss curve identical to 1e-6.
    """
    common = dict(global_batch_size=4, per_device_batch_size=2, max_length=64, learning_rate=1e-3,
                  schedule_steps=8, bf16=False)
    if algorithm == "sft":
        settings, rows, key = SFTSettings(**common), SFT_ROWS, "loss"
    elif algorithm == "dpo":
        settings, rows, key = DPOSettings(**common), PREF_ROWS, "loss"
    elif algorithm == "simpo":
        settings, rows, key = SimPOSettings(**common), PREF_ROWS, "loss"
    else:
        settings, rows, key = PPOSettings(**common, response_length=8, num_ppo_epochs=1), PREF_ROWS, "loss/policy_avg"
    rm = request.getfixturevalue("reward_model") if algorithm == "ppo" else None
    kw = dict(algorithm=algorithm, settings=settings, start_model=tiny_model, rows=rows, reward_model=rm)
    train_segment(previous=None, output=tmp_path / "a/checkpoint-2", step=2, **kw)
    assert retention.has_optimizer_state(tmp_path / "a/checkpoint-2")
    info = train_segment(previous=tmp_path / "a/checkpoint-2", output=tmp_path / "a/checkpoint-4", step=4,
                         optimizer_state="last", **kw)
    train_segment(previous=None, output=tmp_path / "b/checkpoint-4", step=4, **kw)
    assert info["start_step"] == 2 and info["horizon"] == 8
    # optimizer_state: last -- the resumed-from checkpoint gave its state up, the new one keeps it
    assert not retention.has_optimizer_state(tmp_path / "a/checkpoint-2") and info["optimizer_state_freed_bytes"] > 0
    assert retention.has_optimizer_state(tmp_path / "a/checkpoint-4")
    assert (tmp_path / "a/checkpoint-2/scheduler.pt").exists()
    assert _max_diff(tmp_path / "a/checkpoint-4", tmp_path / "b/checkpoint-4") < 1e-6
    assert _max_diff(tmp_path / "a/checkpoint-4", tiny_model) > 1e-6  # it did train
    split, whole = _losses(tmp_path / "a/checkpoint-4", key), _losses(tmp_path / "b/checkpoint-4", key)
    assert len(whole) == 4 and split == pytest.approx(whole, abs=1e-6)
    assert not list(tmp_path.glob("*/.checkpoint-*.partial")), "the work folder is cleaned up"


def test_step_beyond_schedule_is_refused_before_training(tiny_model, tmp_path):
    s = SFTSettings(global_batch_size=8, per_device_batch_size=8, num_train_epochs=1, max_length=64)
    with pytest.raises(ValueError, match="beyond the run's schedule of 4 steps"):
        train_segment(algorithm="sft", settings=s, start_model=tiny_model, previous=None,
                      output=tmp_path / "checkpoint-6", step=6, rows=SFT_ROWS)
    assert not (tmp_path / "checkpoint-6").exists()


def test_a_failed_segment_leaves_no_checkpoint(tiny_model, tmp_path):
    bad = SFTSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, schedule_steps=4,
                      extra={"optim": "no-such-optimizer"})
    with pytest.raises(Exception):
        train_segment(algorithm="sft", settings=bad, start_model=tiny_model, previous=None,
                      output=tmp_path / "checkpoint-2", step=2, rows=SFT_ROWS)
    assert not (tmp_path / "checkpoint-2").exists()


def test_segment_records_its_metrics(tiny_model, tmp_path):
    s = SFTSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, schedule_steps=4, bf16=False)
    train_segment(algorithm="sft", settings=s, start_model=tiny_model, previous=None,
                  output=tmp_path / "checkpoint-2", step=2, rows=SFT_ROWS)
    info = json.loads((tmp_path / "checkpoint-2" / SEGMENT_INFO).read_text())
    assert [h["step"] for h in info["log"] if "loss" in h] == [1, 2]
    assert all("learning_rate" in h for h in info["log"] if "loss" in h)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (tmp_path / "checkpoint-2" / name).exists(), name


def _fake_checkpoint(path, *, deepspeed=False):
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * 10)
    (path / "scheduler.pt").write_bytes(b"s")
    if deepspeed:
        (path / "global_step4").mkdir()
        (path / "global_step4" / "zero_pp_rank_0_optim_states.pt").write_bytes(b"o" * 30)
    else:
        (path / "optimizer.pt").write_bytes(b"o" * 20)
    return path


@pytest.mark.parametrize("policy, previous_keeps, final_keeps, middle_keeps",
                         [("all", True, True, True), ("last", False, True, True), ("none", False, False, True)])
def test_optimizer_state_retention_policies(tmp_path, policy, previous_keeps, final_keeps, middle_keeps):
    prev = _fake_checkpoint(tmp_path / "checkpoint-2", deepspeed=True)
    out = _fake_checkpoint(tmp_path / "checkpoint-4")
    freed = retention.after_segment(policy=policy, previous=prev, output=out, final=True)
    assert retention.has_optimizer_state(prev) == previous_keeps
    assert retention.has_optimizer_state(out) == final_keeps
    assert freed == (0 if previous_keeps else 30) + (0 if final_keeps else 20)
    # weights and scheduler always stay
    assert all((p / "model.safetensors").exists() and (p / "scheduler.pt").exists() for p in (prev, out))
    # a checkpoint that does not end its run keeps its state under every policy
    mid = _fake_checkpoint(tmp_path / "checkpoint-6")
    retention.after_segment(policy=policy, previous=None, output=mid, final=False)
    assert retention.has_optimizer_state(mid) == middle_keeps
    with pytest.raises(ValueError, match="training.optimizer_state must be one of all, last, none"):
        retention.after_segment(policy="first", previous=None, output=mid, final=False)


def test_resuming_without_optimizer_state_is_refused_before_training(tiny_model, tmp_path):
    prev = _fake_checkpoint(tmp_path / "checkpoint-2")
    retention.drop_optimizer_state(prev)
    s = SFTSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, schedule_steps=4)
    with pytest.raises(RuntimeError, match=r"holds no optimizer state \(training.optimizer_state: last\)"):
        train_segment(algorithm="sft", settings=s, start_model=tiny_model, previous=prev,
                      output=tmp_path / "checkpoint-4", step=4, rows=SFT_ROWS, optimizer_state="last")
    assert not (tmp_path / "checkpoint-4").exists()


# --------------------------------------------------------------------------- LoRA (peft)

LORA = {"r": 4, "lora_alpha": 8}


def _lora_settings(algorithm):
    common = dict(global_batch_size=4, per_device_batch_size=2, max_length=64, learning_rate=1e-2,
                  schedule_steps=8, bf16=False, lora=LORA)
    return {"sft": lambda: SFTSettings(**common), "dpo": lambda: DPOSettings(**common),
            "simpo": lambda: SimPOSettings(**common),
            "ppo": lambda: PPOSettings(**common, response_length=8, num_ppo_epochs=1)}[algorithm]()


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sft", "dpo", "simpo", "ppo"])
def test_lora_two_segments_equal_one(algorithm, tiny_model, tmp_path, request):
    """LoRA segments resume the adapter, its optimizer state and the schedule: 2 + 2 steps
    equal 4 (adapter and merged weights within 1e-6), and each checkpoint is a full model
    folder (adapter merged in) that transformers loads as a plain model."""
    import torch
    from transformers import AutoModelForCausalLM

    from valuedrift.training import lora

    rows = SFT_ROWS if algorithm == "sft" else PREF_ROWS
    rm = request.getfixturevalue("reward_model") if algorithm == "ppo" else None
    kw = dict(algorithm=algorithm, settings=_lora_settings(algorithm), start_model=tiny_model, rows=rows,
              reward_model=rm)
    train_segment(previous=None, output=tmp_path / "a/checkpoint-2", step=2, **kw)
    train_segment(previous=tmp_path / "a/checkpoint-2", output=tmp_path / "a/checkpoint-4", step=4, **kw)
    train_segment(previous=None, output=tmp_path / "b/checkpoint-4", step=4, **kw)
    split, whole = tmp_path / "a/checkpoint-4", tmp_path / "b/checkpoint-4"
    adapter = load_file(split / lora.ADAPTER_DIR / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    adapter_whole = load_file(whole / lora.ADAPTER_DIR / "adapter_model.safetensors")
    assert max((adapter[k] - adapter_whole[k]).abs().max().item() for k in adapter) < 1e-6
    assert _max_diff(split, whole) < 1e-6
    assert _max_diff(split, tiny_model) > 1e-6  # the merged adapter changed the model
    assert not (split / "adapter_config.json").exists()  # else transformers would re-apply it on load
    model = AutoModelForCausalLM.from_pretrained(split)
    assert not any("lora" in name for name, _ in model.named_parameters())
    # only the adapter is trained (and PPO's value model, in full): Adam's two moments are
    # kept for those alone, far less than for the whole model
    n_params = sum(p.numel() for p in model.parameters())
    n_value = 0
    if algorithm == "ppo":
        from transformers import AutoModelForSequenceClassification

        value = AutoModelForSequenceClassification.from_pretrained(split / "value_model", num_labels=1)
        n_value = sum(p.numel() for p in value.parameters())
    state = torch.load(split / "optimizer.pt", weights_only=True)["state"]
    n_state = sum(t.numel() for s in state.values() for t in s.values() if t.dim() > 0)
    assert 0 < n_state - 2 * n_value < 0.2 * 2 * n_params, (n_state, n_params, n_value)
    key = "loss/policy_avg" if algorithm == "ppo" else "loss"
    assert _losses(split, key) == pytest.approx(_losses(whole, key), abs=1e-6)


def test_lora_reward_model_is_a_full_sequence_classifier(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    s = RewardSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, learning_rate=1e-2,
                       bf16=False, lora=LORA)
    out = tmp_path / "reward"
    train_segment(algorithm="reward", settings=s, start_model=tiny_model, previous=None, output=out,
                  step=s.horizon(len(PREF_ROWS)), rows=PREF_ROWS)
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert (out / "lora" / "adapter_model.safetensors").exists()


def test_lora_settings_errors_name_the_key(tiny_model, tmp_path):
    s = SFTSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, schedule_steps=4,
                    lora={"r": 4, "rnak": 8})
    with pytest.raises(ValueError, match=r"training.sft.lora: .*rnak"):
        train_segment(algorithm="sft", settings=s, start_model=tiny_model, previous=None,
                      output=tmp_path / "checkpoint-2", step=2, rows=SFT_ROWS)
    assert not (tmp_path / "checkpoint-2").exists()
    # a run cannot switch to LoRA half-way: its previous checkpoint has no adapter
    full = SFTSettings(global_batch_size=8, per_device_batch_size=8, max_length=64, schedule_steps=4, bf16=False)
    train_segment(algorithm="sft", settings=full, start_model=tiny_model, previous=None,
                  output=tmp_path / "checkpoint-2", step=2, rows=SFT_ROWS)
    with pytest.raises(FileNotFoundError, match="no LoRA adapter in lora/"):
        train_segment(algorithm="sft", settings=full.with_overrides({"lora": LORA}), start_model=tiny_model,
                      previous=tmp_path / "checkpoint-2", output=tmp_path / "checkpoint-4", step=4, rows=SFT_ROWS)
    assert not (tmp_path / "checkpoint-4").exists()


def test_padding_free_sft_loss_equals_padded(tiny_model, tmp_path):
    """Padding-free batches are one flattened row; without flash attention transformers
    keeps the examples apart only through position_ids and only with use_cache=False,
    which trl's SFT loss sets (trl warns regardless). The loss of a batch must equal the
    padded batch's, else examples would attend to each other."""
    import torch
    from transformers import AutoTokenizer

    from valuedrift.training import trainers

    rows = [{"messages": [{"role": "user", "content": "Say " + "more " * i},
                          {"role": "assistant", "content": "Fine. " * (1 + 3 * i)}]} for i in range(4)]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    losses = {}
    for name, extra in {"padded": {}, "padding_free": {"padding_free": True, "max_length": None}}.items():
        s = SFTSettings(global_batch_size=4, per_device_batch_size=4, max_length=256, schedule_steps=1,
                        bf16=False).with_overrides(extra)  # nothing truncated: the same tokens both ways
        common = trainers._common(s, output_dir=str(tmp_path / name), horizon=1, world_size=1)
        trainer = trainers.build_sft(s, common, str(tiny_model), tokenizer, rows, {})
        batch = next(iter(trainer.get_train_dataloader()))
        if name == "padded":
            assert (batch["attention_mask"] == 0).any()  # the batch does hold padding
        else:
            assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch
        with torch.no_grad():
            losses[name] = trainer.compute_loss(trainer.model, batch).item()
    assert losses["padding_free"] == pytest.approx(losses["padded"], abs=1e-5)
