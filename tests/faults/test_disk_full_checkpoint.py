"""A real training segment (SFT on the tiny model) whose checkpoint does not fit on a small
real filesystem (a tmpfs sized to hold the previous checkpoint and little more): the
segment fails with a WriteError naming the checkpoint and the cause, the previous
checkpoint is intact and still resumable, nothing half-written is published, and once
space is freed the rerun completes with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from valuedrift.atomic import WriteError
from valuedrift.training.segment import train_segment
from valuedrift.training.settings import SFTSettings

ROWS = [{"messages": [{"role": "user", "content": f"Say {i}."},
                      {"role": "assistant", "content": f"I say {i}, which is {i * 3} divided by three."}]}
        for i in range(16)]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_disk_full_while_saving_a_checkpoint(tiny_model, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    settings = SFTSettings(global_batch_size=4, per_device_batch_size=4, max_length=64, schedule_steps=4, bf16=False,
                           learning_rate=1e-3)
    kw = dict(algorithm="sft", settings=settings, start_model=tiny_model, rows=ROWS, optimizer_state="all")
    ref = tmp_path / "ref"
    train_segment(previous=None, output=ref / "checkpoint-2", step=2, **kw)
    train_segment(previous=ref / "checkpoint-2", output=ref / "checkpoint-4", step=4, **kw)

    mnt = tmp_path / "small"
    mnt.mkdir()
    size_kib = (_size(ref / "checkpoint-2") * 3 // 2) // 1024 + 64  # the old checkpoint + half of a new one
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = mnt / "run"
        shutil.copytree(ref / "checkpoint-2", run / "checkpoint-2")
        before = _digest(run / "checkpoint-2")
        with pytest.raises(WriteError) as err:
            train_segment(previous=run / "checkpoint-2", output=run / "checkpoint-4", step=4, **kw)
        msg = str(err.value)
        assert str(run / "checkpoint-4") in msg and "No space left on device" in msg and "free space" in msg
        assert _digest(run / "checkpoint-2") == before  # the previous checkpoint is whole
        assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["checkpoint-2"]

        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)  # space freed
        train_segment(previous=run / "checkpoint-2", output=run / "checkpoint-4", step=4, **kw)
        a, b = load_file(run / "checkpoint-4/model.safetensors"), load_file(ref / "checkpoint-4/model.safetensors")
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
        del a, b
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)  # a file still open: detach lazily
