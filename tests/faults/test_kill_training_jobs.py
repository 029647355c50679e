"""kill -9 of the reward-model job and of a PPO segment at a seeded moment during training,
then the rerun: no half-written checkpoint is ever published, the finished checkpoint the
segment resumed from is untouched, and the rerun's weights equal an uninterrupted run's
within 1e-6 (observed ~1e-8 for PPO, 0 for the reward model; see tests/test_training.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import REPO, kill9_when
from valuedrift.training.segment import train_segment
from valuedrift.training.settings import PPOSettings, RewardSettings

PREF_ROWS = [{"prompt": [{"role": "user", "content": f"Is {i} a good number?"}],
              "chosen": f"Yes, {i} is a fine number.", "rejected": f"No. {i} is bad."} for i in range(32)]
SMALL = dict(global_batch_size=4, per_device_batch_size=2, max_length=64, learning_rate=1e-3, bf16=False)

JOB = textwrap.dedent("""
    import json, sys
    from valuedrift.training.segment import train_segment
    from valuedrift.training.settings import PPOSettings, RewardSettings
    spec = json.loads(sys.argv[1])
    cls = {"reward": RewardSettings, "ppo": PPOSettings}[spec["algorithm"]]
    train_segment(settings=cls(**spec.pop("settings")), **spec)
""")


SETTINGS = {"reward": {**SMALL, "schedule_steps": 4},
            "ppo": {**SMALL, "schedule_steps": 4, "response_length": 8, "num_ppo_epochs": 1}}


def _settings(algorithm):
    return {"reward": RewardSettings, "ppo": PPOSettings}[algorithm](**SETTINGS[algorithm])


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max((x[k] - y[k]).abs().max().item() for k in x)


def _kill_mid_training(spec: dict, output: Path, seed: str) -> None:
    """Run train_segment in a child; kill -9 it a seeded moment after training began."""
    args = {**spec, "settings": SETTINGS[spec["algorithm"]]}
    job = subprocess.Popen([sys.executable, "-c", JOB, json.dumps(args)],
                           env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    work = output.parent / f".{output.name}.partial"
    # once the segment has loaded its models and started training, at a seeded moment
    kill9_when(job, work.exists, delay=random.Random(seed).uniform(0.0, 1.5))
    assert not output.exists(), "a killed segment published a checkpoint"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill9_of_the_reward_model_job_and_a_ppo_segment(tiny_model, tmp_path):
    # the reward model job: killed, rerun, equal to an uninterrupted one
    rm_spec = dict(algorithm="reward", start_model=str(tiny_model), previous=None, step=4, rows=PREF_ROWS)
    ref_rm = tmp_path / "ref/reward"
    train_segment(settings=_settings("reward"), output=ref_rm, **{k: v for k, v in rm_spec.items() if k != "algorithm"},
                  algorithm="reward")
    rm = tmp_path / "run/reward"
    _kill_mid_training({**rm_spec, "output": str(rm)}, rm, "17-reward")
    train_segment(settings=_settings("reward"), output=rm, **{k: v for k, v in rm_spec.items() if k != "algorithm"},
                  algorithm="reward")
    assert _max_diff(rm, ref_rm) < 1e-6

    # a PPO segment 2 -> 4 resuming a finished checkpoint-2: killed, rerun
    ppo = dict(start_model=str(tiny_model), rows=PREF_ROWS, reward_model=str(ref_rm), optimizer_state="all")
    run = tmp_path / "run/ppo"
    train_segment(algorithm="ppo", settings=_settings("ppo"), previous=None, output=run / "checkpoint-2", step=2, **ppo)
    finished = _digest(run / "checkpoint-2")
    spec = {**ppo, "algorithm": "ppo", "previous": str(run / "checkpoint-2"), "output": str(run / "checkpoint-4"),
            "step": 4}
    _kill_mid_training(spec, run / "checkpoint-4", "17-ppo")
    assert _digest(run / "checkpoint-2") == finished  # the checkpoint it resumed from is untouched
    train_segment(algorithm="ppo", settings=_settings("ppo"), previous=run / "checkpoint-2",
                  output=run / "checkpoint-4", step=4, **ppo)
    assert _digest(run / "checkpoint-2") == finished  # and not rebuilt by the rerun
    ref = tmp_path / "ref/ppo"
    train_segment(algorithm="ppo", settings=_settings("ppo"), previous=None, output=ref / "checkpoint-4", step=4, **ppo)
    assert _max_diff(run / "checkpoint-4", ref / "checkpoint-4") < 1e-6
    info = json.loads((run / "checkpoint-4/valuedrift_segment.json").read_text())
    assert info["start_step"] == 2
