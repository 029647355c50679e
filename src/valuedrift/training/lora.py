"""LoRA (peft) training segments: small optimizer state, full-model checkpoints.

With ``training.<algorithm>.lora`` set, a trainer trains low-rank adapters on the run's
start model instead of every weight (Adam state for a few million parameters instead of
billions: the way to fit an 8B run on one small GPU). A checkpoint stays a complete model
folder, so generation, judging and the next training phase read it like any other:

    checkpoint-{step}/model.safetensors, config.json, tokenizer  start model + adapter, merged
    checkpoint-{step}/lora/adapter_model.safetensors, adapter_config.json   the adapter
    checkpoint-{step}/optimizer.pt, scheduler.pt, rng_state.pth, trainer_state.json

The adapter lives in ``lora/`` because transformers treats a folder with an
``adapter_config.json`` at its top as "load the base named inside, add this adapter", and
the HF Trainer resumes full weights instead of the adapter when it finds
``model.safetensors``. A segment resumes from :func:`resume_view`, the previous checkpoint
as the Trainer expects a peft checkpoint to look, on top of the same start model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ADAPTER_DIR = "lora"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
# The merged model's files: left out of a resume view so that the Trainer loads the adapter
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json")


def peft_config(lora: dict[str, Any], *, task_type: str, where: str):
    """A ``peft.LoraConfig`` from a config's ``lora`` block (``where`` names the block in errors)."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise ImportError(f"{where}: LoRA needs peft (pip install 'valuedrift[lora]')") from None
    settings = {"target_modules": "all-linear", **lora}
    try:
        return LoraConfig(task_type=task_type, **settings)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def resume_view(previous: str | os.PathLike, view: str | os.PathLike) -> str:
    """A folder of links to ``previous`` that the HF Trainer resumes as a peft checkpoint:
    optimizer, scheduler, RNG and trainer state, the adapter from ``lora/``, no merged weights."""
    previous, view = Path(previous).resolve(), Path(view)
    adapter = previous / ADAPTER_DIR
    if not (adapter / ADAPTER_FILES[0]).is_file():
        raise FileNotFoundError(f"{previous}: no LoRA adapter in {ADAPTER_DIR}/ to resume; it was trained "
                                f"without `lora` (a run's lora settings cannot change between segments)")
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for path in previous.iterdir():
        if path.name not in MODEL_FILES and path.name != ADAPTER_DIR:
            (view / path.name).symlink_to(path)
    for path in adapter.iterdir():
        (view / path.name).symlink_to(path)
    return str(view)


def trainable_policy(start_model: str | os.PathLike, previous: str | os.PathLike | None, lora: dict[str, Any],
                     *, where: str):
    """A causal LM with trainable adapters for trainers that take a ready model (PPO): new
    adapters on the start model, or ``previous``'s adapter to resume it."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(start_model)
    if previous is None:
        return get_peft_model(base, peft_config(lora, task_type="CAUSAL_LM", where=where))
    return PeftModel.from_pretrained(base, str(Path(previous) / ADAPTER_DIR), is_trainable=True)


def publish(checkpoint: str | os.PathLike, start_model: str | os.PathLike, *, sequence_classifier: bool = False,
            tokenizer=None) -> None:
    """Turn a saved peft checkpoint into a full model folder: the adapter moves to ``lora/``
    and the start model with the adapter merged in is written beside it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    checkpoint = Path(checkpoint)
    adapter = checkpoint / ADAPTER_DIR
    adapter.mkdir(exist_ok=True)
    for name in ADAPTER_FILES:
        os.replace(checkpoint / name, adapter / name)
    model_class = AutoModelForSequenceClassification if sequence_classifier else AutoModelForCausalLM
    kwargs = {"num_labels": 1} if sequence_classifier else {}
    with torch.no_grad():
        base = model_class.from_pretrained(start_model, **kwargs)
        if sequence_classifier and tokenizer is not None:
            base.config.pad_token_id = tokenizer.pad_token_id
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(checkpoint)
    if tokenizer is not None:
        tokenizer.save_pretrained(checkpoint)
