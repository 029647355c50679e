"""Builders turning (settings, data, start model) into a configured trl trainer."""

from __future__ import annotations

import os
from typing import Any

from . import lora
from ..precision import training_bf16
from .ppo import build_ppo
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
        # transformers' new name: its deprecated alias `gradient_checkpointing` (which trl's configs
        # default to True) repeats a FutureWarning for every config built from it
        activation_checkpointing=settings.gradient_checkpointing,
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
    """Normalised preference rows -> trl's conversational prompt/chosen/rejected, rendered
    with the same chat-template arguments as generation (``chat.CHAT_TEMPLATE_KWARGS``)."""
    from datasets import Dataset

    from ..chat import CHAT_TEMPLATE_KWARGS

    return Dataset.from_list([
        {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}],
         "chat_template_kwargs": dict(CHAT_TEMPLATE_KWARGS)} for r in rows])


def sft_examples(rows, tokenizer, assistant_only_loss: bool = True):
    """SFT rows for trl. Response-only loss: each conversation tokenised with its
    assistant mask (``chat.assistant_token_mask``), from which trl's SFTTrainer builds
    labels (-100 outside the assistant turns). This needs no ``{% generation %}`` markers,
    so it holds for any chat template (trl's ``assistant_only_loss`` would need them)."""
    from datasets import Dataset

    from .. import chat

    if not assistant_only_loss:
        return Dataset.from_list(rows)
    turn_end = chat.end_of_turn_token(tokenizer)
    return Dataset.from_list([chat.assistant_token_mask(tokenizer, r["messages"], where=f"SFT row {i}",
                                                        turn_end=turn_end) for i, r in enumerate(rows)])


def build_sft(settings, common, model_dir, tokenizer, rows, extras):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(max_length=settings.max_length, packing=settings.packing,
                     padding_free=settings.padding_free, **common)
    return SFTTrainer(model=model_dir, args=args, processing_class=tokenizer,
                      train_dataset=sft_examples(rows, tokenizer, settings.assistant_only_loss),
                      **_peft(settings, "sft"))


def limit_responses(trainer, max_completion_length: int | None, columns: dict[str, str]):
    """Keep the first ``max_completion_length`` tokens of every reply in a trainer's
    tokenised dataset (Appendix B.3's maximum response length; trl 1.12's DPO trainer
    has no such setting and its CPO trainer applies one to encoder-decoders only).
    ``columns``: reply-token column -> the prompt column its ids start with ("" = none)."""
    if not max_completion_length:
        return trainer

    def cut(example):
        out = {}
        for column, prompt in columns.items():
            keep = (len(example[prompt]) if prompt else 0) + max_completion_length
            out[column] = example[column][:keep]
        return out

    trainer.train_dataset = trainer.train_dataset.map(cut, desc="limiting response length")
    return trainer


def build_dpo(settings, common, model_dir, tokenizer, rows, extras):
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(beta=settings.beta, loss_type=[settings.loss_type], max_length=settings.max_length,
                     padding_free=settings.padding_free, **common)
    trainer = DPOTrainer(model=model_dir, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                         **_peft(settings, "dpo"))
    return limit_responses(trainer, settings.max_completion_length, {"chosen_ids": "", "rejected_ids": ""})


def build_simpo(settings, common, model_dir, tokenizer, rows, extras):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoModelForCausalLM
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = CPOConfig(loss_type="simpo", beta=settings.beta, simpo_gamma=settings.simpo_gamma,
                     cpo_alpha=settings.cpo_alpha, max_length=settings.max_length,
                     max_completion_length=settings.max_completion_length, **common)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = CPOTrainer(model=model, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                         **_peft(settings, "simpo"))
    # CPO's rows hold prompt + reply ids (and labels, -100 over the prompt) per side
    sides = {f"{side}_{key}": "prompt_input_ids" for side in ("chosen", "rejected")
             for key in ("input_ids", "attention_mask", "labels")}
    return limit_responses(trainer, settings.max_completion_length, sides)


def build_reward(settings, common, model_dir, tokenizer, rows, extras):
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(max_length=settings.max_length, **common)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return RewardTrainer(model=model, args=args, train_dataset=_chat_pairs(rows), processing_class=tokenizer,
                         **_peft(settings, "reward", task_type="SEQ_CLS"))


# The trainer builder of each algorithm (valuedrift.training.registry looks them up here).
BUILDERS = {"sft": build_sft, "dpo": build_dpo, "simpo": build_simpo, "reward": build_reward, "ppo": build_ppo}
