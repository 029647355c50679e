"""One training segment = one checkpoint = one Snakemake target.

``checkpoint-{step}`` is built from ``checkpoint-{previous}`` (or the start model) by
resuming everything the HF Trainer saves -- weights, optimizer, scheduler, RNG states
and the position in the seeded data order -- then training until ``step`` under the
learning-rate schedule of the *whole* run, and saving. The checkpoint is written into
a hidden sibling folder and renamed into place, so a half-written checkpoint is never
taken as complete; a crash costs at most the segment in progress.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .. import atomic, paths
from ..integrity import check_model_folder
from . import lora, registry, retention, trainers
from .ppo import SegmentDone
from .settings import TrainerSettings



def _stop_at(step: int):
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        """Save and stop when the segment's last step is reached."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAtStep()


def train_segment(*, output: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Train from ``previous`` (None: from ``start_model``) up to optimizer step ``step``.

    ``optimizer_state`` (all/last/none, see ``retention``) decides which optimizer state
    survives once the checkpoint is published; ``final``: ``step`` ends its run. A full
    disk or quota while the trainer saves is reported as a WriteError naming ``output``;
    the published checkpoints are untouched (the new one is renamed in only when whole).
    """
    with atomic.writing(output):
        return _train_segment(output=output, **kwargs)


def _train_segment(*, algorithm: str, settings: TrainerSettings, start_model: str | os.PathLike,
                   previous: str | os.PathLike | None, output: str | os.PathLike, step: int,
                   rows: list[dict[str, Any]], reward_model: str | os.PathLike | None = None,
                   optimizer_state: str = "all", final: bool = False) -> dict[str, Any]:
    from transformers import AutoTokenizer, set_seed

    algo = registry.get(algorithm)
    output = Path(output)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    horizon = settings.horizon(len(rows))
    if step > horizon:
        raise ValueError(f"{output}: step {step} lies beyond the run's schedule of {horizon} steps "
                         f"({len(rows)} examples, {settings.num_train_epochs} epochs, global batch "
                         f"{settings.global_batch_size}); raise training.{algorithm}.num_train_epochs "
                         f"or set schedule_steps")
    retention.check_policy(optimizer_state)
    if previous is not None:
        retention.check_resumable(previous, optimizer_state)
        check_model_folder(previous, "previous checkpoint")  # a truncated one is never resumed from
    check_model_folder(start_model, "start model")
    work = output.parent / f".{output.name}.partial"
    main_process = int(os.environ.get("RANK", "0")) == 0  # under accelerate launch: one of world_size
    if main_process:
        shutil.rmtree(work, ignore_errors=True)
    common = trainers._common(settings, output_dir=str(work), horizon=horizon, world_size=world_size)
    tokenizer = AutoTokenizer.from_pretrained(start_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    build = algo.builder
    set_seed(settings.seed)  # what a builder initialises (a reward head, LoRA adapters) is seeded
    extras = {"reward_model": str(reward_model) if reward_model else None,
              "previous": str(previous) if previous else None, "step": step}
    trainer = build(settings, common, str(start_model), tokenizer, rows, extras)
    kept = len(trainer.train_dataset)
    if kept == 0:  # trl drops examples longer than max_length (reward) or fully truncated ones
        raise ValueError(f"{output}: none of the {len(rows)} {algorithm} examples is left after tokenisation; "
                         f"raise training.{algorithm}.max_length (now {settings.max_length})")
    if algorithm == "ppo":
        # trl's PPO loop cannot resume by itself; ppo.build_ppo restores state and stops it.
        try:
            trainer.train()
        except SegmentDone:
            pass
    else:
        trainer.add_callback(_stop_at(step))
        resume = str(previous) if previous else None
        if previous and settings.lora:
            resume = lora.resume_view(previous, work / "resume-from")
        trainer.train(resume_from_checkpoint=resume)
    start_step = 0
    if previous:
        start_step = json.loads(Path(paths.trainer_state_in(str(previous))).read_text())["global_step"]
    if world_size > 1:
        # every process trained and took part in saving; the main one alone publishes the checkpoint
        trainer.accelerator.wait_for_everyone()
        if not main_process:
            return {"algorithm": algorithm, "step": step, "start_step": start_step, "horizon": horizon,
                    "world_size": world_size}
    saved = work / f"checkpoint-{step}"
    if not Path(paths.trainer_state_in(str(saved))).exists():
        raise RuntimeError(f"training stopped before step {step}; nothing saved at {saved}")
    history = json.loads(Path(paths.trainer_state_in(str(saved))).read_text())["log_history"]
    info = {"algorithm": algorithm, "step": step, "start_step": start_step, "horizon": horizon,
            "examples": len(rows), "world_size": world_size, "settings": settings.as_dict(),
            "start_model": str(start_model), "resumed_from": str(previous) if previous else None,
            "log": [h for h in history if h.get("step", 0) > start_step]}
    if settings.lora:  # a full model folder for every reader, the adapter in lora/ for resuming
        lora.publish(saved, start_model, sequence_classifier=algorithm == "reward", tokenizer=tokenizer)
    Path(paths.segment_info_in(str(saved))).write_text(json.dumps(info, indent=2))  # inside the unpublished folder
    atomic.publish_dir(saved, output)  # the old checkpoint (if any) stays whole until the new one is in place
    shutil.rmtree(work, ignore_errors=True)
    info["optimizer_state_freed_bytes"] = retention.after_segment(policy=optimizer_state, previous=previous,
                                                                  output=output, final=final)
    return info
