"""Hyperparameters of each trainer, defaulting to the paper's Appendix B.

Every field is a config key under ``training.<algorithm>``. The global batch size is
what the paper reports; gradient accumulation is derived from it, the per-device batch
and the number of processes (``global = per_device x accumulation x devices``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass
class TrainerSettings:
    learning_rate: float
    global_batch_size: int
    num_train_epochs: float = 3.0
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0  # "Adam without weight decay": AdamW with wd=0 is Adam
    max_length: int = 2048
    per_device_batch_size: int = 1
    schedule_steps: int | None = None  # None: epochs x ceil(examples / global batch)
    bf16: bool | str | None = None  # None: bf16 on GPU, fp32 on CPU; "auto": by capability (valuedrift.precision)
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 1
    # LoRA adapters (peft.LoraConfig keys, e.g. {r: 16, lora_alpha: 32}) instead of full
    # fine-tuning; None = full fine-tuning, as in the paper (see training/lora.py)
    lora: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # passed verbatim to the trl config

    def accumulation_steps(self, world_size: int = 1) -> int:
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(f"global_batch_size {self.global_batch_size} is not a multiple of "
                             f"per_device_batch_size {self.per_device_batch_size} x {world_size} devices")
        return self.global_batch_size // per_step

    def horizon(self, n_examples: int) -> int:
        """Optimizer steps of the whole run: the length of the learning-rate schedule."""
        if self.schedule_steps:
            return self.schedule_steps
        return max(1, math.ceil(self.num_train_epochs * math.ceil(n_examples / self.global_batch_size)))

    def warmup_steps(self, horizon: int) -> int:
        return math.ceil(self.warmup_ratio * horizon)

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainerSettings":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} keys: {unknown}")
        return replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SFTSettings(TrainerSettings):
    """Appendix B.2: lr 2e-5, global batch 128, max length 2048, cosine, 3% warmup, 3 epochs.
    The loss is the response's alone (Section 2.2: -log pi(y|x)): every assistant turn
    and its end-of-turn token, nothing of the system or user turns (chat.assistant_token_mask)."""
    learning_rate: float = 2e-5
    global_batch_size: int = 128
    warmup_ratio: float = 0.03
    packing: bool = False
    padding_free: bool = False
    assistant_only_loss: bool = True  # False: every token of the conversation (not the paper's objective)


@dataclass
class RewardSettings(TrainerSettings):
    """Appendix B.3 (PPO): reward model for one epoch, lr 1e-5, batch 128."""
    learning_rate: float = 1e-5
    global_batch_size: int = 128
    num_train_epochs: float = 1.0
    lr_scheduler_type: str = "linear"  # not stated in the paper; HF default
    warmup_ratio: float = 0.0


@dataclass
class DPOSettings(TrainerSettings):
    """Appendix B.3: lr 1e-5, beta 0.1, cosine 10% warmup, batch 32, 3 epochs, maximum
    sequence length 2048 (``max_length``) and maximum response length 1024
    (``max_completion_length``: each reply keeps its first 1024 tokens)."""
    learning_rate: float = 1e-5
    global_batch_size: int = 32
    beta: float = 0.1
    loss_type: str = "sigmoid"
    padding_free: bool = False
    max_completion_length: int | None = 1024


@dataclass
class SimPOSettings(TrainerSettings):
    """Appendix B.3: lr 5e-7, beta 2.0, gamma 0.5, cosine 10% warmup, batch 32, 3 epochs,
    maximum sequence length 2048, maximum response length 1024 (``max_completion_length``).
    SimPO is trl's CPO trainer with loss_type='simpo' and cpo_alpha=0."""
    learning_rate: float = 5e-7
    global_batch_size: int = 32
    beta: float = 2.0
    simpo_gamma: float = 0.5
    cpo_alpha: float = 0.0
    max_completion_length: int | None = 1024


@dataclass
class PPOSettings(TrainerSettings):
    """Appendix B.3: lr 5e-7, cosine 10% warmup, batch 32, max length 2048, max response
    1024, KL coefficient 0.05, EOS trick, rollout temperature 0.7, 3 epochs. ``max_length``
    bounds prompt + response: a prompt keeps its last ``max_length - response_length``
    tokens (the end holds the question and the assistant header)."""
    learning_rate: float = 5e-7
    global_batch_size: int = 32
    response_length: int = 1024
    kl_coef: float = 0.05
    temperature: float = 0.7
    missing_eos_penalty: float | None = 1.0  # the "EOS trick"
    num_ppo_epochs: int = 4
    num_mini_batches: int = 1
