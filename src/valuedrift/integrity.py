"""Cheap checks that a model or checkpoint folder is whole, before anything loads it.

A folder is usable when it has a ``config.json`` and safetensors weights that are all
there: every shard an index names exists, and every ``.safetensors`` file is exactly as
long as its own header says (a file cut short by a full disk, an interrupted copy or a
killed writer is not). Only the headers are read, so this costs milliseconds even for a
70B model. Pickle weights (``pytorch_model.bin``, ``*.pt``) are refused: loading them can
run arbitrary code; convert them to safetensors once.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit


class ModelFolderError(ValueError):
    """A model or checkpoint folder that is missing, incomplete or unsafe to load."""


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete safetensors file (None: it is)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path}: truncated safetensors file ({size} bytes, no header)"
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                return f"{path}: truncated or corrupt safetensors file (header of {n} bytes, file of {size})"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    except ValueError:
        return f"{path}: corrupt safetensors header (not JSON)"
    ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{path}: truncated safetensors file ({size} bytes, its header describes {expected})"
    return None


def check_model_folder(path: str | os.PathLike, what: str = "model folder") -> Path:
    """Raise ModelFolderError naming the file when ``path`` is not a whole safetensors model."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path}: {what} not found (or not a folder)")
    if not (path / "config.json").is_file():
        raise ModelFolderError(f"{path}: {what} has no config.json (half-copied? copy the whole folder again)")
    weights = sorted(path.glob("*.safetensors"))
    for index in sorted(path.glob("*.safetensors.index.json")):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            raise ModelFolderError(f"{index}: unreadable safetensors index (half-copied?)") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise ModelFolderError(f"{index}: names weight files that are missing: {', '.join(missing)} "
                                   f"(half-copied? copy the whole folder again)")
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelFolderError(
                f"{path}: only pickle weights ({', '.join(pickles)}); valuedrift loads safetensors only, "
                f"because unpickling can run code. Convert once, in a trusted environment: "
                f"AutoModelForCausalLM.from_pretrained(folder).save_pretrained(new_folder, safe_serialization=True)")
        raise ModelFolderError(f"{path}: {what} has no weights (*.safetensors)")
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            raise ModelFolderError(f"{problem}; rebuild or re-copy this {what}")
    return path
