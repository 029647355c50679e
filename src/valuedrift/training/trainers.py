"""Builders turning (settings, data, start model) into a configured trl trainer."""

from __future__ import annotations

import os
from typing import Any

from . import lora
from .ppo import build_ppo  # noqa: F401  (registry entry 'ppo')
from ..precision import training_bf16
from .settings import TrainerSettings


def _common(settings: TrainerSettings, *, output_dir: str, horizon: int, world_size: int) -> dict[str, Any]:
    import torch

    on_gpu = torch.cuda.is_available()
    bf16 = training_bf16(settings.bf16, on_gpu=on_gpu)  # None: GPU only; auto: by capability
    return dict(
        output_dir=output_dir,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_steps(horizon),
        weight_decay=settings.weight_decay,
        max_steps=horizon,  # the schedule spans the whole run; segments stop early
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.accumulation_steps(world_size),
        bf16=bf16,
        use_cpu=not on_gpu,
        gradient_checkpointing=settings.gradient_checkpointing,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="no",  # the segment callback decides when to save
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
        **settings.extra,
    )


def _peft(settings: TrainerSettings, algorithm: str, task_type: str = "CAUSAL_LM") -> dict[str, Any]:
    """``peft_config=`` for a trl trainer when ``training.<algorithm>.lora`` is set."""
    if not settings.lora:
        return {}
    return {"peft_config": lora.peft_config(settings.lora, task_type=task_type, where=f"training.{algorithm}.lora")}


def _chat_pairs(rows) -> Any:
    """Normalised preference rows -> trl's conversational prompt/chosen/rejected."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])


def build_sft(settings, common, model_dir, tokenizer, rows, extras):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(max_length=settings.max_length, packing=settings.packing,
                     padding_free=settings.padding_free, **common)
    return SFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer, **_peft(settings, "sft"))


def build_dpo(settings, common, model_dir, tokenizer, rows, extras):
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(beta=settings.beta, loss_type=[settings.loss_type], max_length=settings.max_length,
                     padding_free=settings.padding_free, **common)
    return DPOTrainer(model=model_dir, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                      **_peft(settings, "dpo"))


def build_simpo(settings, common, model_dir, tokenizer, rows, extras):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoModelForCausalLM
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = CPOConfig(loss_type="simpo", beta=settings.beta, simpo_gamma=settings.simpo_gamma,
                     cpo_alpha=settings.cpo_alpha, max_length=settings.max_length, **common)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return CPOTrainer(model=model, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                      **_peft(settings, "simpo"))


def build_reward(settings, common, model_dir, tokenizer, rows, extras):
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(max_length=settings.max_length, **common)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return RewardTrainer(model=model, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                         **_peft(settings, "reward", task_type="SEQ_CLS"))
