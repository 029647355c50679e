"""PPO as resumable segments on top of ``trl.experimental.ppo`` (trl <= 1.12).

trl's ``PPOTrainer.train()`` always starts at update 0 and cannot resume. We keep
trl's loop untouched and make it resumable from the outside:

* data order: the prompt loader is replaced by one whose order is a pure function of
  (seed, epoch), so a resumed run starts at batch ``k`` without replaying batches;
* state: at ``on_train_begin`` the optimizer, scheduler, RNG states and step/episode
  counters are restored from the previous checkpoint (policy weights are loaded as the
  model -- with LoRA, the start model plus the previous adapter -- and the value model
  from ``value_model/`` beside them);
* stopping: after the checkpoint of the segment's last update is saved, a callback
  raises ``SegmentDone``, which ends trl's loop (it has no stop hook of its own).
"""

from __future__ import annotations

import json
import os
from .. import paths
from pathlib import Path

import numpy as np


class SegmentDone(Exception):
    """Raised once the segment's last checkpoint is on disk."""


class EpochSeededLoader:
    """Batches of a dataset in an order fixed by (seed, epoch); each iteration is one epoch.

    Starting at global batch ``start_batch`` skips straight there, so resuming costs nothing.
    Under several processes each takes its slice of every global batch.
    """

    def __init__(self, dataset, *, batch_size: int, collate_fn, seed: int, start_batch: int = 0,
                 process_index: int = 0, num_processes: int = 1):
        self.dataset, self.batch_size, self.collate_fn, self.seed = dataset, batch_size, collate_fn, seed
        self.global_batch = batch_size * num_processes
        self.per_epoch = len(dataset) // self.global_batch
        if self.per_epoch == 0:
            raise ValueError(f"{len(dataset)} prompts are fewer than one PPO batch of {self.global_batch}")
        self.epoch, self.skip = divmod(start_batch, self.per_epoch)
        self.process_index = process_index

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset))
        first, self.skip = self.skip, 0
        self.epoch += 1
        for b in range(first, self.per_epoch):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            mine = chunk[self.process_index * self.batch_size:(self.process_index + 1) * self.batch_size]
            yield self.collate_fn([self.dataset[int(i)] for i in mine])


def build_ppo(settings, common, model_dir, tokenizer, rows, extras):
    """A trl PPOTrainer whose segment starts at ``extras['previous']`` (or the start model)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    reward_dir, previous, step = extras["reward_model"], extras.get("previous"), extras["step"]
    if not reward_dir:
        raise ValueError("PPO needs a reward model")
    horizon = common["max_steps"]
    common = {k: v for k, v in common.items() if k not in ("max_steps", "data_seed")}
    args = PPOConfig(
        total_episodes=horizon * settings.global_batch_size,  # so that num_total_batches == horizon
        response_length=settings.response_length, temperature=settings.temperature, kl_coef=settings.kl_coef,
        missing_eos_penalty=settings.missing_eos_penalty, stop_token="eos",
        num_ppo_epochs=settings.num_ppo_epochs, num_mini_batches=settings.num_mini_batches,
        num_sample_generations=0, **common)

    prompt_budget = settings.max_length - settings.response_length  # prompt + response <= max_length
    if prompt_budget < 1:
        raise ValueError(f"training.ppo.max_length ({settings.max_length}) must exceed training.ppo.response_length "
                         f"({settings.response_length}): it bounds prompt plus response")

    def encode(row):
        from ..chat import CHAT_TEMPLATE_KWARGS

        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                            **CHAT_TEMPLATE_KWARGS)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return {"input_ids": ids[-prompt_budget:]}

    dataset = Dataset.from_list(rows).map(encode, remove_columns=["prompt", "chosen", "rejected"])
    if settings.lora:  # adapters on the start model; the reference is that model, adapters disabled
        from . import lora

        policy = lora.trainable_policy(model_dir, previous, settings.lora, where="training.ppo.lora")
        ref = None
    else:
        policy = AutoModelForCausalLM.from_pretrained(previous or model_dir)
        ref = AutoModelForCausalLM.from_pretrained(model_dir)
    reward = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1)
    value_src = Path(previous) / "value_model" if previous else reward_dir
    value = AutoModelForSequenceClassification.from_pretrained(value_src, num_labels=1)
    for m in (reward, value):
        m.config.pad_token_id = tokenizer.pad_token_id

    # Rollouts end at the chat template's end-of-turn token, which trl's PPO knows only as
    # the tokenizer's EOS (stop_token="eos"; the EOS trick penalises rollouts without it).
    # A Llama-3/Qwen3 base tokenizer's EOS is not the token its SFT model ends turns with.
    from ..chat import end_of_turn_token

    turn_end = end_of_turn_token(tokenizer)
    if turn_end is not None and turn_end != tokenizer.eos_token:
        tokenizer.eos_token = turn_end
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward,
                         value_model=value, train_dataset=dataset)
    start = 0
    if previous:
        start = json.loads(Path(paths.trainer_state_in(str(previous))).read_text())["global_step"]
    acc = trainer.accelerator
    trainer.dataloader = EpochSeededLoader(dataset, batch_size=trainer.local_dataloader_batch_size,
                                           collate_fn=trainer.data_collator, seed=settings.seed, start_batch=start,
                                           process_index=acc.process_index, num_processes=acc.num_processes)

    class Segment(TrainerCallback):
        def on_train_begin(self, args_, state, control, **kwargs):
            if previous:
                prev = Path(previous)
                trainer.optimizer.load_state_dict(torch.load(prev / "optimizer.pt", weights_only=True))
                trainer.lr_scheduler.load_state_dict(torch.load(prev / "scheduler.pt", weights_only=True))
                trainer._load_rng_state(str(prev))
                state.global_step, state.episode = start, start * args.batch_size
                state.log_history = json.loads(Path(paths.trainer_state_in(str(prev))).read_text())["log_history"]
            return control

        def on_step_end(self, args_, state, control, **kwargs):
            if state.global_step >= step:
                control.should_save = True
            return control

        def on_save(self, args_, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            acc.unwrap_model(trainer.model).value_model.save_pretrained(ckpt / "value_model")
            if state.global_step >= step:
                raise SegmentDone
            return control

    trainer.add_callback(Segment())
    return trainer
